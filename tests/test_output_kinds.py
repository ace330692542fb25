"""The four outputs kinds round-trip through a sqlite store and a real ``mlflow server``; bad input
fails with a clear ValueError and writes nothing; version-1 files still read as classification."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from mlflow_cc import artifacts as aio
from mlflow_cc import contract
from mlflow_cc.artifacts.files import CACHE_DIR_ENV
from mlflow_cc.errors import ArtifactError
from testing.local_server import MlflowServer

IDS = ["q1", "q2", "q3"]
GENS = ["The Paris", "blue whale!", "1945"]
REFS: list[str | list[str]] = ["Paris", ["the blue whale", "blue whales"], "1944"]
RNG = np.random.default_rng(0)
LENGTHS = [3, 2, 4]
K = 4
TOPK_IDS = [RNG.integers(0, 100, (t, K)) for t in LENGTHS]
TOPK_LP = [np.log(np.full((t, K), 0.2, np.float32)) for t in LENGTHS]
REF_LP = [np.full(t, -0.5, np.float32) for t in LENGTHS]


@pytest.fixture(scope="module")
def sqlite_client(tmp_path_factory: pytest.TempPathFactory) -> MlflowClient:
    """One real sqlite store for the module (creating its schema takes seconds; tests share it)."""
    return MlflowClient(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


@pytest.fixture(params=["sqlite", "server"])
def client(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_client")
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    server: MlflowServer = request.getfixturevalue("mlflow_server")
    return MlflowClient(server.url)


def _run(client: MlflowClient, tmp_path: Path) -> str:
    name = f"kinds-{tmp_path.name}-{uuid.uuid4().hex[:8]}"
    exp = client.create_experiment(name, artifact_location=str(tmp_path / "artifacts")) \
        if client.tracking_uri.startswith("sqlite") else client.create_experiment(name)
    return client.create_run(exp).info.run_id


def _log_generation(client: MlflowClient, run_id: str, **kw: object) -> None:
    args: dict[str, object] = {"prompts": ["capital of France?", "largest animal?", "end of WW2?"],
                                   "scores": {"judge": np.array([0.9, 0.5, 0.1])},
                                   "reference_nll": np.array([0.5, 1.0, 2.0]), "reference_token_logprobs": REF_LP,
                                   "topk_token_ids": TOPK_IDS, "topk_logprobs": TOPK_LP, "dataset": "qa", "client": client}
    args.update(kw)
    aio.log_generation_outputs(run_id, IDS, GENS, REFS, **args)  # type: ignore[arg-type]


def test_generation_round_trip(client: MlflowClient, tmp_path: Path) -> None:
    run_id = _run(client, tmp_path)
    _log_generation(client, run_id)
    out = aio.load_outputs(client, run_id)
    assert out.kind == "generation" and out.instance_ids.tolist() == IDS
    gen = out.generation
    assert gen is not None
    assert gen.generations.tolist() == GENS and gen.prompts is not None and gen.prompts[0] == "capital of France?"
    assert gen.references == [("Paris",), ("the blue whale", "blue whales"), ("1944",)]
    # Exact match and F1 are computed at capture: "The Paris" == "Paris" once articles go; "1945" != "1944".
    assert out.scores["exact_match"].tolist() == [1.0, 1.0, 0.0]
    assert out.scores["f1"].tolist() == [1.0, 1.0, 0.0]
    assert out.scores["judge"].tolist() == [0.9, 0.5, 0.1]
    assert gen.reference_nll is not None and gen.reference_nll.tolist() == [0.5, 1.0, 2.0]
    assert gen.token_offsets is not None and gen.token_offsets.tolist() == [0, 3, 5, 9]
    ids, lps = gen.tokens(2)
    assert ids is not None and lps is not None
    np.testing.assert_array_equal(ids, TOPK_IDS[2])
    np.testing.assert_allclose(lps, TOPK_LP[2])
    assert gen.reference_token_logprobs is not None and gen.reference_token_logprobs.shape == (9,)
    tags = client.get_run(run_id).data.tags
    assert tags[contract.TAG_OUTPUT_KIND] == "generation" and tags[contract.TAG_DATASET] == "qa"


def test_generation_minimal(client: MlflowClient, tmp_path: Path) -> None:
    run_id = _run(client, tmp_path)
    aio.log_generation_outputs(run_id, IDS, GENS, REFS, client=client)
    gen = aio.load_outputs(client, run_id).generation
    assert gen is not None and gen.prompts is None and gen.reference_nll is None and gen.tokens(0) == (None, None)


def test_regression_and_embedding_round_trip(client: MlflowClient, tmp_path: Path) -> None:
    reg = _run(client, tmp_path)
    aio.log_regression_outputs(reg, IDS, np.array([1.5, -2.0, 3.0]), np.array([1.0, np.nan, 3.5]), client=client)
    out = aio.load_outputs(client, reg)
    assert out.kind == "regression" and out.values is not None and out.targets is not None
    assert out.values.tolist() == [1.5, -2.0, 3.0]
    assert out.targets[0] == 1.0 and np.isnan(out.targets[1]) and out.targets[2] == 3.5
    emb = _run(client, tmp_path)
    vectors = RNG.normal(size=(3, 5)).astype(np.float32)
    aio.log_embedding_outputs(emb, IDS, vectors, dataset="qa", client=client)
    out = aio.load_outputs(client, emb)
    assert out.kind == "embedding" and out.vectors is not None
    np.testing.assert_array_equal(out.vectors, vectors)
    assert client.get_run(emb).data.tags[contract.TAG_OUTPUT_KIND] == "embedding"


def test_classification_is_version_2_and_version_1_still_reads(client: MlflowClient, tmp_path: Path) -> None:
    run_id = _run(client, tmp_path)
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    aio.log_outputs(run_id, IDS, logits, np.array([0, 1, 1]), client=client)
    out = aio.load_outputs(client, run_id)
    assert out.kind == "classification" and out.predictions.tolist() == [0, 1, 0]
    assert client.get_run(run_id).data.tags[contract.TAG_OUTPUT_KIND] == "classification"
    # A version-1 file: the same columns, no kind in the schema metadata, no kind tag.
    old = _run(client, tmp_path)
    table = pa.table({"instance_id": IDS, "label": pa.array([0, 1, None], pa.int64()),
                      "prediction": pa.array([0, 1, 0], pa.int64()),
                      "logits": pa.FixedSizeListArray.from_arrays(pa.array(logits.ravel(), pa.float32()), 2)})
    local = tmp_path / "outputs.parquet"
    pq.write_table(table, local)
    client.log_artifact(old, str(local), "mlflow_cc")
    out = aio.load_outputs(client, old)
    assert out.kind == "classification" and out.labels.tolist() == [0, 1, -1] and out.num_classes == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"generations": GENS[:2]}, "generations must have 3 entries"),
    ({"references": ["Paris", None, "1944"]}, r"references\[1\] is missing"),
    ({"references": ["Paris", [], "1944"]}, r"references\[1\] is missing"),
    ({"references": REFS[:2]}, "references must have 3 entries"),
    ({"prompts": ["a", "b"]}, "prompts must have 3 entries"),
    ({"scores": {"judge": np.array([0.1, np.nan, 0.2])}}, "score 'judge' has 1 non-finite"),
    ({"scores": {"f1": np.zeros(3)}}, "computed by mlflow-cc"),
    ({"reference_nll": np.array([0.1, np.inf, 0.2])}, "reference_nll has 1 non-finite"),
    ({"reference_nll": np.zeros(2)}, r"reference_nll must have shape \(3,\)"),
    ({"topk_logprobs": None}, "go together"),
    ({"topk_token_ids": TOPK_IDS[:2]}, "topk_token_ids must have 3 entries"),
    ({"topk_token_ids": [TOPK_IDS[0], TOPK_IDS[1], TOPK_IDS[2][:3]]}, r"topk_token_ids\[2\] must have shape \(4, k\)"),
    ({"topk_logprobs": [TOPK_LP[0], TOPK_LP[1], TOPK_LP[2][:, :2]]}, "k=2"),
    ({"reference_token_logprobs": [REF_LP[0], REF_LP[1], np.array([np.nan] * 4)]},
     "reference_token_logprobs has 4 non-finite"),
])
def test_generation_validation_writes_nothing(kwargs: dict[str, object], message: str, tmp_path: Path,
                                             sqlite_client: MlflowClient) -> None:
    client = sqlite_client
    run_id = _run(client, tmp_path)
    gens, refs = kwargs.pop("generations", GENS), kwargs.pop("references", REFS)
    args: dict[str, object] = {"reference_token_logprobs": REF_LP, "topk_token_ids": TOPK_IDS, "topk_logprobs": TOPK_LP,
                                   "client": client}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        aio.log_generation_outputs(run_id, IDS, gens, refs, **args)  # type: ignore[arg-type]
    assert client.list_artifacts(run_id) == []
    with pytest.raises(ArtifactError, match="no artifact"):
        aio.load_outputs(client, run_id)


def test_nonfinite_kept_on_request_and_value_kinds_validate(tmp_path: Path, sqlite_client: MlflowClient) -> None:
    client = sqlite_client
    run_id = _run(client, tmp_path)
    _log_generation(client, run_id, reference_nll=np.array([np.nan, 1.0, 2.0]), allow_nonfinite=True)
    gen = aio.load_outputs(client, run_id).generation
    assert gen is not None and gen.reference_nll is not None and np.isnan(gen.reference_nll[0])
    bad = _run(client, tmp_path)
    with pytest.raises(ValueError, match=r"predictions must have shape \(3,\)"):
        aio.log_regression_outputs(bad, IDS, np.zeros(2), client=client)
    with pytest.raises(ValueError, match="predictions has 1 non-finite"):
        aio.log_regression_outputs(bad, IDS, np.array([1.0, np.nan, 0.0]), client=client)
    with pytest.raises(ValueError, match="targets has infinite"):
        aio.log_regression_outputs(bad, IDS, np.zeros(3), np.array([1.0, np.inf, 0.0]), client=client)
    with pytest.raises(ValueError, match=r"vectors must have shape \(N=3, D>=1\)"):
        aio.log_embedding_outputs(bad, IDS, np.zeros((2, 4)), client=client)
    with pytest.raises(ValueError, match="vectors has 1 non-finite"):
        aio.log_embedding_outputs(bad, IDS, np.array([[0.0, 1.0], [np.inf, 0.0], [1.0, 1.0]]), client=client)
    with pytest.raises(ValueError, match="instance ids must be unique"):
        aio.log_embedding_outputs(bad, ["a", "a", "b"], np.ones((3, 2)), client=client)
    assert client.list_artifacts(bad) == []


def test_unknown_kind_is_unreadable(tmp_path: Path, sqlite_client: MlflowClient) -> None:
    client = sqlite_client
    run_id = _run(client, tmp_path)
    table = pa.table({"instance_id": IDS}, metadata={contract.OUTPUTS_META_KIND: "speech"})
    local = tmp_path / "outputs.parquet"
    pq.write_table(table, local)
    client.log_artifact(run_id, str(local), "mlflow_cc")
    with pytest.raises(ArtifactError, match="unknown outputs kind 'speech'") as err:
        aio.load_outputs(client, run_id)
    assert err.value.reason == "unreadable"


def test_answer_normalization() -> None:
    assert aio.normalize_answer("  The  Eiffel-Tower, in Paris! ") == "eiffeltower in paris"
    assert aio.exact_match("an apple", ["Apple"]) == 1.0
    assert aio.token_f1("red big apple", ["big apple"]) == pytest.approx(0.8)
    assert aio.token_f1("", [""]) == 1.0 and aio.token_f1("x", [""]) == 0.0
