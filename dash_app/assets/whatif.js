// What-if panel (dash_app/views/whatif.py): a click on a step selects its model, in the browser,
// the way a click in the Model Map does (assets/overview.js): replace the selection, or toggle the
// model with shift. Writing ov-state is enough: overview.js's reconcile rings the new selection in
// the map and the scatterplot, and Selection Details follows the state.
(function () {
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    ccWhatif: {
      // What the panel is drawn from (not the selection): a selection change sends no request.
      key: function (state, current) {
        var nu = window.dash_clientside.no_update;
        if (!state || !state.ready) { return nu; }
        var key = JSON.stringify([state.experiment, state.filters || {}, state.weff || null,
                                  state.wq || null, state.color || null]);
        return key === current ? nu : key;
      },

      pick: function (click, state) {
        var nu = window.dash_clientside.no_update;
        var p = click && click.points && click.points[0];
        var id = p ? p.customdata : null;
        if (Array.isArray(id)) { id = id[0]; }
        if (typeof id !== "string" || !state || !state.ready) { return nu; }
        // the click's hover label would stay over the neighbouring steps: hide it (as the map does)
        var gd = document.querySelector("#ov-whatif-graph .js-plotly-plot");
        if (gd && gd._fullLayout && gd._fullLayout._hoverlayer && window.Plotly && window.Plotly.Fx) {
          gd._fullLayout._rehover = null;
          window.Plotly.Fx.loneUnhover(gd._fullLayout._hoverlayer);
        }
        var cur = state.sel || [], sel;
        if (window.ccShift) {
          sel = cur.indexOf(id) >= 0 ? cur.filter(function (r) { return r !== id; }) : cur.concat([id]);
        } else {
          sel = [id];
        }
        if (sel.length === cur.length && sel.every(function (r, i) { return r === cur[i]; })) { return nu; }
        return Object.assign({}, state, {sel: sel});
      }
    }
  });
})();
