"""A layer comparison polled through several gunicorn workers is computed once for all of them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from comparison_fixtures import log_models
from dash_http import HttpClient, call, comparison_context, outputs

from dash_app.serving import gunicorn_env
from testing.local_server import free_port

ROWS = "cmp-lay-status.children"


def _wait_until_serving(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            if requests.get(url, timeout=30).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.3)


def test_two_workers_compute_a_layer_comparison_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logged = log_models("layer-share", uri, n_models=4, n_instances=40)
    cache = tmp_path / "cache"
    port = free_port()
    env = {**os.environ, "MLFLOW_CC_CACHE_DIR": str(cache),
           **gunicorn_env(host="127.0.0.1", port=port, workers=2, auth="none", allow_remote=False,
                          tracking_uri=uri, experiment="layer-share")}
    env.pop("MLFLOW_CC_SECRET_KEY", None)
    log = tmp_path / "gunicorn.log"
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    with log.open("wb") as out:
        # The access log names the worker (pid) that answered each request, and its query string.
        proc = subprocess.Popen([gunicorn, "-c", "python:dash_app.gunicorn_conf", "--access-logformat",
                                 "ACCESS %(p)s %(r)s %(s)s", "dash_app.wsgi:server"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url + "/", proc, log)
        web = HttpClient(url)
        search = f"?experiment={logged.experiment_id}&sel={','.join(logged.run_ids)}"
        state = outputs(call(web, "ov-state.data", {("ov-url-first", "data"): search}))["ov-state"]["data"]
        cmp = comparison_context(web, state)
        assert len(cmp["models"]) == 4

        # Poll the Layers tab as browsers would, each request on a new connection, until both
        # workers have answered with the finished comparison.
        finished: dict[int, Any] = {}  # request number -> the rows it got
        served_by: dict[int, str] = {}  # request number -> worker pid
        values = {("cmp-ctx", "data"): cmp, ("cmp-lay-show", "value"): "weights",
                  ("cmp-lay-view", "value"): "tree", ("cmp-lay-sort", "value"): "", ("cmp-lay-pattern", "value"): ""}
        for i in range(400):
            answer = outputs(call(web, ROWS, values, query=f"?poll={i}"))
            status = answer["cmp-lay-status"]["children"]
            if isinstance(status, str) and status.endswith("rows"):
                finished[i] = answer["cmp-lay-grid"]["rowData"]
            for pid, n in re.findall(r"ACCESS <?(\d+)>? POST /_dash-update-component\?poll=(\d+) \S+ 200",
                                     log.read_text(errors="replace")):
                served_by[int(n)] = pid
            if len({served_by[n] for n in finished if n in served_by}) == 2:
                break
        else:
            raise AssertionError(f"both workers never answered with the comparison: {served_by}, {sorted(finished)}\n"
                                 + log.read_text(errors="replace")[-3000:])
        workers = {served_by[n] for n in finished if n in served_by}
        assert len(workers) == 2
        computed = (cache / "layer-comparisons" / "computed.log").read_text().splitlines()
        assert len(computed) == 1, computed  # one computation for both workers
        assert "kind=weights" in computed[0]
        # The worker that loaded it from disk shows exactly what the computing worker shows.
        rows = {json.dumps(r, sort_keys=True) for r in finished.values()}
        assert len(rows) == 1
        assert len(finished[next(iter(finished))]) > 0
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)
