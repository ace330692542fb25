// Compression Overview client side: remember the shift key of the last click (Plotly's
// clickData does not carry it) and turn plot clicks/boxes into one "pick" event.
(function () {
  // Read at mousedown and kept: the pick callback runs after the key may be released.
  window.ccShift = false;
  document.addEventListener("mousedown", function (e) { window.ccShift = e.shiftKey; }, true);

  function ids(ev) {
    var out = [];
    ((ev && ev.points) || []).forEach(function (p) {
      var c = p.customdata;
      if (Array.isArray(c)) { c = c[0]; }
      if (typeof c === "string") { out.push(c); }
    });
    return out;
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    cc: {
      pick: function (mapClick, mapBox, scClick, scBox) {
        var trig = (dash_clientside.callback_context.triggered || [])[0];
        if (!trig) { return dash_clientside.no_update; }
        var prop = trig.prop_id;
        var ev = null, kind = "click", source = "map";
        if (prop === "ov-map.clickData") { ev = mapClick; }
        else if (prop === "ov-map.selectedData") { ev = mapBox; kind = "box"; }
        else if (prop === "ov-scatter.clickData") { ev = scClick; source = "scatter"; }
        else if (prop === "ov-scatter.selectedData") { ev = scBox; kind = "box"; source = "scatter"; }
        // a null selection is Plotly clearing its box (double-click or a redraw): not a pick;
        // nor is a box event without a range: Plotly re-selecting after a redraw dropped the box
        if (!ev) { return dash_clientside.no_update; }
        if (kind === "box" && !ev.range && !ev.lassoPoints) { return dash_clientside.no_update; }
        return {kind: kind, source: source, ids: ids(ev), shift: !!window.ccShift, t: Date.now()};
      }
    }
  });
})();
