// Performance Comparison: AG Grid cell renderers and header components.
//
// Everything is built with React.createElement from numbers and plain strings sent by the
// server: user text (model names, class names, notes, sentences) only ever becomes a text
// node, and a preview image only ever becomes an <img> whose src is a data:image/png URL
// built here from base64 characters.
(function () {
  var h = function () { return React.createElement.apply(React, arguments); };
  var SVG = "http://www.w3.org/2000/svg";
  var BUCKET_COLORS = ["#c6dbef", "#fdd49e", "#fc8d59", "#d7301f", "#54278f", "#bdbdbd"];
  var BUCKET_NAMES = ["unchanged", "small change", "medium change", "large change", "zeroed", "not compared"];
  var SPLIT_COLORS = ["#8c8c8c", "#d7301f", "#2b8cbe"];
  var SPLIT_NAMES = ["zero in both", "zeroed in model only", "zero in base only"];
  var B64 = /^[A-Za-z0-9+/=]+$/;

  function fmt(v, kind, relative) {
    if (v === null || v === undefined || Number.isNaN(v)) { return "–"; }
    var sign = relative && v > 0 ? "+" : "";
    if (kind === "pct") { return sign + (v * 100).toFixed(Math.abs(v) < 0.1 && v !== 0 ? 2 : 1) + "%"; }
    var a = Math.abs(v);
    if (a !== 0 && (a < 0.001 || a >= 10000)) { return sign + v.toExponential(2); }
    return sign + v.toPrecision(3).replace(/\.?0+$/, "");
  }

  function spark(counts, width, height, color) {
    if (!counts || !counts.length) { return null; }
    var max = Math.max.apply(null, counts) || 1, w = width / counts.length;
    return h("svg", {width: width, height: height, className: "cmp-spark"},
      counts.map(function (c, i) {
        var bh = c > 0 ? Math.max(1, (c / max) * height) : 0;
        return h("rect", {key: i, x: i * w + 0.5, y: height - bh, width: Math.max(w - 1, 1), height: bh, fill: color});
      }));
  }

  // A header: model name, its dataset-wide value, a distribution sparkline, or a note.
  function CmpHeader(props) {
    var p = (props.column && props.column.getColDef().headerComponentParams) || {};
    var name = [props.displayName];
    if (p.base) { name.push(h("span", {key: "b", className: "cmp-h-base-tag"}, "(base)")); }
    if (typeof p.href === "string" && /^https?:\/\//.test(p.href)) {  // the model's MLflow run page
      name.push(h("a", {key: "a", href: p.href, target: "_blank", rel: "noopener noreferrer", className: "cmp-h-link",
                        title: "open the run in the MLflow UI", onClick: function (e) { e.stopPropagation(); }}, "↗"));
    }
    var kids = [h("div", {key: "n", className: "cmp-h-name", title: p.title || props.displayName}, name)];
    if (p.note) {
      kids.push(h("div", {key: "x", className: "cmp-h-note"}, p.note));
    } else {
      if (p.value !== undefined) { kids.push(h("div", {key: "v", className: "cmp-h-value"}, p.value)); }
      if (p.counts) { kids.push(h("div", {key: "s"}, spark(p.counts, 84, 16, p.base ? "#7f8c99" : "#4a78b0"))); }
      if (p.delta) {  // the dataset-wide difference from the base with its interval (significance)
        kids.push(h("div", {key: "d", className: "cmp-h-delta" + (p.deltaSig ? " cmp-h-delta-sig" : ""),
                            title: p.deltaTip || ""}, p.delta));
      }
    }
    return h("div", {className: "cmp-h" + (p.base ? " cmp-h-base" : "")}, kids);
  }

  // An in-cell bar: absolute values from 0, relative values diverging from the middle.
  function CmpBar(props) {
    var v = props.value, p = props.colDef.cellRendererParams || {};
    var d = props.data || {};
    var pred = p.pred ? d[p.pred] : undefined;
    var kids = [];
    if (v === null || v === undefined || Number.isNaN(v)) {
      kids.push(h("span", {key: "t", className: "cmp-bar-text cmp-muted"}, p.missing || "–"));
    } else {
      var rel = !!p.relative, hi = p.hi || 1, good;
      var frac = Math.min(Math.abs(v) / hi, 1);
      var style;
      if (rel) {
        good = p.higherBetter ? v >= 0 : v <= 0;
        style = {left: (v >= 0 ? 50 : 50 - frac * 50) + "%", width: (frac * 50) + "%",
                 background: v === 0 ? "#bbb" : (good ? "#4a9a5b" : "#d0473c")};
      } else {
        style = {left: "0%", width: (frac * 100) + "%", background: p.base ? "#8c99a6" : "#4a78b0"};
      }
      kids.push(h("div", {key: "b", className: "cmp-bar-track" + (rel ? " cmp-bar-rel" : "")},
        h("div", {className: "cmp-bar-fill", style: style})));
      kids.push(h("span", {key: "t", className: "cmp-bar-text"}, fmt(v, p.kind, rel)));
    }
    if (pred !== undefined && pred !== null) {
      var changed = p.basePred && d[p.basePred] !== undefined && d[p.basePred] !== pred;
      kids.push(h("span", {key: "p", className: "cmp-pred" + (changed ? " cmp-pred-changed" : ""),
                           title: "prediction"}, String(pred)));
    }
    // A tested difference: the test in the tooltip, a marker when it is significant.
    var tip = p.tip ? d[p.tip] : undefined;
    if (p.sig && d[p.sig]) {
      kids.push(h("span", {key: "g", className: "cmp-sig", title: tip || ""}, "\u2731"));
    }
    return h("div", typeof tip === "string" ? {className: "cmp-bar", title: tip} : {className: "cmp-bar"}, kids);
  }

  // An instance preview: a thumbnail (base64 PNG) or the start of a text.
  function CmpPreview(props) {
    var d = props.data || {};
    if (d.pk === "image" && typeof d.pv === "string" && B64.test(d.pv)) {
      return h("img", {className: "cmp-thumb", alt: "instance " + String(d.key), src: "data:image/png;base64," + d.pv});
    }
    if (d.pk === "text" && typeof d.pv === "string") {
      return h("span", {className: "cmp-preview-text", title: d.pv}, d.pv);
    }
    return h("span", {className: "cmp-muted"}, String(d.key === undefined ? "" : d.key));
  }

  // A row label with its flag marker (the flag count and notes as a tooltip).
  function CmpRowName(props) {
    var d = props.data || {};
    var kids = [h("span", {key: "n", className: "cmp-row-name"}, props.value === undefined ? "" : String(props.value))];
    if (d.flags) {
      kids.push(h("span", {key: "f", className: "cmp-flag", title: d.flagNotes || ""}, "⚑ " + d.flags));
    }
    if (props.colDef.cellRendererParams && props.colDef.cellRendererParams.drill && d.key !== undefined) {
      kids.push(h("span", {key: "d", className: "cmp-drill", title: "show its instances"}, "instances ›"));
    }
    return h("div", {className: "cmp-row"}, kids);
  }

  // The module tree's name column: indentation and an expand/collapse triangle.
  function CmpTreeName(props) {
    var d = props.data || {};
    var pad = (d.depth || 0) * 14;
    var icon = d.has_children ? (d.expanded ? "▾" : "▸") : "";
    return h("div", {className: "cmp-tree", style: {paddingLeft: pad + "px"}, title: d.name || ""}, [
      h("span", {key: "i", className: "cmp-tree-toggle"}, icon),
      h("span", {key: "l", className: d.kind === "tensor" ? "cmp-tree-tensor" : "cmp-tree-module"}, d.label || ""),
    ]);
  }

  function stackedBar(fracs, colors, names, width, height) {
    var x = 0;
    return h("svg", {width: width, height: height, className: "cmp-stack"},
      [h("rect", {key: "bg", x: 0, y: 0, width: width, height: height, fill: "#f1f3f5"})].concat(
        fracs.map(function (f, i) {
          var w = Math.max(0, f) * width, r = h("rect", {key: i, x: x, y: 0, width: w, height: height, fill: colors[i]},
            h("title", null, names[i] + ": " + (f * 100).toFixed(1) + "%"));
          x += w; return r;
        })));
  }

  // A stacked histogram: bin height = number of values (square-root scale, so that a spike of
  // pruned zeros does not flatten the rest), colour = amount of change vs the base.
  function stackedHist(hist, width, height) {
    var totals = hist.map(function (b) { return b.reduce(function (a, c) { return a + c; }, 0); });
    var max = Math.sqrt(Math.max.apply(null, totals)) || 1, w = width / hist.length, rects = [];
    hist.forEach(function (bin, i) {
      var y = height, binH = (Math.sqrt(totals[i]) / max) * height;
      bin.forEach(function (c, k) {
        if (c <= 0) { return; }
        var bh = Math.max(0.6, (c / totals[i]) * binH);
        y -= bh;
        rects.push(h("rect", {key: i + "-" + k, x: i * w, y: y, width: Math.max(w - 0.6, 0.6), height: bh,
                              fill: BUCKET_COLORS[k]}));
      });
    });
    return h("svg", {width: width, height: height, className: "cmp-hist"},
      [h("line", {key: "axis", x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5, stroke: "#ccd"})].concat(rects));
  }

  // A Layers cell: sparsity split, or value histogram coloured by change, or a note.
  function CmpLayer(props) {
    var p = props.colDef.cellRendererParams || {}, d = props.data || {};
    var c = (d.cells || {})[p.model];
    if (!c) { return h("span", {className: "cmp-muted"}, "–"); }
    if (c.unavailable) {
      return h("span", {className: "cmp-note"}, (p.show === "activations" ? "activations " : "weights ") + c.status);
    }
    var kids = [];
    var width = p.width || 150;
    // Narrow columns (many models) keep the picture and move the change score into the tooltip.
    var compact = width < 140, room = compact ? width - 16 : width - 84;
    var delta = c.change === null || c.change === undefined ? "" : "Δ" + fmt(c.change, "num", false);
    if (p.show === "sparsity") {
      if (c.split) {
        kids.push(h("div", {key: "s"}, stackedBar(c.split, SPLIT_COLORS, SPLIT_NAMES, compact ? width - 58 : room, 12)));
      }
      kids.push(h("span", {key: "t", className: "cmp-layer-text"}, fmt(c.sparsity, "pct", false)));
    } else if (c.hist) {
      kids.push(h("div", {key: "h", title: delta + " (change vs base, relative L2)"}, stackedHist(c.hist, room, 26)));
      if (!compact) { kids.push(h("span", {key: "t", className: "cmp-layer-text"}, delta)); }
    } else if (c.buckets) {
      kids.push(h("div", {key: "b", title: delta + " (change vs base, relative L2)"},
        stackedBar(c.buckets, BUCKET_COLORS, BUCKET_NAMES, room, 12)));
      if (!compact) { kids.push(h("span", {key: "t", className: "cmp-layer-text"}, delta)); }
    } else {
      kids.push(h("span", {key: "t", className: "cmp-muted"}, p.show === "activations" ? "no activations" : "–"));
    }
    if (c.status) { kids.push(h("span", {key: "x", className: "cmp-note", title: c.status}, c.status)); }
    return h("div", {className: "cmp-layer"}, kids);
  }

  var dagcomponentfuncs = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});
  dagcomponentfuncs.CmpHeader = CmpHeader;
  dagcomponentfuncs.CmpBar = CmpBar;
  dagcomponentfuncs.CmpPreview = CmpPreview;
  dagcomponentfuncs.CmpRowName = CmpRowName;
  dagcomponentfuncs.CmpTreeName = CmpTreeName;
  dagcomponentfuncs.CmpLayer = CmpLayer;
  window.ccComparison = {BUCKET_COLORS: BUCKET_COLORS, BUCKET_NAMES: BUCKET_NAMES, SVG: SVG};

  // After a flag is written, reload the Behaviours grid's loaded blocks so the ⚑ markers appear.
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    cmp: {
      refreshRows: function (version) {
        var el = document.querySelector(".cmp-beh .cmp-grid");
        if (version && el && window.dash_ag_grid) {
          try {
            var api = dash_ag_grid.getApi(JSON.parse(el.id));
            if (api) { api.refreshInfiniteCache(); }
          } catch (e) { /* the grid is being replaced: it loads fresh rows anyway */ }
        }
        return window.dash_clientside.no_update;
      }
    }
  });
})();
