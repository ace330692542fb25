"""The floor every reader benchmark compares against: bare ``search_runs`` paging."""

from __future__ import annotations

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from mlflow_cc.read.reader import PAGE_SIZE


def floor_fetch(client: MlflowClient, exp_id: str) -> int:
    """What any reader must at least do: page through every run (same page size as the reader)."""
    count, token = 0, None
    while True:
        page = client.search_runs([exp_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=PAGE_SIZE,
                                  page_token=token)
        count += len(page)
        token = page.token
        if not token:
            return count
