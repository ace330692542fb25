// Compression Overview client side: selections are applied in the browser at once.
//
// A click, shift-click, column-header click or box in the Model Map or the scatterplot changes
// the selection here, in the same event: the selection rings of both graphs are restyled
// (Plotly.restyle of their "selected" trace only, no figure redraw) and the new selection is
// written into the view state (ov-state), which the server's views (Selection Details, the URL,
// the Performance Comparison) follow. The server does not redraw the figures for a selection
// change: a redraw landing between a later mouse-down and mouse-up would swallow that click.
// Whenever the state changes otherwise (toolbar, Refine, a figure redrawn for another reason),
// the rings are reconciled with the state's selection.
(function () {
  var GRAPHS = ["ov-map", "ov-scatter"];

  // Read at mousedown and kept: the pick callback runs after the key may be released.
  window.ccShift = false;
  var press = null;     // where the last mouse press began {x, y, graph}
  var boxArmed = {};    // graph id -> time the user ended a drag on it (a box is on its way)
  document.addEventListener("mousedown", function (e) {
    window.ccShift = e.shiftKey;
    var g = e.target && e.target.closest ? e.target.closest("#ov-map, #ov-scatter") : null;
    press = {x: e.clientX, y: e.clientY, graph: g ? g.id : null};
  }, true);
  document.addEventListener("mouseup", function (e) {
    if (press && press.graph && Math.abs(e.clientX - press.x) + Math.abs(e.clientY - press.y) > 4) {
      boxArmed[press.graph] = Date.now();
    }
    press = null;
  }, true);

  function gdOf(id) { return document.querySelector("#" + id + " .js-plotly-plot"); }

  // A graph's camera button ("Download plot"): the page draws some graphs' keys as HTML
  // (figures/legend_key.py), so the image gets Plotly's legend and colour bar back from
  // layout.meta.export (the traces to add, and which traces to show in the legend).
  document.addEventListener("click", function (e) {
    var btn = e.target && e.target.closest ? e.target.closest(".modebar-btn") : null;
    if (!btn || (btn.getAttribute("data-title") || "").indexOf("Download plot") !== 0) { return; }
    var gd = btn.closest(".js-plotly-plot"), meta = gd && gd.layout && gd.layout.meta;
    var ex = meta && meta.export;
    if (!ex || !window.Plotly || !gd._fullLayout) { return; }
    e.preventDefault();
    e.stopPropagation();
    var data = gd.data.map(function (t, i) {
      return ex.legend.indexOf(i) >= 0 ? Object.assign({}, t, {showlegend: true}) : t;
    }).concat(ex.traces);
    var layout = Object.assign({}, gd.layout, {meta: null, showlegend: data.some(function (t) { return t.showlegend; })});
    var opts = Object.assign({format: "svg", filename: "plot"}, gd._context.toImageButtonOptions,
                             {width: gd._fullLayout.width, height: gd._fullLayout.height});
    window.Plotly.downloadImage({data: data, layout: layout}, opts);
  }, true);

  function unique(list) {
    var seen = {}, out = [];
    list.forEach(function (r) { if (!seen[r]) { seen[r] = true; out.push(r); } });
    return out;
  }

  function sameSet(a, b) {
    if (a.length !== b.length) { return false; }
    var s = {};
    a.forEach(function (r) { s[r] = true; });
    return b.every(function (r) { return s[r]; });
  }

  // Points of a Plotly event as {id, trace}; customdata carries what a point means (a run id,
  // "col:<i>" for a column header, "expand:<run id>" for a collapsed subtree's badge).
  function points(gd, ev) {
    var out = [];
    ((ev && ev.points) || []).forEach(function (p) {
      var c = p.customdata;
      if (Array.isArray(c)) { c = c[0]; }
      var t = gd && gd.data && gd.data[p.curveNumber];
      if (typeof c === "string") { out.push({id: c, trace: t ? t.name : null}); }
    });
    return out;
  }

  // Models in column ``col`` of the map that can be selected (not filtered out).
  function columnMembers(col) {
    var gd = gdOf("ov-map"), out = [];
    ((gd && gd._fullData) || []).forEach(function (t) {
      if (t.name !== "models") { return; }
      var cd = t.customdata || [];
      for (var i = 0; i < cd.length; i++) { if (Math.round(t.x[i]) === col) { out.push(cd[i]); } }
    });
    return out;
  }

  // The new selection (the same rule as dash_app.state.pick): replace, or add with shift,
  // toggling a single model.
  function pickSel(cur, picked, additive) {
    picked = unique(picked);
    if (!additive) { return picked; }
    if (picked.length === 1 && cur.indexOf(picked[0]) >= 0) {
      return cur.filter(function (r) { return r !== picked[0]; });
    }
    return unique(cur.concat(picked));
  }

  // A scatterplot of many models draws a density layer (a heatmap named "density") instead of
  // markers: its clicks and boxes are resolved by the server, which also patches its rings.
  function isDense(gd) {
    return !!(gd && gd.data && gd.data.some(function (t) { return t.name === "density"; }));
  }

  // Restyle the "selected" trace of one graph to ring ``sel`` (only the models it draws).
  function showSel(gd, sel) {
    if (!gd || !gd.data || !gd._fullData || !window.Plotly || isDense(gd)) { return; }
    var idx = -1;
    gd.data.forEach(function (t, i) { if (t.name === "selected") { idx = i; } });
    if (idx < 0) { return; }
    var want = {};
    sel.forEach(function (r) { want[r] = true; });
    var xs = [], ys = [], ids = [], sizes = [];
    gd._fullData.forEach(function (t) {
      if (t.name !== "models" && t.name !== "filtered out") { return; }
      var cd = t.customdata || [], size = t.marker ? t.marker.size : 8;
      for (var i = 0; i < cd.length; i++) {
        if (!want[cd[i]]) { continue; }
        xs.push(t.x[i]); ys.push(t.y[i]); ids.push(cd[i]);
        sizes.push((typeof size === "number" ? size : size[i]) + 7);
      }
    });
    var cur = Array.prototype.slice.call(gd.data[idx].customdata || []);
    if (sameSet(cur, ids)) { return; }
    window.Plotly.restyle(gd, {x: [xs], y: [ys], customdata: [ids], "marker.size": [sizes]}, [idx]);
  }

  // Hide the hover label a click leaves behind (it would cover the neighbours), and keep the
  // ring restyle from drawing it again (Plotly re-hovers the last mouse position after a
  // redraw: _rehover, set again by the next mouse move). The hover data stay, so a second
  // click without moving still registers.
  function hideHover(gd) {
    var full = gd && gd._fullLayout;
    if (!full || !window.Plotly || !window.Plotly.Fx) { return; }
    full._rehover = null;
    if (full._hoverlayer) { window.Plotly.Fx.loneUnhover(full._hoverlayer); }
  }

  // After any redraw of a graph (a figure from the server), ring what the state says now.
  function hook(gd) {
    if (!gd || gd.__ccHooked || !gd.on) { return; }
    gd.__ccHooked = true;
    gd.on("plotly_afterplot", function () {
      if (window.ccSel) { showSel(gd, window.ccSel); }
    });
  }

  function showAll(sel) {
    window.ccSel = sel;
    GRAPHS.forEach(function (id) { var gd = gdOf(id); hook(gd); showSel(gd, sel); });
    document.body.setAttribute("data-cc-sel", sel.join(","));
  }

  var PROPS = {
    "ov-map.clickData": ["ov-map", "click"], "ov-map.selectedData": ["ov-map", "box"],
    "ov-scatter.clickData": ["ov-scatter", "click"], "ov-scatter.selectedData": ["ov-scatter", "box"]
  };

  var urlSeen = false;

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    cc: {
      // Clicks and boxes of both plots: a selection change is applied here and written to the
      // state; a collapsed subtree's badge goes to the server (ov-pick) to change the layout.
      pick: function (mapClick, mapBox, scClick, scBox, state) {
        var nu = window.dash_clientside.no_update;
        var values = {"ov-map.clickData": mapClick, "ov-map.selectedData": mapBox,
                      "ov-scatter.clickData": scClick, "ov-scatter.selectedData": scBox};
        var trig = (window.dash_clientside.callback_context.triggered || []).filter(function (t) {
          return PROPS[t.prop_id] && values[t.prop_id];
        });
        // a click also clears Plotly's box (a null selection): the click is what counts
        trig.sort(function (a, b) { return PROPS[a.prop_id][1] === "click" ? -1 : 1; });
        if (!trig.length || !state || !state.ready) { return [nu, nu]; }
        var graph = PROPS[trig[0].prop_id][0], kind = PROPS[trig[0].prop_id][1];
        var gd = gdOf(graph);
        if (kind === "box") {
          // a box counts only right after the user drew it: Plotly repeats (or empties) the
          // selection when it redraws a graph, and that is not the user's choice
          var armed = boxArmed[graph];
          delete boxArmed[graph];
          if (!armed || Date.now() - armed > 10000) { return [nu, nu]; }
          // nor is a box event without a range: Plotly re-selecting after a redraw dropped the box
          var box = values[trig[0].prop_id];
          if (!box.range && !box.lassoPoints) { return [nu, nu]; }
        }
        var shift = !!window.ccShift;
        if (isDense(gd)) {
          var ev = values[trig[0].prop_id], cell = null;
          if (kind === "click") {
            var p = (ev.points || [])[0];
            if (!p || !gd.data[p.curveNumber] || gd.data[p.curveNumber].name !== "density") { return [nu, nu]; }
            cell = [p.x, p.y];
            hideHover(gd);
          }
          return [{kind: kind, source: graph, range: kind === "box" ? ev.range : null, cell: cell,
                   shift: shift, t: Date.now()}, nu];
        }
        var pts = points(gd, values[trig[0].prop_id]);
        if (kind === "click") { GRAPHS.forEach(function (id) { hideHover(gdOf(id)); }); }
        var expand = pts.filter(function (p) { return p.id.indexOf("expand:") === 0; });
        if (kind === "click" && expand.length) {
          return [{kind: kind, source: graph, ids: expand.map(function (p) { return p.id; }),
                   shift: shift, t: Date.now()}, nu];
        }
        var picked = [];
        var cols = pts.filter(function (p) { return p.id.indexOf("col:") === 0; });
        if (kind === "click" && cols.length) {
          cols.forEach(function (p) { picked = picked.concat(columnMembers(parseInt(p.id.slice(4), 10))); });
        } else {
          // models only: filtered-out models cannot be selected
          picked = pts.filter(function (p) { return p.id.indexOf(":") < 0 && p.trace !== "filtered out"; })
            .map(function (p) { return p.id; });
        }
        var cur = state.sel || [];
        var sel = pickSel(cur, picked, shift);
        showAll(sel);
        if (sel.length === cur.length && sel.every(function (r, i) { return r === cur[i]; })) {
          return [nu, nu];
        }
        return [nu, Object.assign({}, state, {sel: sel})];
      },

      // The page's own URL, once per load, for the server only when the first map was not drawn
      // from it (no Referer, or a different query): the usual load changes nothing and sends
      // no request. Later URL changes are the state's own writes (ov-url-out).
      urlFirst: function (search, state) {
        var nu = window.dash_clientside.no_update;
        if (urlSeen || search === undefined || search === null) { return nu; }
        urlSeen = true;
        if (state && state.ready && search.replace(/^\?/, "") === (state.from_url || "")) { return nu; }
        return search;
      },

      // The state changed or a figure arrived: ring the state's selection in both graphs.
      reconcile: function (state) {
        if (!state || !state.ready) { return window.dash_clientside.no_update; }
        var sel = state.sel || [];
        showAll(sel);
        return sel;
      }
    }
  });
})();
