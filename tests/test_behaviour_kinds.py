"""Behaviours of generation, regression and embedding outputs, read from a real sqlite store: the
kinds' metrics, per subgroup and relative to base, the answer changes, server-side sorting, and the
top-k divergence approximation against the exact KL."""

from __future__ import annotations

import numpy as np
import pytest
from generation_fixtures import CHANGES, QUESTIONS, log_generation_experiment
from mlflow.tracking import MlflowClient

from dash_app.comparison.behaviour_set import Drill, load_behaviour_set
from dash_app.views.generation_rows import word_diff
from mlflow_cc import derive_model, log_base_model
from mlflow_cc.analysis.behaviour_runs import compare_behaviour_runs
from mlflow_cc.analysis.behaviours import (
    register_metric,
    registered_metrics,
    unregister_metric,
)
from mlflow_cc.analysis.generation_metrics import topk_kl
from mlflow_cc.artifacts import log_embedding_outputs, log_regression_outputs


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('kinds') / 'mlflow.db'}"
    return uri, log_generation_experiment("generation-kinds", uri)


def test_generation_metrics_from_the_store(store: tuple[str, object]) -> None:
    uri, exp = store
    base, m30, m70 = exp.run_ids  # type: ignore[attr-defined]
    b = compare_behaviour_runs(MlflowClient(uri), base, [m30, m70])
    assert b.kind == "generation"
    assert {"exact_match", "f1", "answer_changed", "nll", "perplexity", "divergence", "length"} <= set(b.metrics)
    overall = b.overall()
    n = len(QUESTIONS)
    assert overall.loc[m70, "answer_changed"] == pytest.approx(len(CHANGES["prune 70%"]) / n)
    assert overall.loc[base, "answer_changed"] == 0 and overall.loc[base, "divergence"] == 0
    assert overall.loc[base, "exact_match"] == pytest.approx((n - 2) / n)  # two base answers are wrong
    rel = b.overall(relative=True)
    assert rel.loc[m70, "exact_match"] < rel.loc[m30, "exact_match"] < 0
    # Divergence is > 0 exactly where the next-token top-k changed (the changed answers here).
    div = b.instances[f"divergence|{m30}"].to_numpy()
    changed = np.isin(np.arange(n), list(CHANGES["prune 30%"]))
    assert (div[changed] > 0.1).all() and (div[~changed] == 0).all()
    assert np.allclose(b.instances[f"perplexity|{m30}"], np.exp(b.instances[f"nll|{m30}"]))
    groups = b.by_subgroup(relative=True).set_index("value")
    assert groups.loc["science", f"answer_changed|{m70}"] == pytest.approx(5 / 10)
    assert groups.loc["geography", f"answer_changed|{m70}"] == pytest.approx(2 / 10)
    # "Top prediction changes": the repeated change yes -> no first.
    changes = b.prediction_changes(top=3)
    top = changes[changes["model"] == m70].iloc[0]
    assert (top["base_prediction_name"], top["model_prediction_name"], top["count"]) == ("yes", "no", 4)


def test_behaviour_set_pages_answers_sorted_on_the_server(store: tuple[str, object]) -> None:
    uri, exp = store
    base, m30, m70 = exp.run_ids  # type: ignore[attr-defined]
    data = load_behaviour_set(MlflowClient(uri), base, [m30, m70])
    assert data.kind == "generation" and "answer_changed" in data.metrics
    page = data.page("instances", "answer_changed", False, sort=[("v2", False)], limit=50)
    keys = page.rows["key"].tolist()
    changed = [f"q{i:02d}" for i in sorted(CHANGES["prune 70%"])]
    assert keys[:len(changed)] == changed  # descending, ties in dataset order
    first = page.rows.iloc[0]
    assert first["name"] == "Paris" and first["t0"] == "Paris" and first["t2"] == "Lyon"
    assert first["prompt"] == "What is the capital of France?"
    drill = data.page("instances", "f1", True, drill=Drill("subgroup", "history", "topic"), limit=50)
    assert drill.total == 10 and set(drill.rows["key"]) == {f"q{i}" for i in range(20, 30)}
    changes = data.prediction_changes(top=2)
    assert changes[m70][0] == {"base": "yes", "model": "no", "count": 4, "fraction": 4 / 30}


def test_word_diff_marks_only_changed_words() -> None:
    assert word_diff("the blue whale", "the blue shark") == [["the", 0], ["blue", 0], ["shark", 1]]
    assert word_diff("George Washington", "George Washington Carver") == [["George", 0], ["Washington", 0],
                                                                          ["Carver", 1]]
    assert word_diff("Paris.", "paris") == [["paris", 0]]  # case and punctuation do not count
    assert word_diff(None, "<b>") == [["<b>", 0]]


