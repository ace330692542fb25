"""Flags for review: a short note on a model or one of its instances, stored on the model's run.

A flag is one MLflow run tag, ``mlflow_cc.flag.<id>`` (:data:`~mlflow_cc.contract.TAG_FLAG_PREFIX`),
whose value is JSON ``{"target", "note", "user", "time"}``:

* ``target``: ``"model"`` for the model itself, or ``"instance:<instance id>"``;
* ``note``: the reviewer's text (at most :data:`MAX_NOTE` characters; plain text, never
  rendered as HTML);
* ``user``: who flagged it (``MLFLOW_TRACKING_USERNAME``, else the OS user);
* ``time``: UTC time, ISO 8601.

One tag per flag (not one JSON list) so that teammates flagging at the same time never
overwrite each other; the MLflow UI shows the tags on the run page. Flags are read
straight from the runs (:func:`read_flags`), not from the cached lineage, so a flag
written in one session is seen by another on its next read.
"""

from __future__ import annotations

import getpass
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from cachetools import TTLCache
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlflow_cc import contract
from mlflow_cc.read.lineage import Forest

#: Longest note kept; MLflow tag values are limited too (8,000 characters).
MAX_NOTE = 500
MODEL_TARGET = "model"
INSTANCE_PREFIX = "instance:"


@dataclass(frozen=True)
class Flag:
    """One review flag on a model run."""

    id: str
    run_id: str
    target: str
    note: str
    user: str
    time: str

    @property
    def instance_id(self) -> str | None:
        """The flagged instance, or None for a flag on the model."""
        return self.target[len(INSTANCE_PREFIX):] if self.target.startswith(INSTANCE_PREFIX) else None

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def instance_target(instance_id: str) -> str:
    """The ``target`` of a flag on one instance."""
    return f"{INSTANCE_PREFIX}{instance_id}"


def current_user() -> str:
    """Who is flagging: the MLflow username if set, else the operating-system user."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user database entry (containers)
        return "unknown"


def target_problem(forest: Forest, run_id: object, target: object) -> str | None:
    """Why a flag on ``run_id`` may not be written from a view of ``forest`` (None when it may).

    The app gets the run id from the browser: it must be a model of the experiment on
    screen, as the server read it for this user (not an external parent from another
    experiment), and the target must be the model or one of its instances.
    """
    if not isinstance(run_id, str) or not isinstance(target, str):
        return "not a model of this experiment"
    node = forest.nodes.get(run_id)
    if node is None or node.external:
        return "not a model of this experiment"
    if target != MODEL_TARGET and not (target.startswith(INSTANCE_PREFIX) and len(target) > len(INSTANCE_PREFIX)):
        return "not a model or one of its instances"
    return None


def add_flag(client: MlflowClient, run_id: str, note: str, target: str = MODEL_TARGET,
             user: str | None = None) -> Flag:
    """Write a flag to run ``run_id`` and return it. ``ValueError`` for an empty note or bad target."""
    note = " ".join(str(note).split())[:MAX_NOTE]
    if not note:
        raise ValueError("a flag needs a note")
    if target != MODEL_TARGET and not (target.startswith(INSTANCE_PREFIX) and len(target) > len(INSTANCE_PREFIX)):
        raise ValueError(f"flag target must be 'model' or 'instance:<id>', not {target!r}")
    flag = Flag(id=uuid.uuid4().hex[:12], run_id=run_id, target=target, note=note,
                user=(user or current_user())[:100],
                time=datetime.now(UTC).isoformat(timespec="seconds"))
    value = json.dumps({"target": flag.target, "note": flag.note, "user": flag.user, "time": flag.time})
    client.set_tag(run_id, contract.TAG_FLAG_PREFIX + flag.id, value)
    return flag


def remove_flag(client: MlflowClient, run_id: str, flag_id: str) -> None:
    """Delete one flag (its tag) from a run."""
    client.delete_tag(run_id, contract.TAG_FLAG_PREFIX + flag_id)


def parse_flags(run_id: str, tags: dict[str, str]) -> list[Flag]:
    """The flags among a run's tags, oldest first; malformed values are skipped."""
    out = []
    for key, value in tags.items():
        if not key.startswith(contract.TAG_FLAG_PREFIX):
            continue
        try:
            data = json.loads(value)
            out.append(Flag(id=key[len(contract.TAG_FLAG_PREFIX):], run_id=run_id, target=str(data["target"]),
                            note=str(data.get("note", "")), user=str(data.get("user", "")),
                            time=str(data.get("time", ""))))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda f: (f.time, f.id))


def read_flags(client: MlflowClient, run_ids: Iterable[str]) -> list[Flag]:
    """The current flags of the given runs, read from the store (one request per 100 runs)."""
    ids = list(dict.fromkeys(run_ids))
    flags: list[Flag] = []
    for start in range(0, len(ids), 100):
        chunk = ids[start:start + 100]
        quoted = ", ".join(f"'{r}'" for r in chunk)
        try:
            experiments = {client.get_run(chunk[0]).info.experiment_id}
            runs = client.search_runs(list(experiments), filter_string=f"attributes.run_id IN ({quoted})",
                                      max_results=len(chunk))
            found = {r.info.run_id for r in runs}
            # Runs of other experiments (external parents) are fetched one by one.
            runs += [client.get_run(r) for r in chunk if r not in found]
        except MlflowException:
            runs = []
            for r in chunk:
                try:
                    runs.append(client.get_run(r))
                except MlflowException:
                    continue
        for run in runs:
            flags.extend(parse_flags(run.info.run_id, run.data.tags))
    return sorted(flags, key=lambda f: (f.time, f.id))


class FlagBoard:
    """Flags of a store's runs as the app sees them: read with a short time-to-live, written through.

    The time-to-live (seconds) bounds how stale another session's flags can look; a flag
    written through this board is visible to its own session at once.
    """

    def __init__(self, client: MlflowClient, ttl_s: float = 2.0) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: TTLCache[tuple[str, ...], list[Flag]] = TTLCache(maxsize=32, ttl=ttl_s, timer=time.monotonic)

    def flags(self, run_ids: Iterable[str]) -> list[Flag]:
        """Current flags of the runs (at most ``ttl_s`` old)."""
        key = tuple(sorted(set(run_ids)))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        flags = read_flags(self.client, key) if key else []
        with self._lock:
            self._cache[key] = flags
        return flags

    def add(self, run_id: str, note: str, target: str = MODEL_TARGET, user: str | None = None) -> Flag:
        """Write a flag and forget cached reads (so this session sees it at once)."""
        flag = add_flag(self.client, run_id, note, target, user=user)
        with self._lock:
            self._cache.clear()
        return flag

    def remove(self, run_id: str, flag_id: str) -> None:
        remove_flag(self.client, run_id, flag_id)
        with self._lock:
            self._cache.clear()
