"""The lean read path for ``http(s)`` stores: MLflow's public REST ``runs/search``, parsed straight into nodes.

``MlflowClient.search_runs`` turns every page of JSON into protobuf messages and then
into MLflow entity objects (``Run``, ``RunInfo``, ``RunData``, one object per metric,
param and tag); over HTTP that conversion costs about as much as the server's own work.
:class:`RestRunSearch` asks the same public endpoint (``POST /api/2.0/mlflow/runs/search``)
for the same pages, parses the bytes with ``orjson`` and hands the reader plain
:class:`RunFields` (the fields the forest needs: ids, name, status, times, tags, params,
latest metrics). Dataset inputs and other fields of the answer are ignored.

Requests go through MLflow's own ``http_request`` (:mod:`mlflow.utils.rest_utils`), so
authentication, TLS and retries are exactly what MLflow's client does: credentials and
TLS settings come from the client's ``MlflowHostCreds`` (by default read from
``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``), or are given
as arguments (:func:`host_creds`), e.g. one signed-in user's. Errors are MLflow's own
exceptions (``MlflowException`` / ``RestException`` with the server's error code; no
answer after the retries is the same "Max retries exceeded" MLflow raises), so the
reader's handling of refused and unreachable stores is unchanged.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.rest_store import RestStore
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import MlflowHostCreds, http_request, verify_rest_response

T = TypeVar("T")

SEARCH_ENDPOINT = "/api/2.0/mlflow/runs/search"
#: Runs in the first page (MLflow's client's default page).
FIRST_PAGE = 1_000
#: Most runs per page. The server accepts up to 50,000; larger pages mean fewer requests
#: and, on a SQL store (which pages by OFFSET), less scanning of runs already sent.
REST_PAGE_SIZE = 10_000
#: A page is doubled after an answer faster than this (s), halved after one slower than
#: twice this: each request stays well within the app's short HTTP timeout (5 s).
PAGE_TARGET_S = 1.0


@dataclass(slots=True)
class RunFields:
    """One run as the forest needs it (what :func:`~mlflow_cc.read.nodes.node_from_fields` takes)."""

    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


def host_creds(tracking_uri: str, *, username: str | None = None, password: str | None = None,
               token: str | None = None) -> MlflowHostCreds:
    """Credentials for ``tracking_uri`` as MLflow's client builds them, optionally as a given user.

    TLS settings (insecure TLS, server and client certificates) always come from the
    environment, as MLflow reads them; ``username``/``password`` or ``token`` replace the
    environment's credentials.
    """
    base = get_default_host_creds(tracking_uri)
    if username is None and token is None:
        return base
    return MlflowHostCreds(host=tracking_uri, username=username, password=password, token=token,
                           ignore_tls_verification=base.ignore_tls_verification,
                           client_cert_path=base.client_cert_path, server_cert_path=base.server_cert_path)


def client_host_creds(client: MlflowClient) -> Callable[[], MlflowHostCreds] | None:
    """How ``client`` authenticates, when it talks to an ``http(s)`` REST store (else None).

    Works for MLflow's default client and for a per-user client whose store is a
    :class:`RestStore` with its own credentials: the lean path reads as the same user.
    """
    if not str(client.tracking_uri).startswith(("http://", "https://")):
        return None
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if isinstance(store, RestStore):
        return store.get_host_creds
    uri = client.tracking_uri
    return lambda: host_creds(uri)


class RestRunSearch:
    """Pages of ``runs/search`` over MLflow's REST API, as :class:`RunFields`.

    ``creds``: the credentials to send, or a callable returning them (re-read per
    request, as MLflow's RestStore does, so refreshed tokens are picked up).
    """

    def __init__(self, creds: MlflowHostCreds | Callable[[], MlflowHostCreds], *,
                 page_size: int = REST_PAGE_SIZE, first_page: int = FIRST_PAGE,
                 call: Callable[[Callable[[], Any]], Any] | None = None) -> None:
        """``call(fn)``: how a request is made (default ``fn()``); a per-user client's reader passes
        one that runs it as that user (:func:`~mlflow_cc.read.user_client.call_as`)."""
        self._creds = creds if callable(creds) else (lambda: creds)
        self._call = call or (lambda fn: fn())
        self.page_size = page_size
        self.first_page = min(first_page, page_size)

    def search(self, experiment_id: str, filter_string: str = "") -> Iterator[RunFields]:
        """Every active run of the experiment matching ``filter_string``, newest first.

        The first page is asked in this thread; each next one is requested (in another
        thread) while this one is parsed, so the server works while we parse; an error of
        either is raised here, in the caller's thread. Pages start at
        :data:`FIRST_PAGE` runs and grow up to ``page_size`` while the server answers fast.
        """
        body: dict[str, Any] = {"experiment_ids": [str(experiment_id)], "filter": filter_string,
                                "run_view_type": "ACTIVE_ONLY"}
        size = self.first_page
        page, elapsed = self._timed({**body, "max_results": size})  # nothing to overlap it with yet
        while True:
            token = page.get("next_page_token")
            if token:  # the page token holds the offset: the next page may be larger or smaller
                if elapsed < PAGE_TARGET_S:
                    size = min(size * 2, self.page_size)
                elif elapsed > 2 * PAGE_TARGET_S:
                    size = max(size // 2, min(FIRST_PAGE, self.page_size))
                pending = in_thread(functools.partial(self._timed, {**body, "max_results": size, "page_token": token}),
                                    "mlflow-cc-rest-page")
            for run in page.get("runs", ()):
                yield parse_run(run)
            if not token:
                return
            page, elapsed = pending.result()

    def _timed(self, body: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """One page, and how long the server took to answer (s)."""
        t = time.perf_counter()
        doc = self._call(lambda: self._fetch(body))
        return doc, time.perf_counter() - t

    def _fetch(self, body: dict[str, Any]) -> dict[str, Any]:
        resp = http_request(self._creds(), SEARCH_ENDPOINT, "POST", data=orjson.dumps(body),
                            extra_headers={"Content-Type": "application/json"})
        if resp.status_code != 200:
            verify_rest_response(resp, SEARCH_ENDPOINT)  # raises MLflow's own exception
        try:
            doc = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise MlflowException(f"API request to endpoint {SEARCH_ENDPOINT} was successful but the "
                                  f"response body was not in a valid JSON format: {resp.text[:200]!r}") from None
        if not isinstance(doc, dict):
            raise MlflowException(f"API request to endpoint {SEARCH_ENDPOINT} answered {type(doc).__name__}, "
                                  "not a JSON object")
        return doc


def in_thread(fn: Callable[[], T], name: str) -> Future[T]:
    """``fn()`` run in a new daemon thread; its result or exception comes through the future
    (to the thread that waits on it). For requests that overlap other work."""
    future: Future[T] = Future()

    def work() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            future.set_exception(exc)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


def parse_run(run: dict[str, Any]) -> RunFields:
    """One run of a ``runs/search`` answer (protobuf JSON) as :class:`RunFields`.

    As MLflow's entities: an absent field is its protobuf default, int64 times may come
    as strings, a metric value may be ``"NaN"``/``"Infinity"``, and the last of repeated
    keys wins.
    """
    info = run.get("info") or {}
    data = run.get("data") or {}
    end = info.get("end_time")
    return RunFields(
        run_id=info.get("run_id") or info.get("run_uuid") or "",
        run_name=info.get("run_name") or "",
        experiment_id=str(info.get("experiment_id") or ""),
        status=info.get("status") or "RUNNING",
        start_time=int(info.get("start_time") or 0),
        end_time=int(end) or None if end is not None else None,  # 0 = absent, as MLflow's RunInfo
        lifecycle_stage=info.get("lifecycle_stage") or "active",
        tags={t["key"]: t.get("value", "") for t in data.get("tags", ())},
        params={p["key"]: p.get("value", "") for p in data.get("params", ())},
        metrics={m["key"]: float(m.get("value", 0.0)) for m in data.get("metrics", ())},
    )
