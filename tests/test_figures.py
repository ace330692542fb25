"""Pure figure builders and view state: map, scatter, filters, selection details, URL state."""

from __future__ import annotations

import json
from typing import Any

import plotly.io as pio
from plotly.utils import PlotlyJSONEncoder

from dash_app.figures.details import details_figure
from dash_app.figures.encoding import NODE_PX, Encoding, default_metrics, escape
from dash_app.figures.filters import histogram_figure
from dash_app.figures.hover import hover_texts
from dash_app.figures.model_map import map_figure
from dash_app.figures.overview import front_ids, overview_figures
from dash_app.selection_table import selection_csv
from dash_app.state import empty_state, excluded_ids, grow, parse_query, pick, to_query
from mlflow_cc.analysis.map_layout import layout_forest
from mlflow_cc.analysis.selection import explain_selection
from mlflow_cc.metric_info import MetricInfo
from mlflow_cc.read.lineage import Forest, ModelNode, build_forest
from testing.synthetic import STUDY_SPECS

INFOS = {"accuracy": MetricInfo("accuracy", "max", "", ".1%", True),
         "size_bytes": MetricInfo("size_bytes", "min", "B", "bytes", False),
         "latency_ms": MetricInfo("latency_ms", "min", "ms", ".2f", False)}
_t = iter(range(10_000))


def model(rid: str, parent: str | None = None, op: str | None = None, acc: float = 0.9,
          size: float = 1000.0, name: str | None = None, inputs: list[dict[str, str]] | None = None,
          **params: Any) -> ModelNode:
    return ModelNode(run_id=rid, name=name or rid, experiment_id="1", declared_parent_id=parent,
                     operation=op, op_params=params, start_time=next(_t), inputs=inputs or [],
                     metrics={"accuracy": acc, "size_bytes": size, "latency_ms": size / 1000})


def study() -> Forest:
    nodes = [model("base", acc=0.97, size=4000)]
    for method in ("magnitude", "gradient"):
        for s in (0.3, 0.5, 0.7):
            rid = f"{method[:3]}{int(s * 10)}"
            nodes.append(model(rid, "base", "prune", 0.97 - s / 5 - (method == "gradient") * 0.02,
                               4000 * (1 - s / 2), method=method, sparsity=s))
    nodes += [model("mag5_q", "mag5", "quantize", 0.86, 750, bits=8),
              model("mag5_c", "mag5", "calibrate", 0.88, 3000, batches=8),
              model("mag5_c_q", "mag5_c", "quantize", 0.87, 750, bits=8),
              model("kd", "mag5", "distill", 0.9, 3000, inputs=[{"run_id": "base", "role": "teacher"}],
                    temperature=2.0)]
    return build_forest(nodes)


def test_escape_user_text() -> None:
    assert escape("<b>x</b> & y") == "&lt;b&gt;x&lt;/b&gt; &amp; y"


def test_hover_has_name_operation_metrics_and_change_vs_parent_escaped() -> None:
    f = study()
    f.nodes["mag5"].name = "<script>alert(1)</script>"
    text = hover_texts(f, INFOS)
    assert "&lt;script&gt;" in text["mag5"] and "<script>" not in text["mag5"]
    assert "prune(method=magnitude, sparsity=0.5)" in text["mag5"]
    assert "accuracy: 87.0% (-10.0 pts)" in text["mag5"]
    assert "size_bytes: 3.00 KB (-25%)" in text["mag5"]
    assert "base model" in text["base"]


def test_default_encodings_are_accuracy_and_size() -> None:
    assert default_metrics(study(), INFOS) == {"color": "accuracy", "size": "size_bytes",
                                               "x": "size_bytes", "y": "accuracy"}


