"""Selection variables (SPEC section 6) on forests built in memory."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from mlflow_cc.analysis.selection import Explanation, explain_selection, refine
from mlflow_cc.analysis.selection import search as selection_search
from mlflow_cc.analysis.selection.cut_tree import _CutTree
from mlflow_cc.analysis.selection.search import _Search
from mlflow_cc.read.lineage import Forest, ModelNode, build_forest

Row = tuple[str, str | None, str | None, dict[str, Any]]


def forest_of(rows: list[Row]) -> Forest:
    """(key, parent key, operation, params) -> a forest whose run ids are the keys."""
    return build_forest(ModelNode(run_id=k, name=k, experiment_id="1", declared_parent_id=p,
                                  operation=op, op_params=params, start_time=i)
                        for i, (k, p, op, params) in enumerate(rows))


def study_rows() -> list[Row]:
    """The paper's first study task in miniature (the shape of testing.synthetic.STUDY_SPECS,
    copied so these tests do not move when the case-study fixtures do)."""
    q8 = {"bits": 8, "method": "dynamic"}
    rows: list[Row] = [("base", None, None, {}), ("q8", "base", "quantize", q8)]
    rows += [(f"{short}{s}", "base", "prune", {"method": f"global_{method}", "sparsity": s / 100})
             for short, method in (("mag", "magnitude"), ("grad", "gradient")) for s in (30, 50, 70, 90)]
    for key, parent, op, params in [
            ("mag70_ft", "mag70", "finetune", {"epochs": 2, "lr": 0.001}),
            ("mag90_ft", "mag90", "finetune", {"epochs": 2, "lr": 0.001}),
            ("grad70_ft", "grad70", "finetune", {"epochs": 2, "lr": 0.001}),
            ("mag50_q", "mag50", "quantize", q8), ("mag50_cal", "mag50", "calibrate", {"batches": 8}),
            ("mag50_cal_q", "mag50_cal", "quantize", q8), ("mag70_ft_q", "mag70_ft", "quantize", q8),
            ("grad50_q", "grad50", "quantize", q8), ("grad50_cal", "grad50", "calibrate", {"batches": 8}),
            ("grad50_cal_q", "grad50_cal", "quantize", q8)]:
        rows.append((key, parent, op, params))
    return rows


def study() -> Forest:
    return forest_of(study_rows())


def names(e: Explanation) -> list[str]:
    return [v.name for v in e.variables]


def test_calibrate_yes_no_explains_prune_quantize_vs_prune_calibrate_quantize() -> None:
    e = explain_selection(study(), ["mag50_q", "mag50_cal_q"])
    assert names(e) == ["calibrate"]
    assert e.x is not None and e.x.kind == "presence" and e.color is None and e.comparable
    assert e.values == {"mag50_q": {"calibrate": False}, "mag50_cal_q": {"calibrate": True}}
    assert e.x.levels == (False, True) and e.x.labels == ("no", "yes")
    assert e.constants["prune.sparsity"] == 0.5 and e.refine_options == {}


def test_magnitude_vs_gradient_at_several_sparsities() -> None:
    selected = [f"{m}{s}" for m in ("mag", "grad") for s in (30, 50, 70, 90)]
    e = explain_selection(study(), selected)
    assert e.comparable
    assert e.x is not None and e.x.name == "prune.sparsity" and e.x.levels == (0.3, 0.5, 0.7, 0.9)
    assert e.color is not None and e.color.name == "prune.method"
    assert e.color.levels == ("global_gradient", "global_magnitude")
    assert e.values["grad70"] == {"prune.sparsity": 0.7, "prune.method": "global_gradient"}
    assert all(isinstance(v["prune.sparsity"], float) for v in e.values.values())


def test_two_base_models_same_recipe() -> None:
    rows: list[Row] = []
    for b in ("resnet", "mobilenet"):
        rows += [(b, None, None, {}), (f"{b}_p", b, "prune", {"sparsity": 0.5}),
                 (f"{b}_pq", f"{b}_p", "quantize", {"bits": 8})]
    e = explain_selection(forest_of(rows), ["resnet_pq", "mobilenet_pq"])
    assert names(e) == ["base model"] and e.x is not None and e.x.kind == "base"
    assert e.x.levels == ("mobilenet", "resnet") and e.color is None
    assert e.values["resnet_pq"] == {"base model": "resnet"}
    # The whole recipe on both bases: x = the recipe (ordered), colour = the base model.
    e = explain_selection(forest_of(rows), [r[0] for r in rows])
    assert e.x is not None and e.x.kind == "sequence"
    assert e.x.levels == ("none", "prune", "prune → quantize")
    assert e.color is not None and e.color.name == "base model"


def test_models_at_different_depths_of_one_chain() -> None:
    rows: list[Row] = [("b", None, None, {}), ("p", "b", "prune", {"sparsity": 0.5}),
                       ("pf", "p", "finetune", {"epochs": 2}), ("pfq", "pf", "quantize", {"bits": 8}),
                       ("pfqf", "pfq", "finetune", {"epochs": 1})]
    f = forest_of(rows)
    e = explain_selection(f, ["b", "p", "pf", "pfq", "pfqf"])
    assert len(e.variables) == 1 and e.x is not None and e.x.kind == "sequence"
    assert e.x.levels[0] == "none" and e.x.levels[-1] == "prune → finetune → quantize → finetune"
    assert len(e.x.levels) == 5
    # Two models of the chain: one flag.
    e = explain_selection(f, ["p", "pfq"])
    assert e.x is not None and e.comparable and len(e.variables) == 1
    # Three: the cumulative flags merge into one sequence.
    e = explain_selection(f, ["b", "p", "pf"])
    assert names(e) == ["recipe"] and e.x is not None and e.x.levels == ("none", "prune", "prune → finetune")


def test_single_model_and_empty_selection() -> None:
    e = explain_selection(study(), ["mag50_cal_q"])
    assert e.variables == [] and e.x is None and e.color is None and e.comparable
    assert e.values == {"mag50_cal_q": {}}
    e = explain_selection(study(), [])
    assert e.values == {} and e.comparable
    e = explain_selection(study(), ["no-such-run"])
    assert e.values == {}


def test_descendants_of_a_pruned_model() -> None:
    # Fig. 4A: a model and its descendants, calibrate x quantize.
    e = explain_selection(study(), ["mag50", "mag50_q", "mag50_cal", "mag50_cal_q"])
    assert e.comparable and sorted(names(e)) == ["calibrate", "quantize"]
    assert e.values["mag50_cal_q"] == {"calibrate": True, "quantize": True}
    assert e.values["mag50"] == {"calibrate": False, "quantize": False}


def test_multiple_subtrees() -> None:
    # Fig. 4B: the same two recipes after magnitude and after gradient pruning.
    sel = ["mag50_q", "mag50_cal_q", "grad50_q", "grad50_cal_q"]
    e = explain_selection(study(), sel)
    assert e.comparable and sorted(names(e)) == ["calibrate", "prune.method"]


def test_parameter_of_an_optional_operation_folds_its_presence() -> None:
    rows: list[Row] = [("b", None, None, {}), ("p", "b", "prune", {"sparsity": 0.5}),
                       ("pq", "p", "quantize", {"bits": 8}),
                       ("pc4", "p", "calibrate", {"batches": 4}), ("pc4q", "pc4", "quantize", {"bits": 8}),
                       ("pc8", "p", "calibrate", {"batches": 8}), ("pc8q", "pc8", "quantize", {"bits": 8})]
    e = explain_selection(forest_of(rows), ["pq", "pc4q", "pc8q"])
    assert names(e) == ["calibrate.batches"] and e.x is not None
    assert e.x.levels == (None, 4, 8) and e.x.labels == ("no calibrate", "4", "8")


def test_needs_refine() -> None:
    e = explain_selection(study(), [r[0] for r in study_rows()])
    assert not e.comparable and e.x is None and e.color is None
    assert len(e.variables) > 2
    assert set(e.refine_options) == set(names(e))
    assert all(len(v) > 1 for v in e.refine_options.values())
    # Picking one value of all but two variables leaves a comparable subset.
    for name, levels in e.refine_options.items():
        assert levels == list(next(v for v in e.variables if v.name == name).levels)
    first = e.variables[0]
    subset = refine(e, {first.name: first.levels[-1]})
    assert subset and len(subset) < len(e.values)
    assert all(e.values[r][first.name] == first.levels[-1] for r in subset)


def test_operation_type_when_siblings_differ() -> None:
    rows: list[Row] = [("b", None, None, {}), ("p", "b", "prune", {"sparsity": 0.5}),
                       ("q", "b", "quantize", {"bits": 8}), ("d", "b", "distill", {"layers": 4}),
                       ("f", "b", "finetune", {"epochs": 1}), ("c", "b", "calibrate", {"batches": 2})]
    e = explain_selection(forest_of(rows), ["p", "q", "d", "f", "c"])
    assert names(e) == ["first operation"] and e.x is not None and e.x.kind == "op_type"
    assert e.values["d"] == {"first operation": "distill"}


def test_repeated_operation_is_numbered() -> None:
    rows: list[Row] = [("b", None, None, {}), ("p", "b", "prune", {"sparsity": 0.3}),
                       ("pf", "p", "finetune", {"epochs": 1}),
                       ("pfp5", "pf", "prune", {"sparsity": 0.5}), ("pfp7", "pf", "prune", {"sparsity": 0.7})]
    e = explain_selection(forest_of(rows), ["pfp5", "pfp7"])
    assert names(e) == ["prune 2.sparsity"]


def test_values_are_typed_and_json_ready() -> None:
    e = explain_selection(study(), [r[0] for r in study_rows()[1:]])
    d = json.loads(json.dumps(e.to_dict()))
    assert set(d["values"]) == {r[0] for r in study_rows()[1:]}
    for v in e.variables:
        assert len(v.levels) == len(v.labels) == len(set(v.labels)) or v.kind == "merged"
        if v.kind == "presence":
            assert all(isinstance(x, bool) for x in v.levels)


def test_selection_order_does_not_matter() -> None:
    sel = ["mag30", "grad90", "mag50_cal_q", "mag70_ft", "q8"]
    a = explain_selection(study(), sel)
    b = explain_selection(study(), list(reversed(sel)))
    assert a == b


def random_rows(rng: random.Random, n: int) -> list[Row]:
    """A small random forest: 2 roots, prune/quantize/finetune with a few parameter values."""
    ops = [("prune", {"sparsity": [0.3, 0.5]}), ("quantize", {"bits": [4, 8]}), ("finetune", {})]
    rows: list[Row] = [("r0", None, None, {}), ("r1", None, None, {})]
    for i in range(2, n):
        op, choices = rng.choice(ops)
        rows.append((f"m{i}", rng.choice(rows)[0], op, {k: rng.choice(v) for k, v in choices.items()}))
    return rows


@pytest.mark.parametrize("seed", range(60))
def test_explains_exactly_what_the_tree_tells_apart(seed: int) -> None:
    """Models with different recipes (base + operations + parameters) get different values."""
    rng = random.Random(seed)
    f = forest_of(random_rows(rng, rng.randint(3, 40)))
    sel = rng.sample(list(f.nodes), rng.randint(1, min(12, len(f))))
    e = explain_selection(f, sel)
    assert set(e.values) == set(sel)

    def recipe(rid: str) -> tuple[Any, ...]:
        path = [rid, *f.ancestors(rid)][::-1]
        return (path[0], *((f[r].operation, tuple(sorted(f[r].op_params.items()))) for r in path[1:]))

    for a in sel:
        for b in sel:
            same_values = e.values[a] == e.values[b] and all(
                type(e.values[a][k]) is type(e.values[b][k]) for k in e.values[a])
            assert same_values == (recipe(a) == recipe(b)), (a, b, e.values[a], e.values[b])
    for v in e.variables:
        assert len(v.levels) >= 2 and len(v.levels) == len(v.labels)
        assert len(set(v.labels)) == len(v.labels)
    assert e.comparable == (len(e.variables) <= 2)


def test_more_than_two_variables_fold_into_two() -> None:
    # method, sparsity, calibrate, finetune: each flag goes with one method / one sparsity.
    e = explain_selection(study(), ["mag50_q", "grad50_cal_q", "mag70_ft_q"])
    assert e.comparable and e.x is not None and e.color is not None
    assert e.x.kind == "merged" and e.x.levels == (0.5, 0.7)  # numbers stay numbers on x
    assert e.x.labels == ("0.5", "0.7, finetune")
    assert e.values["mag70_ft_q"][e.x.name] == 0.7


def test_base_models_with_the_same_name() -> None:
    rows: list[Row] = [("a1", None, None, {}), ("a2", None, None, {})]
    f = build_forest(ModelNode(run_id=k, name="cnn", experiment_id="1") for k, *_ in rows)
    e = explain_selection(f, ["a1", "a2"])
    assert e.x is not None and e.x.levels == ("cnn (a1)", "cnn (a2)")


def brute_cost(search: _Search, state: Any) -> int:
    """Every walk, no memo: the paper's exhaustive search, over the same moves."""
    if not state[0]:
        return 0
    return min(cost if move[0] == "sequence" else cost + brute_cost(search, search._next(state, move))
               for cost, _, move in search._moves(state))


@pytest.mark.parametrize("seed", range(40))
def test_search_finds_the_cheapest_walk(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    f = forest_of(random_rows(rng, rng.randint(3, 18)))
    sel = sorted(rng.sample(list(f.nodes), rng.randint(1, min(8, len(f)))))
    tree = _CutTree(f, sel)
    start = (frozenset((0, r) for r in tree.children[0]), False)
    exact = _Search(tree)
    best = exact._solve(start, 0)
    assert best == brute_cost(_Search(tree), start)
    # With no budget at all the greedy walk is complete, and never cheaper.
    monkeypatch.setattr(selection_search, "SEARCH_BUDGET", -1)
    greedy = _Search(tree)
    assert greedy._solve(start, 0) >= best
    assert greedy.best_walk()
