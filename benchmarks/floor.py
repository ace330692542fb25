"""The floors reader benchmarks compare against: bare ``search_runs`` paging, whole or filtered."""

from __future__ import annotations

from collections.abc import Sequence

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from mlflow_cc.read.reader import PAGE_SIZE


def floor_fetch(client: MlflowClient, exp_id: str, filter_string: str = "") -> int:
    """What any reader must at least do: page through every run (same page size as the reader).

    With ``filter_string``, only the runs it matches, paged the same way.
    """
    count, token = 0, None
    while True:
        page = client.search_runs([exp_id], filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=PAGE_SIZE, page_token=token)
        count += len(page)
        token = page.token
        if not token:
            return count


def newest_start_time(client: MlflowClient, exp_id: str) -> int:
    """The newest run's start time (ms): where an incremental refresh starts reading."""
    runs = client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1,
                              order_by=["attributes.start_time DESC"])
    return (runs[0].info.start_time or 0) if runs else -1


def refresh_floor_fetch(client: MlflowClient, exp_id: str, since: int, running: Sequence[str] = ()) -> int:
    """The same filtered ``search_runs`` calls an incremental refresh makes, and nothing else.

    Runs started at or after ``since`` (ms), then the still-running runs by id, 100 per
    call, as ``ExperimentReader.refresh`` asks for them.
    """
    count = floor_fetch(client, exp_id, f"attributes.start_time >= {since}")
    for i in range(0, len(running), 100):
        ids = ", ".join(f"'{rid}'" for rid in running[i:i + 100])
        count += floor_fetch(client, exp_id, f"attributes.run_id IN ({ids})")
    return count
