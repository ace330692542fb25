"""Artifacts round-trip through real MLflow stores (sqlite, mlflow server), and bad ones fail clearly."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from mlflow_cc import artifacts as aio
from mlflow_cc import contract
from mlflow_cc.artifacts.files import CACHE_DIR_ENV, MAX_MB_ENV
from mlflow_cc.errors import ArtifactError
from testing.local_server import MlflowServer

IDS = ["a", "b", "c", "d"]
LOGITS = np.array([[2.0, 0.0, -1.0], [0.1, 0.3, 0.2], [-1.0, -2.0, 5.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> MlflowClient:
    """One real sqlite store for the module (creating its schema takes seconds; tests share it)."""
    return MlflowClient(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


@pytest.fixture
def experiment_id(client: MlflowClient, tmp_path: Path) -> str:
    # An experiment per test, artifacts under the test's temp folder (not ./mlruns of the cwd).
    return client.create_experiment(f"artifacts-{tmp_path.name}", artifact_location=str(tmp_path / "artifacts"))


def test_default_client_is_the_active_tracking_uri(sqlite_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(sqlite_uri)
    exp = client.create_experiment("default", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(exp).info.run_id
    aio.log_outputs(run_id, IDS, LOGITS)  # no client: MLflow's tracking URI, set by the fixture
    assert aio.load_outputs(client, run_id).predictions.tolist() == [0, 1, 2, 2]


def _run(client: MlflowClient, experiment_id: str) -> str:
    return client.create_run(experiment_id).info.run_id


def _local_file(client: MlflowClient, run_id: str, path: str) -> Path:
    return Path(client.get_run(run_id).info.artifact_uri) / path


# --- outputs -----------------------------------------------------------------
def test_outputs_round_trip(client: MlflowClient, experiment_id: str) -> None:
    run_id = _run(client, experiment_id)
    aio.log_outputs(run_id, IDS, LOGITS, np.array([0, 2, 2, -1]), dataset="toy", dataset_run_id="ds123",
                    extra={"similarity": np.array([1.0, 0.5, 0.25, 0.0])}, client=client)
    out = aio.load_outputs(client, run_id)
    assert out.instance_ids.tolist() == IDS
    assert out.labels.tolist() == [0, 2, 2, -1]  # -1: unknown label, stored as null
    assert out.predictions.tolist() == [0, 1, 2, 2]  # argmax by default
    np.testing.assert_array_equal(out.logits, LOGITS.astype(np.float32))
    assert out.logits.dtype == np.float32 and out.num_classes == 3
    assert out.scores["similarity"].tolist() == [1.0, 0.5, 0.25, 0.0]
    assert (out.dataset, out.dataset_run_id) == ("toy", "ds123")
    tags = client.get_run(run_id).data.tags
    assert tags[contract.TAG_DATASET] == "toy" and tags[contract.TAG_DATASET_RUN] == "ds123"
    # The file follows the documented schema, readable without mlflow_cc.
    import pyarrow.parquet as pq

    schema = pq.read_schema(_local_file(client, run_id, contract.ARTIFACT_OUTPUTS))
    assert str(schema.field("logits").type) == "fixed_size_binary[12]"  # 3 little-endian float32 per row
    assert schema.metadata[contract.OUTPUTS_META_VERSION.encode()] == b"3"
    assert str(schema.field("label").type) == "int64" and str(schema.field("instance_id").type) == "string"
    table = pq.read_table(_local_file(client, run_id, contract.ARTIFACT_OUTPUTS))
    assert table.column("label").null_count == 1
    raw = np.frombuffer(b"".join(table.column("logits").to_pylist()), "<f4").reshape(4, 3)
    np.testing.assert_array_equal(raw, LOGITS.astype(np.float32))


def test_outputs_on_the_same_instances_share_one_id_array(client: MlflowClient, experiment_id: str) -> None:
    """The file names its ids' digest: a second file with the same ids does not decode its id column."""
    first, second, other = (_run(client, experiment_id) for _ in range(3))
    aio.log_outputs(first, IDS, LOGITS, client=client)
    aio.log_outputs(second, IDS, LOGITS[::-1], client=client)
    aio.log_outputs(other, ["a", "b", "c", "e"], LOGITS, client=client)
    a, b, c = (aio.load_outputs(client, r) for r in (first, second, other))
    assert b.instance_ids is a.instance_ids and b.instance_ids.tolist() == IDS
    np.testing.assert_array_equal(b.logits, LOGITS[::-1].astype(np.float32))
    assert c.instance_ids is not a.instance_ids and c.instance_ids.tolist() == ["a", "b", "c", "e"]
    # A file that names the same ids but holds another number of rows is refused, not misaligned.
    import pyarrow.parquet as pq

    local = _local_file(client, second, contract.ARTIFACT_OUTPUTS)
    pq.write_table(pq.read_table(local).slice(0, 3), local)
    with pytest.raises(ArtifactError, match="instance ids") as err:
        aio.load_outputs(client, second)
    assert err.value.reason == "unreadable" and a.instance_ids.tolist() == IDS


