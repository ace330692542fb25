"""Locate one run artifact as a local file: in place for local stores, cached for remote ones.

Readers in :mod:`mlflow_cc.artifacts` open Parquet and safetensors files by path,
so that safetensors can memory-map them and read one tensor at a time. For a store
whose artifacts are on this machine (the sqlite default, ``file:`` roots) the
artifact file is used where it is. For anything else (``mlflow server`` with served
artifacts, S3, ...) just that one artifact is downloaded into a cache folder keyed
by run id and artifact path. Logged artifacts never change (they are written
complete-or-absent, once), so a cached copy whose size matches stays valid.

Limits: an artifact larger than ``MLFLOW_CC_MAX_ARTIFACT_MB`` megabytes (default
2048) is refused from its listed size, before any byte of it is read or downloaded.

Run ids and artifact paths may come from tags anyone can write (a dataset run id, a
path): both are checked before use, so nothing outside the run's artifact root (or
the run's cache folder) is ever opened or written, symlinks included.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow.artifacts
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_cc.errors import ArtifactError

#: Environment variable: the cache folder for artifacts of remote stores.
CACHE_DIR_ENV = "MLFLOW_CC_CACHE_DIR"
#: Environment variable: the largest artifact read, in megabytes (2**20 bytes).
MAX_MB_ENV = "MLFLOW_CC_MAX_ARTIFACT_MB"
DEFAULT_MAX_MB = 2048
#: What a run id may look like (MLflow's are 32 hex digits; other stores use similar ids).
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")


def cache_dir() -> Path:
    """The cache folder for remote artifacts (``MLFLOW_CC_CACHE_DIR``, default ~/.cache/mlflow-cc)."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "mlflow-cc")


def max_bytes() -> int:
    """The size limit of one artifact, in bytes, from ``MLFLOW_CC_MAX_ARTIFACT_MB``."""
    raw = os.environ.get(MAX_MB_ENV, "")
    try:
        mb = float(raw) if raw else DEFAULT_MAX_MB
    except ValueError:
        mb = DEFAULT_MAX_MB
    return int(mb * 2**20)


def get_run(client: MlflowClient, run_id: str) -> Run:
    """The run, or :class:`ArtifactError` "not logged" when the store has no such run."""
    safe_artifact_path(run_id, "x")  # a run id from a tag is checked before any use
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise ArtifactError(f"run {run_id} not found: {exc.message}", "not logged") from None


def artifact_path(client: MlflowClient, run_id: str, path: str, *, run: Run | None = None) -> Path:
    """A local file holding artifact ``path`` of run ``run_id`` (``run``: already fetched).

    Raises :class:`ArtifactError` with reason "not logged" when the run or the
    artifact does not exist, "too large" when it is over :func:`max_bytes`, and
    "unreadable" when the store fails to hand it over or the run id or path is unsafe.
    """
    path = safe_artifact_path(run_id, path)
    root = served_root((run or get_run(client, run_id)).info.artifact_uri)
    if urlparse(root).scheme in ("", "file"):
        root_dir = Path(_local_path(root))
        local = _inside(root_dir, root_dir / path, run_id, path)
        if not local.is_file():
            raise ArtifactError(f"run {run_id} has no artifact {path}", "not logged")
        _check_size(run_id, path, local.stat().st_size)
        return local
    return _cached_download(client, run_id, path, None if root.startswith(SERVED_SCHEME) else root)


#: Artifacts served by an ``mlflow server`` (``--serve-artifacts``) have URIs of this scheme.
SERVED_SCHEME = "mlflow-artifacts:"
_served_destination: list[str] = []


def set_served_artifacts_destination(destination: str | None) -> None:
    """In the ``mlflow server`` process itself: read ``mlflow-artifacts:`` URIs from ``destination``.

    The server's ``--artifacts-destination`` (a folder or an object store URI); the app mounted in
    the server then reads artifacts directly, without an HTTP hop to itself. ``None``: off.
    """
    _served_destination[:] = [destination.rstrip("/")] if destination else []


