"""Artifact uploads that survive a busy shared server, and fail loudly when they cannot.

MLflow's HTTP client already retries each request (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
default 7, exponential backoff from ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``; codes 408,
429, 500, 502, 503, 504 and connection errors). An artifact is several requests (one
PUT per file), so on top of that a whole upload is retried a few times
(``MLFLOW_CC_UPLOAD_ATTEMPTS``, default 3) when it fails with anything that is not
plainly permanent. PUTs of the same path replace the file, so a retry is safe.

When an upload still fails, the run is marked FAILED with the reason (best effort: if
the server is gone the run stays RUNNING, which does not look complete either), the
run id is remembered so that a later :meth:`~mlflow_cc.track.tracking.ModelRun.end` cannot
mark it FINISHED, and :class:`~mlflow_cc.errors.ArtifactError` (reason "not written")
is raised.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.errors import ArtifactError

_log = logging.getLogger(__name__)

ATTEMPTS_ENV = "MLFLOW_CC_UPLOAD_ATTEMPTS"
DEFAULT_ATTEMPTS = 3
#: MLflow error codes no retry can fix.
PERMANENT_CODES = frozenset({"INVALID_PARAMETER_VALUE", "PERMISSION_DENIED", "UNAUTHENTICATED",
                             "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE", "BAD_REQUEST"})

_failed_lock = threading.Lock()
_failed_runs: set[str] = set()


def artifacts_failed(run_id: str) -> bool:
    """True when an artifact of ``run_id`` could not be written in this process."""
    with _failed_lock:
        return run_id in _failed_runs


def upload(client: MlflowClient, run_id: str, local: str, artifact_path: str | None, *,
           folder: bool = False) -> None:
    """``client.log_artifact(s)`` with whole-upload retries; on failure mark the run FAILED."""
    attempts = _attempts()
    what = f"{artifact_path or ''}/{os.path.basename(local)}" if not folder else (artifact_path or local)
    for attempt in range(1, attempts + 1):
        try:
            if folder:
                client.log_artifacts(run_id, local, artifact_path)
            else:
                client.log_artifact(run_id, local, artifact_path)
            return
        except Exception as exc:
            if attempt < attempts and not _permanent(exc):
                delay = min(30.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random())
                _log.warning("mlflow-cc: upload of %s to run %s failed (%s); retry %d/%d in %.1fs",
                             what, run_id, _short(exc), attempt, attempts - 1, delay)
                time.sleep(delay)
                continue
            reason = f"artifact {what} could not be written: {_short(exc)}"
            mark_failed(client, run_id, reason)
            raise ArtifactError(f"run {run_id}: {reason}", "not written") from exc


def mark_failed(client: MlflowClient, run_id: str, reason: str) -> None:
    """Record ``reason`` and set the run FAILED (best effort), and remember it locally."""
    with _failed_lock:
        _failed_runs.add(run_id)
    try:
        client.set_tag(run_id, contract.TAG_FAILURE, reason[:5000])
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
    except Exception as exc:  # noqa: BLE001 - the store may be the thing that is down
        _log.error("mlflow-cc: run %s could not be marked FAILED (%s); it stays RUNNING", run_id, _short(exc))


def _permanent(exc: BaseException) -> bool:
    if isinstance(exc, MlflowException) and exc.error_code in PERMANENT_CODES:
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        return True
    return isinstance(exc, (FileNotFoundError, IsADirectoryError, ValueError, TypeError))


def _attempts() -> int:
    try:
        return max(1, int(os.environ.get(ATTEMPTS_ENV, DEFAULT_ATTEMPTS)))
    except ValueError:
        return DEFAULT_ATTEMPTS


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


def local_artifact_root(client: MlflowClient, run_id: str) -> Path | None:
    """The run's artifact folder when the store keeps artifacts on this machine's disk."""
    uri = client.get_run(run_id).info.artifact_uri or ""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return None
    return Path(urllib.request.url2pathname(parsed.path))


def publish_local(staged: Path, destination: Path) -> None:
    """Move a staged folder into place with a rename (same filesystem): complete or absent.

    A folder logged before is replaced (moved aside first, then removed), as a re-upload would.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(destination, old)
    os.replace(staged, destination)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