def test_regression_and_embedding_kinds(tmp_path: object, store: tuple[str, object]) -> None:
    uri, _ = store
    client = MlflowClient(uri)
    ids = ["a", "b", "c", "d"]
    with log_base_model("reg", experiment="regression-kinds", tracking_uri=uri) as base:
        pass
    with derive_model(base.run_id, "prune", {"sparsity": 0.5}, tracking_uri=uri) as child:
        pass
    log_regression_outputs(base.run_id, ids, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.5, np.nan, 4.0]),
                           client=client)
    log_regression_outputs(child.run_id, ids[::-1], np.array([5.0, 3.0, 1.0, 0.0]),
                           np.array([4.0, np.nan, 2.5, 1.0]), client=client)
    b = compare_behaviour_runs(client, base.run_id, [child.run_id])
    assert b.kind == "regression"
    rows = b.instances.set_index("instance_id")
    # The child logged in reverse order: aligned by id. Target of "c" unknown: NaN error.
    assert rows[f"abs_error|{child.run_id}"].tolist()[:2] == [1.0, 1.5]
    assert np.isnan(rows.loc["c", f"abs_error|{child.run_id}"])
    assert rows[f"signed_error|{child.run_id}"].tolist()[:2] == [-1.0, -1.5]
    assert rows[f"prediction_change|{child.run_id}"].tolist() == [1.0, 1.0, 0.0, 1.0]
    page = load_behaviour_set(client, base.run_id, [child.run_id]).page("instances", "abs_error", False)
    assert page.rows["t1"].tolist() == ["0", "1", "3", "5"] and page.rows["name"].tolist()[:2] == ["1", "2.5"]

    with log_base_model("emb", experiment="embedding-kinds", tracking_uri=uri) as ebase:
        pass
    with derive_model(ebase.run_id, "quantize", {"bits": 8}, tracking_uri=uri) as echild:
        pass
    vec = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 4.0]])
    log_embedding_outputs(ebase.run_id, ids, vec, client=client)
    log_embedding_outputs(echild.run_id, ids, np.array([[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0], [3.0, 4.0]]),
                          client=client)
    e = compare_behaviour_runs(client, ebase.run_id, [echild.run_id])
    assert e.instances[f"cosine_to_base|{echild.run_id}"].tolist() == pytest.approx([1.0, 0.0, -1.0, 1.0])
    assert e.instances[f"cosine_to_base|{ebase.run_id}"].tolist() == pytest.approx([1.0] * 4)
    # A registered embedding metric is computed too; classification metrics stay apart.
    register_metric("first_dim", lambda base, model: model.vectors[:, 0], kind="embedding")
    try:
        e2 = compare_behaviour_runs(client, ebase.run_id, [echild.run_id])
        assert e2.instances[f"first_dim|{echild.run_id}"].tolist() == [2.0, 1.0, -1.0, 3.0]
        assert "first_dim" not in registered_metrics()
    finally:
        unregister_metric("first_dim", kind="embedding")


def test_topk_divergence_approximation() -> None:
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(8), 5), rng.dirichlet(np.ones(8), 5)
    ids = np.tile(np.arange(8), (5, 1))
    order = np.argsort(-q, axis=1)
    exact = (p * np.log(p / q)).sum(axis=1)
    # k = the whole vocabulary: the exact KL, whatever order the model lists its tokens in.
    got = topk_kl(ids, np.log(p), np.take_along_axis(ids, order, 1), np.log(np.take_along_axis(q, order, 1)))
    np.testing.assert_allclose(got, exact, rtol=1e-9)
    top3 = topk_kl(ids[:, :3], np.log(p[:, :3]), ids[:, :3], np.log(p[:, :3]))
    assert np.allclose(top3, 0.0)  # identical top-k: no divergence
    disjoint = topk_kl(ids[:, :3], np.log(np.full((5, 3), 0.3)), ids[:, 3:6], np.log(np.full((5, 3), 0.3)))
    assert (disjoint > 1.0).all()  # no shared top token: large


def test_models_of_another_kind_are_noted_not_compared(store: tuple[str, object]) -> None:
    uri, exp = store
    client = MlflowClient(uri)
    base, m30, _ = exp.run_ids  # type: ignore[attr-defined]
    ids = [f"q{i:02d}" for i in range(len(QUESTIONS))]
    with log_base_model("classifier", experiment="mixed-kinds", tracking_uri=uri) as clf:
        pass
    from mlflow_cc.artifacts import log_outputs

    log_outputs(clf.run_id, ids, np.eye(3)[np.arange(len(ids)) % 3], np.arange(len(ids)) % 3, client=client)
    # A classification model against a generation base, and the other way round: a note, empty columns.
    gen = compare_behaviour_runs(client, base, [m30, clf.run_id])
    assert gen.notes[clf.run_id] == ["outputs are classification, the base's are generation: not compared"]
    assert gen.instances[f"answer_changed|{clf.run_id}"].isna().all()
    assert gen.instances[f"answer_changed|{m30}"].notna().all()
    cls = compare_behaviour_runs(client, clf.run_id, [base])
    assert cls.notes[base] == ["outputs are generation, the base's are classification: not compared"]
    assert cls.instances[f"correct|{base}"].isna().all() and cls.instances[f"correct|{clf.run_id}"].eq(1).all()