def test_map_figure_traces() -> None:
    f = study()
    lay = layout_forest(f)
    enc = Encoding.build(f, INFOS, "accuracy", "size_bytes")
    fig = map_figure(f, lay, enc, INFOS, hover_texts(f, INFOS), {"mag5"}, {"gra7"})
    by_name: dict[str, list[Any]] = {}
    for t in fig.data:
        by_name.setdefault(t.name, []).append(t)
    assert set(by_name["models"][0].customdata) == set(f.nodes) - {"gra7"}
    assert list(by_name["filtered out"][0].customdata) == ["gra7"]
    assert by_name["models"][0].type == "scatter"  # bounded by the collapsing budget: SVG
    assert list(by_name["selected"][0].customdata) == ["mag5"]
    assert any(n.startswith("extra input") for n in by_name)
    # its legend entry is in the map's key (drawn by the page), and back in an exported image
    extra = next(i for i, t in enumerate(fig.data) if t.name.startswith("extra input"))
    assert fig.layout.meta["key"]["entries"] == [{"name": "extra input (teacher, merged)",
                                                  "line": {"color": "#8e44ad", "dash": "dash"}}]
    assert fig.layout.meta["export"]["legend"] == [extra] and not fig.data[extra].showlegend
    assert all(t.fill == "toself" for t in by_name["edges"])
    assert len(by_name["edges"]) <= 13  # colour bins, not one trace per edge
    headers = list(by_name["column labels"][0].text)  # a text trace, not annotations (cheaper to draw)
    assert headers[0] == "base" and "prune" in headers and not fig.layout.annotations
    assert list(by_name["column labels"][0].x) == list(by_name["columns"][0].x)  # above their handles
    # a box selection does not fade them
    assert by_name["column labels"][0].unselected.textfont.color == by_name["column labels"][0].textfont.color
    # bigger models draw bigger nodes
    sizes = dict(zip(by_name["models"][0].customdata, by_name["models"][0].marker.size))
    assert sizes["base"] > sizes["mag5_q"]


def test_collapsed_nodes_get_an_expand_badge_with_count_and_best() -> None:
    f = study()
    lay = layout_forest(f, collapse=["mag5"], metric="accuracy")
    fig = map_figure(f, lay, Encoding.build(f, INFOS, "accuracy", "size_bytes"), INFOS, {}, set(), set())
    badge = next(t for t in fig.data if t.name == "collapsed")
    assert list(badge.customdata) == ["expand:mag5"]
    assert badge.text[0] == "+4 · best 90.0%"


def test_scatter_front_uses_metric_directions() -> None:
    f = study()
    front = front_ids(f, INFOS, "size_bytes", "accuracy", set())
    assert "base" in front and "mag5_q" not in front or "mag5_c_q" in front
    # lower size and higher accuracy are better: nothing on the front is dominated
    pts = {r: (f.nodes[r].metrics["size_bytes"], f.nodes[r].metrics["accuracy"]) for r in f.nodes}
    for r in front:
        assert not any(pts[o][0] <= pts[r][0] and pts[o][1] >= pts[r][1] and pts[o] != pts[r] for o in f.nodes)
    state = {**empty_state(), "ready": True, **default_metrics(f, INFOS), "sel": ["mag5"]}
    _, sfig, _ = overview_figures(f, INFOS, state, {})
    assert any(t.name == "Pareto front" for t in sfig.data)
    assert sfig.layout.xaxis.type == "log"  # bytes


def test_figures_carry_plotlys_look_for_the_trace_types_they_draw_only() -> None:
    f = study()
    state = {**empty_state(), "ready": True, **default_metrics(f, INFOS), "sel": ["mag5", "mag5_q"]}
    mfig, sfig, _ = overview_figures(f, INFOS, state, {})
    ex = explain_selection(f, ["mag5", "mag5_q"])
    figs = [mfig, sfig, histogram_figure([0.1, 0.9], INFOS["accuracy"], None),
            details_figure(f, ["mag5", "mag5_q"], ex.values, ex.x, ex.color, "accuracy", INFOS["accuracy"])]
    plotly = pio.templates["plotly"].to_plotly_json()
    for fig in figs:
        template = fig.to_plotly_json()["layout"]["template"]
        drawn = {t.type for t in fig.data}
        assert drawn <= set(template["data"]) == {"scatter", "bar", "heatmap"}  # not 24 trace types
        for key in ("font", "colorway", "hoverlabel", "xaxis", "yaxis", "plot_bgcolor"):
            assert template["layout"][key] == plotly["layout"][key]  # the same look
        assert "scene" not in template["layout"] and "geo" not in template["layout"]
    size = len(json.dumps(mfig.to_plotly_json()["layout"]["template"], cls=PlotlyJSONEncoder))
    assert size < len(json.dumps(plotly, cls=PlotlyJSONEncoder)) / 2  # 7 KB before


def test_histogram_marks_budget() -> None:
    fig = histogram_figure([0.1, 0.2, 0.5, 0.9], INFOS["accuracy"], (0.4, 1.0), bins=4)
    colors = list(fig.data[0].marker.color)
    assert colors[0] != colors[-1]
    assert fig.layout.dragmode == "select" and fig.layout.selectdirection == "h"


