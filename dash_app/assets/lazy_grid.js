// A stand-in for dash-ag-grid's namespace until its bundle is needed (dash_app/lazy_grid.py).
// The first AgGrid mounted loads the bundle (its URL is in <meta name="cc-grid-bundle">) and then
// renders the real grid with the same props; the bundle replaces this namespace on load, so grids
// rendered later are the real component directly.
(function () {
  if (window.dash_ag_grid) { return; }  // the bundle is on the page after all
  var React = window.React;
  var stub = {};
  var loading = null;

  function load() {
    if (!loading) {
      loading = new Promise(function (resolve, reject) {
        var meta = document.querySelector('meta[name="cc-grid-bundle"]');
        var script = document.createElement("script");
        script.src = meta ? meta.content : "";
        script.async = true;
        script.onload = function () {
          if (window.dash_ag_grid && window.dash_ag_grid !== stub) { resolve(); } else { reject(); }
        };
        script.onerror = function () { loading = null; reject(); };
        document.head.appendChild(script);
      });
    }
    return loading;
  }

  function real() {
    return window.dash_ag_grid !== stub && window.dash_ag_grid ? window.dash_ag_grid.AgGrid : null;
  }

  function AgGrid(props) {
    var state = React.useState(real() ? "ready" : "loading");
    var status = state[0], setStatus = state[1];
    React.useEffect(function () {
      if (status !== "loading") { return undefined; }
      var live = true;
      load().then(function () { if (live) { setStatus("ready"); } },
                  function () { if (live) { setStatus("failed"); } });
      return function () { live = false; };
    }, [status]);
    var Grid = real();
    if (Grid) { return React.createElement(Grid, props); }
    // not the grid's class or id: whatever looks for the grid finds it only once it is there
    return React.createElement("div", {className: "cc-grid-wait", style: props.style},
      status === "failed" ? "The grid's script could not be loaded: reload the page to try again."
                          : "loading the grid…");
  }

  stub.AgGrid = AgGrid;
  // dash-ag-grid's API lookups, for scripts that call them on the namespace: no grid exists before
  // the bundle has loaded (null, as for an id that has no grid); getApiAsync waits for it.
  stub.getApi = function () { return null; };
  stub.getApiAsync = function (id) {
    return load().then(function () { return window.dash_ag_grid.getApiAsync(id); });
  };
  window.dash_ag_grid = stub;
})();
