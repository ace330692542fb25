// What-if panel (dash_app/views/whatif.py): a click on a step selects its model, in the browser,
// the way a click in the Model Map does (assets/overview.js): replace the selection, or toggle the
// model with shift. Writing ov-state is enough: overview.js's reconcile rings the new selection in
// the map and the scatterplot, and Selection Details follows the state.
(function () {
  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    ccWhatif: {
      pick: function (click, state) {
        var nu = window.dash_clientside.no_update;
        var p = click && click.points && click.points[0];
        var id = p ? p.customdata : null;
        if (Array.isArray(id)) { id = id[0]; }
        if (typeof id !== "string" || !state || !state.ready) { return nu; }
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