def bars(f: Forest, ids: list[str]) -> tuple[Any, Any]:
    ex = explain_selection(f, ids)
    fig = details_figure(f, ids, ex.values, ex.x, ex.color, "accuracy", INFOS["accuracy"])
    return ex, fig


def test_details_calibrate_yes_no() -> None:
    f = study()
    ex, fig = bars(f, ["mag5_q", "mag5_c_q"])
    assert ex.comparable and ex.x is not None and "calibrate" in ex.x.name and ex.color is None
    assert len(fig.data) == 1 and len(fig.data[0].x) == 2


def test_details_method_by_sparsity() -> None:
    f = study()
    ids = ["mag3", "mag5", "mag7", "gra3", "gra5", "gra7"]
    ex, fig = bars(f, ids)
    assert ex.comparable
    assert {ex.x.name, ex.color.name} == {"prune.sparsity", "prune.method"}
    assert len(fig.data) == (2 if ex.color.name == "prune.method" else 3)
    if ex.x.name == "prune.sparsity":
        assert list(fig.data[0].x) == ["0.3", "0.5", "0.7"]  # numeric order


def test_details_two_bases_same_recipe() -> None:
    f = build_forest([model("b1", name="resnet"), model("b2", name="vgg"),
                      model("p1", "b1", "prune", 0.8, sparsity=0.5),
                      model("p2", "b2", "prune", 0.7, sparsity=0.5)])
    ex, fig = bars(f, ["p1", "p2"])
    assert ex.comparable and ex.x is not None and ex.x.kind == "base"
    assert sorted(fig.data[0].x) == ["resnet", "vgg"]


def test_details_needs_refine() -> None:
    """The paper's study shape, all selected: more than two variables -> Refine Comparison."""
    nodes = [model("base")] + [model(s.key, s.parent, s.operation, **s.params) for s in STUDY_SPECS]
    f = build_forest(nodes)
    ex = explain_selection(f, list(f.nodes))
    assert not ex.comparable and len(ex.refine_options) > 2


