// Behaviours grid, generation outputs: a model's bar (CmpBar of comparison.js) above its answer,
// with the words that differ from the base's answer marked. The answer arrives as
// [[word, changed], ...] and every word only ever becomes a text node inside a <span>.
(function () {
  var h = function () { return React.createElement.apply(React, arguments); };

  function CmpAnswer(props) {
    var funcs = window.dashAgGridComponentFunctions || {};
    var p = props.colDef.cellRendererParams || {}, d = props.data || {};
    var words = p.answer ? d[p.answer] : undefined;
    var kids = [h("div", {key: "b", className: "cmp-ans-bar"}, funcs.CmpBar ? funcs.CmpBar(props) : null)];
    if (Array.isArray(words)) {
      var spans = [], changed = 0, plain = [];
      words.forEach(function (w, i) {
        var text = String(Array.isArray(w) ? w[0] : w), mark = Array.isArray(w) && w[1] ? 1 : 0;
        changed += mark;
        plain.push(text);
        if (i > 0) { spans.push(" "); }
        spans.push(h("span", {key: i, className: mark ? "cmp-word cmp-word-changed" : "cmp-word"}, text));
      });
      kids.push(h("div", {key: "a", className: "cmp-answer" + (changed ? " cmp-answer-changed" : ""),
                          title: plain.join(" ")}, spans));
    } else {
      kids.push(h("div", {key: "a", className: "cmp-answer cmp-muted"}, "no answer"));
    }
    return h("div", {className: "cmp-ans-cell"}, kids);
  }

  var funcs = (window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {});
  funcs.CmpAnswer = CmpAnswer;
})();