def served_root(root: str) -> str:
    """``root``, or where an ``mlflow-artifacts:`` root lives in this server's artifacts destination."""
    if not _served_destination or not root.startswith(SERVED_SCHEME):
        return root
    rel = urlparse(root).path.lstrip("/")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise ArtifactError(f"refused: artifact root {root!r}", "unreadable")
    return f"{_served_destination[0]}/{rel}"


def _local_path(uri: str) -> str:
    """The folder of a local artifact root (a plain path or a ``file:`` URI)."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def safe_artifact_path(run_id: str, path: str) -> str:
    """``path``, after checking it and ``run_id`` cannot lead out of the run's artifacts.

    Refused (``ArtifactError``, reason "unreadable"): a run id that is not a plain id,
    and paths that are absolute, contain ``..``, ``.``, empty parts, backslashes,
    drive letters or NUL.
    """
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise ArtifactError(f"refused: {run_id!r} is not a run id", "unreadable")
    parts = path.split("/") if isinstance(path, str) else []
    if (not parts or "\\" in path or "\x00" in path or ":" in parts[0]
            or any(p in ("", ".", "..") for p in parts)):
        raise ArtifactError(f"refused: artifact path {path!r} of run {run_id} would leave the run's "
                            "artifact root", "unreadable")
    return path


def _inside(root: Path, candidate: Path, run_id: str, path: str) -> Path:
    """``candidate`` if it resolves (symlinks followed) under ``root``, else ArtifactError."""
    if not candidate.resolve().is_relative_to(root.resolve()):
        raise ArtifactError(f"refused: artifact {path} of run {run_id} points outside the run's "
                            "artifact root", "unreadable")
    return candidate


def _check_size(run_id: str, path: str, size: int) -> None:
    limit = max_bytes()
    if size > limit:
        raise ArtifactError(
            f"artifact {path} of run {run_id} is {size / 2**20:.0f} MB, over the limit of "
            f"{limit / 2**20:.0f} MB (raise {MAX_MB_ENV} to read it)", "too large")


def _cached_download(client: MlflowClient, run_id: str, path: str, root: str | None = None) -> Path:
    """Download through ``client`` (or, given ``root``, from that artifact location directly)."""
    folder = posixpath.dirname(path)
    try:
        if root is None:
            listing = client.list_artifacts(run_id, folder or None)
        else:
            listing = mlflow.artifacts.list_artifacts(artifact_uri=f"{root}/{folder}" if folder else root)
            listing = [type(f)(posixpath.join(folder, f.path.rsplit("/", 1)[-1]), f.is_dir, f.file_size)
                       for f in listing]
    except Exception as exc:  # noqa: BLE001 - each backend (HTTP, S3, ...) raises its own types
        raise ArtifactError(f"cannot list artifacts of run {run_id}: {exc}", "unreadable") from None
    info = next((f for f in listing if f.path == path and not f.is_dir), None)
    if info is None:
        raise ArtifactError(f"run {run_id} has no artifact {path}", "not logged")
    size = int(info.file_size or 0)
    _check_size(run_id, path, size)
    target = _inside(cache_dir() / run_id, cache_dir() / run_id / path, run_id, path)
    if target.is_file() and (size == 0 or target.stat().st_size == size):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the target, then rename: a reader never sees a half-written file,
    # and two processes fetching the same artifact both end with a whole one.
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        try:
            fetched = Path(client.download_artifacts(run_id, path, str(tmp)) if root is None else
                           mlflow.artifacts.download_artifacts(artifact_uri=f"{root}/{path}", dst_path=str(tmp)))
        except Exception as exc:  # noqa: BLE001 - as above
            raise ArtifactError(f"cannot download {path} of run {run_id}: {exc}", "unreadable") from None
        os.replace(fetched, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
