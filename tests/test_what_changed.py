"""What changed, in words: paths from the selection's common ancestor (pure, on a hand-built forest)."""

from __future__ import annotations

from mlflow_cc.analysis.selection.changes import common_ancestor, what_changed
from mlflow_cc.read.lineage import ModelNode, build_forest


def _forest():
    def node(rid: str, name: str, parent: str | None = None, op: str | None = None, **params: object) -> ModelNode:
        return ModelNode(run_id=rid, name=name, experiment_id="1", declared_parent_id=parent, operation=op,
                         op_params=dict(params))
    return build_forest([
        node("b", "cnn"),
        node("p", "pruned", "b", "prune", sparsity=0.9, method="global_magnitude"),
        node("f", "tuned", "p", "finetune", epochs=2),
        node("q", "small", "b", "quantize"),
        node("b2", "other base"),
        node("p2", "other pruned", "b2", "prune", sparsity=0.5, method="random"),
    ])


def test_paths_from_the_common_ancestor() -> None:
    forest = _forest()
    assert common_ancestor(forest, ["f", "q"]) == "b"
    assert common_ancestor(forest, ["f", "p"]) == "p"
    changes = what_changed(forest, ["f", "q"])
    assert (changes.ancestor, changes.ancestor_name) == ("b", "cnn")
    texts = {p.name: p.text() for p in changes.paths}
    assert texts == {"tuned": "prune 90% magnitude → finetune 2 ep", "small": "quantize"}
    # The ancestor selected too: its own line says so.
    texts = {p.name: p.text() for p in what_changed(forest, ["p", "f"]).paths}
    assert texts == {"pruned": "the common ancestor itself", "tuned": "finetune 2 ep"}


def test_one_model_and_different_bases() -> None:
    forest = _forest()
    one = what_changed(forest, ["f"])
    assert one.ancestor == "b" and one.paths[0].text() == "prune 90% magnitude → finetune 2 ep"
    across = what_changed(forest, ["f", "p2"])
    assert across.ancestor is None
    assert [p.text() for p in across.paths] == ["from cnn → prune 90% magnitude → finetune 2 ep",
                                                "from other base → prune 50% random"]