def test_details_for_300_models() -> None:
    nodes = [model("r")]
    for i in range(300):
        nodes.append(model(f"p{i}", "r", "prune", 0.5 + i / 1000, method=["a", "b"][i % 2],
                           sparsity=(i // 2) / 150))
    f = build_forest(nodes)
    ids = [n for n in f.nodes if n != "r"]
    ex, fig = bars(f, ids)
    assert ex.comparable and {ex.x.name, ex.color.name} == {"prune.sparsity", "prune.method"}
    assert sum(len(t.x) for t in fig.data) == 300  # a bar for every model
    assert pio.to_json(fig, validate=False)
    # Its speed is measured by benchmarks/selection.py and overview.py (selection_details_ms), not here.


def test_url_state_round_trip() -> None:
    state = {**empty_state(), "ready": True, "experiment": "3", "layout": "step", "color": "accuracy",
             "size": "size_bytes", "x": "latency_ms", "y": "accuracy", "sel": ["a", "b"],
             "filters": {"accuracy": [0.8, 1.0], "latency_ms": None}, "focus": "a",
             "expand": ["c"], "collapse": ["d"]}
    back = parse_query(to_query(state))
    for key in ("experiment", "layout", "color", "size", "x", "y", "sel", "filters", "focus",
                "expand", "collapse"):
        assert back[key] == state[key], key
    assert parse_query("?experiment=1&select=abc")["sel"] == ["abc"]  # the MLflow description link
    assert parse_query("?layout=<script>") == {}


def test_selection_rules() -> None:
    f = study()
    excluded = excluded_ids(f, {"accuracy": [0.85, 1.0]})
    assert "gra7" in excluded and "base" not in excluded
    assert pick([], ["gra7", "base"], False, excluded, f) == ["base"]
    assert pick(["base"], ["mag5"], True, excluded, f) == ["base", "mag5"]
    assert pick(["base", "mag5"], ["mag5"], True, excluded, f) == ["base"]  # shift-click toggles
    assert set(grow(f, ["mag5"], "descendants", set())) == {"mag5", "mag5_q", "mag5_c", "mag5_c_q", "kd"}
    assert grow(f, ["mag5_c_q"], "ancestors", set()) == ["mag5_c_q", "mag5_c", "mag5", "base"]
    assert grow(f, ["mag5"], "parents", set()) == ["mag5", "base"]


def test_csv_has_metrics_and_defuses_formulas() -> None:
    f = study()
    f.nodes["mag5"].name = "=HYPERLINK(1)"
    text = selection_csv(f, ["base", "mag5"], {"base": "http://x/#/experiments/1/runs/base"})
    lines = text.strip().splitlines()
    assert lines[0].startswith("run_id,name,operation,parent,params,status,accuracy")
    assert "'=HYPERLINK(1)" in text and "http://x/#/experiments/1/runs/base" in text


def pruned_study() -> Forest:
    """Pruning leaves the dense size alone: only the nonzero bytes tell the models apart."""
    nodes = [model("base", acc=0.98, size=4000)]
    nodes[0].metrics["nonzero_bytes"] = 4000.0
    for s in (0.5, 0.7, 0.9):
        m = model(f"p{int(s * 10)}", "base", "prune", 0.98 - s / 4, 4000, name=f"<b>p{s}</b>", sparsity=s)
        m.metrics["nonzero_bytes"] = 4000 * (1 - s)
        nodes.append(m)
    return build_forest(nodes)


def test_default_x_is_the_first_efficiency_metric_that_varies() -> None:
    f = pruned_study()
    infos = {**INFOS, "nonzero_bytes": MetricInfo("nonzero_bytes", "min", "B", "bytes", False)}
    assert default_metrics(f, infos) == {"color": "accuracy", "size": "nonzero_bytes",
                                         "x": "nonzero_bytes", "y": "accuracy"}
    for n in f.nodes.values():  # without nonzero_bytes: size_bytes is constant, latency too
        del n.metrics["nonzero_bytes"]
        n.metrics["sparsity"] = n.op_params.get("sparsity", 0.0)
    assert default_metrics(f, infos)["x"] == "sparsity"
    for n in f.nodes.values():  # nothing varies: the first one logged
        del n.metrics["sparsity"]
    assert default_metrics(f, infos)["x"] == "size_bytes"


def test_pareto_front_is_drawn_above_the_markers_with_escaped_labels() -> None:
    f = pruned_study()
    infos = {**INFOS, "nonzero_bytes": MetricInfo("nonzero_bytes", "min", "B", "bytes", False)}
    state = {**empty_state(), "ready": True, **default_metrics(f, infos)}
    _, sfig, _ = overview_figures(f, infos, state, {})
    names = [t.name for t in sfig.data]
    front = sfig.data[names.index("Pareto front")]
    assert names.index("Pareto front") > names.index("models")
    assert "lines" in front.mode and len(front.x) == 4
    assert list(front.text) == ["base", "&lt;b&gt;p0.5&lt;/b&gt;", "&lt;b&gt;p0.7&lt;/b&gt;",
                                "&lt;b&gt;p0.9&lt;/b&gt;"][::-1]
    assert front.customdata is None and front.hoverinfo == "skip"  # picks go to the models below
    # its legend entry is drawn by the page above the graph; an exported image shows it again
    assert not front.showlegend and sfig.layout.meta["key"]["entries"] == [
        {"name": "Pareto front", "line": {"color": front.line.color, "dash": "solid"}}]
    assert sfig.layout.meta["export"] == {"traces": [], "legend": [names.index("Pareto front")]}
    assert sfig.layout.xaxis.type == "log" and sfig.layout.xaxis.dtick == 1  # a decade: powers of ten


def test_log_axis_labels_only_powers_of_ten_over_decades() -> None:
    from dash_app.figures.scatter import log_ticks
    assert log_ticks([1.0, 5000.0])["dtick"] == 1
    assert log_ticks([100.0, 500.0])["dtick"] == "D1"


def test_map_labels_nodes_and_has_a_size_legend() -> None:
    f = pruned_study()
    infos = {**INFOS, "nonzero_bytes": MetricInfo("nonzero_bytes", "min", "B", "bytes", False)}
    lay = layout_forest(f)
    fig = map_figure(f, lay, Encoding.build(f, infos, "accuracy", "nonzero_bytes"), infos, {}, set(), set())
    labels = node_labels(fig)
    assert sorted(labels) == sorted(["base", "&lt;b&gt;p0.5&lt;/b&gt;", "&lt;b&gt;p0.7&lt;/b&gt;",
                                     "&lt;b&gt;p0.9&lt;/b&gt;"])
    # the key is drawn by the page, not by Plotly (no legend, no colour bar in the figure)
    assert not [t for t in fig.data if t.showlegend] and fig.layout.showlegend is None
    key = fig.layout.meta["key"]
    assert key["size"] == {"metric": "nonzero_bytes", "marks": [{"px": NODE_PX[0], "text": "400 B"},
                                                                {"px": NODE_PX[1], "text": "4.00 KB"}]}
    assert key["color"]["metric"] == "accuracy" and key["color"]["darker"] == "higher"
    assert key["color"]["ramp"].startswith("linear-gradient(to right, #e4e7ec 0%")
    # an exported image gets them back: the colour bar and the two size entries
    export = fig.layout.meta["export"]["traces"]
    assert export[0]["marker"]["showscale"] and export[0]["marker"]["colorbar"]["title"]["text"] == "accuracy"
    assert [t["name"] for t in export[1:]] == ["smallest 400 B", "largest 4.00 KB"]
    assert export[1]["legendgrouptitle"]["text"] == "node size: nonzero_bytes"
    # many models: only the selected ones are labelled
    big = build_forest([model("r")] + [model(f"c{i}", "r", "prune", sparsity=i / 100) for i in range(70)])
    lay = layout_forest(big)
    fig = map_figure(big, lay, Encoding.build(big, INFOS, "accuracy", "size_bytes"), INFOS, {}, {"c3"}, set())
    assert node_labels(fig) == ["c3"]


def node_labels(fig: Any) -> list[str]:
    """The map's node labels: one text trace, no hover (the models below take it), no annotations."""
    traces = [t for t in fig.data if t.name == "node labels"]
    assert len(traces) <= 1 and all(t.hoverinfo == "skip" for t in traces)
    assert not [a for a in fig.layout.annotations if a.name == "node label"]
    return list(traces[0].text) if traces else []


def test_details_labels_are_words_and_bar_labels_do_not_collide() -> None:
    f = study()
    ids = ["base", "mag3", "mag5", "mag7", "gra3", "gra5", "gra7"]
    _ex, fig = bars(f, ids)
    legend = [t.name for t in fig.data]
    assert not any("=" in n for n in legend), legend
    for t in fig.data:  # many bars: rotated value labels, one per bar
        assert t.textangle == -90 and len(t.text) == len(t.x)


def test_default_x_prefers_a_metric_every_model_has() -> None:
    f = pruned_study()
    for n in f.nodes.values():
        n.metrics["nonzero_count"] = n.metrics["nonzero_bytes"] / 4
    del f.nodes["p5"].metrics["nonzero_bytes"]  # that model would drop out of the scatterplot
    assert default_metrics(f, INFOS)["x"] == "nonzero_count"


def test_map_key_is_text_and_marks_models_without_the_colour_metric() -> None:
    from dash_app.views.legend_key import take
    from dash_app.views.model_map import key

    nodes = [model("base", acc=0.97, size=4000), model("p", "base", "prune", 0.9, 2000, sparsity=0.5),
             model("q", "base", "quantize", 0.8, 1000, bits=8)]
    for n in nodes:
        n.metrics["<b>acc</b>"] = n.metrics.pop("accuracy")
    del nodes[2].metrics["<b>acc</b>"]  # q never logged it: drawn grey
    f = build_forest(nodes)
    fig = map_figure(f, layout_forest(f), Encoding.build(f, {}, "<b>acc</b>", "size_bytes"), {}, {}, set(), set())
    spec = fig.layout.meta["key"]["color"]
    assert spec["missing"] and spec["metric"] == "<b>acc</b>"

    def texts(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        kids = getattr(node, "children", None)
        return [t for k in (kids if isinstance(kids, list) else [kids] if kids is not None else []) for t in texts(k)]

    shown = [t for part in key(take(fig)) for t in texts(part)]
    assert "key" not in fig.layout.meta  # taken out: the browser's figure carries no unescaped text
    # the metric's name is plain text (React escapes it), never pre-escaped nor markup
    assert "colour: <b>acc</b>" in shown and "<b>acc</b> not logged" in shown, shown
    assert "node size: size_bytes" in shown and not any("&lt;" in t for t in shown), shown
    # the colour bar of an exported image escapes it for Plotly
    assert fig.layout.meta["export"]["traces"][0]["marker"]["colorbar"]["title"]["text"] == "&lt;b&gt;acc&lt;/b&gt;"