@pytest.mark.parametrize("logits_type", ["fixed_size_list", "list", "large_list"])
def test_outputs_of_earlier_versions_still_read(client: MlflowClient, experiment_id: str, tmp_path: Path,
                                                logits_type: str) -> None:
    """Schema version 2 (and 1) files hold the logits as a (fixed-size) list of float32 per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.array(LOGITS.astype(np.float32).ravel(), pa.float32())
    offsets = pa.array(np.arange(0, LOGITS.size + 1, 3), pa.int32())
    logits = {"fixed_size_list": pa.FixedSizeListArray.from_arrays(values, 3),
              "list": pa.ListArray.from_arrays(offsets, values),
              "large_list": pa.LargeListArray.from_arrays(offsets.cast(pa.int64()), values)}[logits_type]
    table = pa.table({"instance_id": IDS, "label": pa.array([0, 2, 2, None], pa.int64()),
                      "prediction": pa.array([0, 1, 2, 2], pa.int64()), "logits": logits},
                     metadata={contract.OUTPUTS_META_KIND: "classification", contract.OUTPUTS_META_VERSION: "2"})
    run_id = _run(client, experiment_id)
    pq.write_table(table, tmp_path / "outputs.parquet")
    client.log_artifact(run_id, str(tmp_path / "outputs.parquet"), "mlflow_cc")
    out = aio.load_outputs(client, run_id)
    np.testing.assert_array_equal(out.logits, LOGITS.astype(np.float32))
    assert out.logits.dtype == np.float32 and out.labels.tolist() == [0, 2, 2, -1]
    # Rows of different lengths, or binary rows that are not whole float32 values, are refused clearly.
    ragged = pa.ListArray.from_arrays(pa.array([0, 3, 6, 9, 11], pa.int32()), values.slice(0, 11))
    odd = pa.array([b"12345"] * 4, pa.binary(5))
    for bad, message in ((ragged, "different lengths"), (odd, "not whole float32")):
        pq.write_table(table.set_column(3, "logits", bad), tmp_path / "outputs.parquet")
        client.log_artifact(run_id, str(tmp_path / "outputs.parquet"), "mlflow_cc")
        with pytest.raises(ArtifactError, match=message) as err:
            aio.load_outputs(client, run_id)
        assert err.value.reason == "unreadable"


def test_outputs_nonfinite_kept_only_on_request(client: MlflowClient, experiment_id: str) -> None:
    run_id = _run(client, experiment_id)
    broken = LOGITS.copy()
    broken[1] = np.nan  # a broken model's output, worth seeing in the comparison
    aio.log_outputs(run_id, IDS, broken, predictions=np.array([0, 0, 2, 2]), allow_nonfinite=True, client=client)
    out = aio.load_outputs(client, run_id)
    assert np.isnan(out.logits[1]).all() and np.isfinite(out.logits[[0, 2, 3]]).all()


def test_outputs_explicit_predictions_and_no_labels(client: MlflowClient, experiment_id: str) -> None:
    run_id = _run(client, experiment_id)
    aio.log_outputs(run_id, np.array([10, 11, 12, 13]), LOGITS, predictions=np.array([1, 1, 1, 0]), client=client)
    out = aio.load_outputs(client, run_id)
    assert out.instance_ids.tolist() == ["10", "11", "12", "13"]
    assert out.predictions.tolist() == [1, 1, 1, 0]
    assert out.labels.tolist() == [-1, -1, -1, -1]
    assert out.dataset is None and out.scores == {}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"logits": np.array([[np.nan, 0, 0]] * 4)}, "non-finite"),
    ({"logits": np.zeros((3, 3))}, "shape"),
    ({"logits": np.zeros(4)}, "shape"),
    ({"instance_ids": ["a", "a", "b", "c"]}, "unique"),
    ({"predictions": np.array([0, 1, 3, 0])}, "class indices"),
    ({"labels": np.array([0, 1, 2])}, "4 entries"),
    ({"labels": np.array([0.5, 1, 2, 0])}, "whole numbers"),
    ({"extra": {"s": np.array([1.0, np.inf, 0, 0])}}, "non-finite"),
])
def test_outputs_refuse_garbage_and_write_nothing(client: MlflowClient, experiment_id: str,
                                                  kwargs: dict, message: str) -> None:
    run_id = _run(client, experiment_id)
    args = {"instance_ids": IDS, "logits": LOGITS, **kwargs}
    with pytest.raises(ValueError, match=message):
        aio.log_outputs(run_id, args.pop("instance_ids"), args.pop("logits"), client=client, **args)
    with pytest.raises(ArtifactError) as err:
        aio.load_outputs(client, run_id)
    assert err.value.reason == "not logged"


# --- dataset -------------------------------------------------------------------
def _instances() -> pd.DataFrame:
    return pd.DataFrame({"instance_id": IDS, "label": [0, 2, 2, None], "meta_rare": [True, False, False, True]})


def test_dataset_round_trip_and_shared_once(client: MlflowClient, experiment_id: str) -> None:
    digit = np.arange(64, dtype=float).reshape(8, 8)
    previews = pd.DataFrame({"instance_id": ["a", "b"], "kind": ["image", "text"],
                             "value": [aio.image_preview(digit), "a sentence"]})
    ds = aio.log_dataset(experiment_id, "toy", _instances(), previews, class_names=["zero", "one", "two"],
                         client=client)
    listed = client.list_artifacts(ds, "mlflow_cc/dataset")
    # A second model logging against the same dataset gets the same run; nothing new is uploaded.
    again = aio.log_dataset(experiment_id, "toy", _instances().iloc[:1], None, client=client)
    assert again == ds
    assert [(f.path, f.file_size) for f in client.list_artifacts(ds, "mlflow_cc/dataset")] == \
        [(f.path, f.file_size) for f in listed]
    runs = client.search_runs([experiment_id], f"tags.`{contract.TAG_KIND}` = 'dataset'")
    assert [r.info.run_id for r in runs] == [ds]
    assert runs[0].data.tags[contract.TAG_DATASET] == "toy" and runs[0].info.status == "FINISHED"
    # Another dataset name makes another run.
    assert aio.log_dataset(experiment_id, "other", _instances(), client=client) != ds

    info = aio.load_dataset(client, ds)
    assert info.name == "toy" and info.class_names == ["zero", "one", "two"]
    assert info.instances["instance_id"].tolist() == IDS
    assert info.instances["label"].tolist()[:3] == [0, 2, 2] and pd.isna(info.instances["label"].iloc[3])
    assert info.instances["label_name"].tolist()[:3] == ["zero", "two", "two"]
    assert info.subgroup_columns == ["meta_rare"]
    assert info.preview("b").kind == "text" and info.preview("b").value == "a sentence"
    assert info.preview("c") is None
    assert set(info.previews(["a", "c", "zz"])) == {"a"}
    png = Image.open(io.BytesIO(base64.b64decode(info.preview("a").value)))
    assert png.size == (8, 8)
    pixels = np.asarray(png)
    assert pixels[0, 0] == 0 and pixels[7, 7] == 255  # scaled min..max to full contrast


def test_dataset_without_previews(client: MlflowClient, experiment_id: str) -> None:
    ds = aio.log_dataset(experiment_id, "bare", _instances(), client=client)
    info = aio.load_dataset(client, ds)
    assert info.class_names == [] and info.preview("a") is None


def test_dataset_refuses_bad_input(client: MlflowClient, experiment_id: str) -> None:
    with pytest.raises(ValueError, match="instance_id"):
        aio.log_dataset(experiment_id, "x", pd.DataFrame({"label": [1]}), client=client)
    with pytest.raises(ValueError, match="kind"):
        aio.log_dataset(experiment_id, "x", _instances(),
                        pd.DataFrame({"instance_id": ["a"], "kind": ["video"], "value": ["?"]}), client=client)
    assert aio.find_dataset_run(client, experiment_id, "x") is None


def test_image_preview_downscales_and_colour() -> None:
    big = np.random.default_rng(0).random((200, 100, 3))
    png = Image.open(io.BytesIO(base64.b64decode(aio.image_preview(big))))
    assert max(png.size) == aio.PREVIEW_MAX_SIDE and png.mode == "RGB"
    with pytest.raises(ValueError):
        aio.image_preview(np.zeros((2, 2, 2)))


# --- layers ----------------------------------------------------------------------
def _layers() -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    weights = {"conv.weight": rng.normal(size=(4, 1, 3, 3)), "conv.bias": np.zeros(4), "fc.weight": np.eye(3)}
    rows = [aio.summarize_tensor(n.rsplit(".", 1)[0], n.rsplit(".", 1)[1], "Linear", w) for n, w in weights.items()]
    summary = pd.DataFrame(rows)
    activations = {"conv": rng.normal(size=(5, 4, 2, 2)), "fc": np.arange(6.0)}
    return summary, weights, activations


def test_summarize_tensor_values() -> None:
    row = aio.summarize_tensor("fc", "weight", "Linear", np.array([[0.0, 2.0], [-2.0, 0.0]]), dtype="qint8",
                               quantized=True)
    assert row == {"module": "fc", "tensor": "weight", "module_type": "Linear", "shape": "[2, 2]", "numel": 4,
                   "zeros": 2, "min": -2.0, "max": 2.0, "mean": 0.0, "std": pytest.approx(2**0.5),
                   "dtype": "qint8", "quantized": True}


def test_layers_round_trip_one_tensor_at_a_time(client: MlflowClient, experiment_id: str) -> None:
    run_id = _run(client, experiment_id)
    summary, weights, activations = _layers()
    aio.log_layers(run_id, summary, weights, activations, metadata={"sample_seed": "0"}, client=client)
    loaded = aio.load_layer_summary(client, run_id)
    pd.testing.assert_frame_equal(loaded.drop(columns="stored"), summary, check_dtype=False)
    assert set(loaded["stored"]) == {"full"}
    assert json.loads(loaded.loc[0, "shape"]) == [4, 1, 3, 3]
    with aio.open_tensors(client, run_id) as f:
        assert sorted(f.keys()) == sorted(weights) and "fc.weight" in f
        assert f.shape("conv.weight") == (4, 1, 3, 3)
        got = f.get("conv.weight")
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, weights["conv.weight"].astype(np.float32))
        assert f.metadata() == {"sample_seed": "0"}
    with aio.open_tensors(client, run_id, "activations") as f:
        assert f.shape("conv") == (80,)  # stored flat
        np.testing.assert_array_equal(f.get("fc"), np.arange(6, dtype=np.float32))
    with pytest.raises(ValueError):
        aio.open_tensors(client, run_id, "gradients")


def test_layers_refuse_garbage(client: MlflowClient, experiment_id: str) -> None:
    run_id = _run(client, experiment_id)
    summary, weights, _ = _layers()
    with pytest.raises(ValueError, match="lacks columns"):
        aio.log_layers(run_id, summary.drop(columns=["zeros"]), weights, client=client)
    with pytest.raises(ValueError, match="non-finite"):
        aio.log_layers(run_id, summary, {**weights, "fc.weight": np.array([np.nan])}, client=client)
    with pytest.raises(ValueError, match="numeric"):
        aio.log_layers(run_id, summary, {"x": np.array(["a"])}, client=client)
    with pytest.raises(ArtifactError) as err:
        aio.load_layer_summary(client, run_id)
    assert err.value.reason == "not logged"
    # A broken model's NaN weights can be kept on purpose.
    aio.log_layers(run_id, summary, {"fc.weight": np.array([np.nan, 1.0])}, allow_nonfinite=True, client=client)
    with aio.open_tensors(client, run_id) as f:
        assert np.isnan(f.get("fc.weight")[0])


# --- failures ----------------------------------------------------------------------
def test_absent_artifacts_are_not_logged(client: MlflowClient, experiment_id: str) -> None:
    run_id = _run(client, experiment_id)
    aio.log_layers(run_id, *_layers()[:2], client=client)  # weights but no activations
    for call in (lambda: aio.load_outputs(client, run_id), lambda: aio.open_tensors(client, run_id, "activations"),
                 lambda: aio.load_dataset(client, run_id), lambda: aio.load_outputs(client, "f" * 32)):
        with pytest.raises(ArtifactError) as err:
            call()
        assert err.value.reason == "not logged"


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_artifacts_are_unreadable(client: MlflowClient, experiment_id: str, damage: str) -> None:
    run_id = _run(client, experiment_id)
    aio.log_outputs(run_id, IDS, LOGITS, client=client)
    aio.log_layers(run_id, *_layers(), client=client)
    for path in (contract.ARTIFACT_OUTPUTS, contract.ARTIFACT_LAYER_SUMMARY, contract.ARTIFACT_WEIGHTS):
        file = _local_file(client, run_id, path)
        data = file.read_bytes()
        file.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 40)
    readers = {"outputs": lambda: aio.load_outputs(client, run_id),
               "summary": lambda: aio.load_layer_summary(client, run_id),
               "weights": lambda: aio.open_tensors(client, run_id, "weights").get("conv.weight")}
    for what, call in readers.items():
        with pytest.raises(ArtifactError) as err:
            call()
        assert err.value.reason == "unreadable", what


def test_outputs_with_wrong_schema_are_unreadable(client: MlflowClient, experiment_id: str) -> None:
    run_id = _run(client, experiment_id)
    aio.log_outputs(run_id, IDS, LOGITS, client=client)
    pd.DataFrame({"instance_id": IDS}).to_parquet(_local_file(client, run_id, contract.ARTIFACT_OUTPUTS))
    with pytest.raises(ArtifactError, match="lacks columns") as err:
        aio.load_outputs(client, run_id)
    assert err.value.reason == "unreadable"


def test_too_large_checked_before_reading(client: MlflowClient, experiment_id: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _run(client, experiment_id)
    aio.log_layers(run_id, *_layers(), client=client)
    monkeypatch.setenv(MAX_MB_ENV, str(100 / 2**20))  # 100 bytes
    with pytest.raises(ArtifactError, match=MAX_MB_ENV) as err:
        aio.open_tensors(client, run_id)
    assert err.value.reason == "too large"
    monkeypatch.setenv(MAX_MB_ENV, "1")
    with aio.open_tensors(client, run_id) as f:
        assert f.get("fc.weight").shape == (3, 3)


# --- http server ---------------------------------------------------------------------
def test_http_server_round_trip_with_cache(mlflow_server: MlflowServer, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    client = MlflowClient(mlflow_server.url)
    exp = client.create_experiment(f"artifact-io-{tmp_path.name}")
    run_id = _run(client, exp)
    aio.log_outputs(run_id, IDS, LOGITS, np.array([0, 2, 2, 1]), client=client)
    summary, weights, activations = _layers()
    aio.log_layers(run_id, summary, weights, activations, client=client)
    ds = aio.log_dataset(exp, "toy", _instances(), pd.DataFrame(
        {"instance_id": ["a"], "kind": ["text"], "value": ["hello"]}), client=client)

    out = aio.load_outputs(client, run_id)
    assert out.predictions.tolist() == [0, 1, 2, 2] and out.labels.tolist() == [0, 2, 2, 1]
    cached = tmp_path / "cache" / run_id / contract.ARTIFACT_WEIGHTS
    with aio.open_tensors(client, run_id) as f:
        np.testing.assert_array_equal(f.get("fc.weight"), np.eye(3, dtype=np.float32))
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    with aio.open_tensors(client, run_id) as f:  # second open: served from the cache
        assert f.shape("conv.weight") == (4, 1, 3, 3)
    assert cached.stat().st_mtime_ns == stamp
    assert not list(cached.parent.glob(".download-*"))  # no temp leftovers
    assert aio.load_layer_summary(client, run_id)["tensor"].tolist() == ["weight", "bias", "weight"]
    assert aio.load_dataset(client, ds).preview("a").value == "hello"
    with pytest.raises(ArtifactError) as err:
        aio.load_outputs(client, _run(client, exp))
    assert err.value.reason == "not logged"
    monkeypatch.setenv(MAX_MB_ENV, str(10 / 2**20))
    with pytest.raises(ArtifactError) as err:  # refused from the listed size, before download
        aio.open_tensors(client, run_id, "activations")
    assert err.value.reason == "too large"
    assert not (tmp_path / "cache" / run_id / contract.ARTIFACT_ACTIVATIONS).exists()
