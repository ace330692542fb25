"""``mlflow_cc.show()``: one call serves the app on 127.0.0.1 (outside Jupyter: mode "external")."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

from waiting import wait_until

from testing.local_server import free_port
from testing.synthetic import build_study_shape


def test_show_serves_the_app_on_loopback(sqlite_uri: str) -> None:
    build_study_shape("notebook-study")
    port = free_port()
    code = ("import mlflow_cc\n"
            f"mlflow_cc.show(experiment='notebook-study', tracking_uri={sqlite_uri!r}, port={port}, "
            "mode='external')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ), start_new_session=True)

    def served_layout() -> str:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=30) as resp:
                return resp.read().decode()
        except OSError:
            return ""  # not listening yet

    try:
        layout = wait_until(served_layout, timeout=120, interval=0.5, message=f"the app on port {port}")
        assert "Compress and Compare" in layout and "notebook-study" in layout
    finally:
        proc.kill()
        proc.wait()
