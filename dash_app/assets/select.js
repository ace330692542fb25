// A native <select> as a Dash component (dash_app/select.py): window.cc_components.Select.
// value is an option's value or null; the placeholder is a first, empty option while nothing is
// chosen (choosable again when clearable). Labels are text: React escapes them.
(function () {
  var R = window.React;
  if (!R) { return; }
  function Select(props) {
    var options = (props.options || []).map(function (o) {
      return o !== null && typeof o === "object" ? o : {label: String(o), value: o};
    });
    var chosen = props.value === null || props.value === undefined ? "" : String(props.value);
    var items = [];
    if (chosen === "" || props.clearable) {
      items.push(R.createElement("option", {key: "\u0000", value: ""}, props.placeholder || ""));
    }
    options.forEach(function (o, i) {
      items.push(R.createElement("option", {key: i, value: String(o.value), disabled: !!o.disabled},
                                 String(o.label === undefined ? o.value : o.label)));
    });
    var attrs = {
      id: props.id, className: "cc-select" + (props.className ? " " + props.className : ""),
      style: props.style, title: props.title, value: chosen,
      onChange: function (e) {
        var v = e.target.value, hit = null;
        options.forEach(function (o) { if (hit === null && String(o.value) === v) { hit = o; } });
        if (props.setProps) { props.setProps({value: v === "" ? null : hit ? hit.value : v}); }
      }
    };
    Object.keys(props).forEach(function (k) { if (k.indexOf("aria-") === 0) { attrs[k] = props[k]; } });
    return R.createElement("select", attrs, items);
  }
  window.cc_components = Object.assign(window.cc_components || {}, {Select: Select});
})();
