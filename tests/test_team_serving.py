"""Serving rules: local-only without sign-in, and sessions that keep credentials server-side."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dash_app.serving import UnsafeBindError, check_bind, gunicorn_env, is_loopback
from dash_app.sessions import SessionStore
from mlflow_cc.cli import main as cli
from testing.local_server import free_port


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("10.1.2.3", False), ("myhost.lan", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_network_bind_needs_sign_in_or_explicit_force() -> None:
    with pytest.raises(UnsafeBindError, match="refusing to serve on 0.0.0.0.*--auth mlflow.*--allow-remote"):
        check_bind("0.0.0.0", auth="none", allow_remote=False)
    check_bind("0.0.0.0", auth="mlflow", allow_remote=False)
    check_bind("0.0.0.0", auth="none", allow_remote=True)
    check_bind("127.0.0.1", auth="none", allow_remote=False)


def test_cli_says_why_it_will_not_bind_the_network(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["ui", "--host", "0.0.0.0", "--tracking-uri", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code != 0 and "refusing to serve on 0.0.0.0" in result.output


def test_gunicorn_refuses_a_network_bind_without_sign_in() -> None:
    env = {**os.environ, **gunicorn_env(host="0.0.0.0", port=free_port(), workers=2, auth="none",
                                        allow_remote=False, tracking_uri="sqlite:////nonexistent/x.db")}
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.run([gunicorn, "-c", "python:dash_app.gunicorn_conf", "dash_app.wsgi:server"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "refusing to serve on 0.0.0.0" in proc.stderr


def test_sessions_keep_the_password_encrypted_server_side(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions.sqlite", secret=b"k" * 32)
    sid = store.create("alice", "alice-password-1")
    assert store.get(sid).username == "alice" and store.get(sid).password == "alice-password-1"
    assert "alice-password-1" not in repr(store.get(sid))
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"alice-password-1" not in raw and sid.encode() not in raw  # only the id's hash is stored
    assert (tmp_path / "sessions.sqlite").stat().st_mode & 0o777 == 0o600
    other_worker = SessionStore(tmp_path / "sessions.sqlite", secret=b"k" * 32)  # another process, same file
    assert other_worker.get(sid).username == "alice"
    assert SessionStore(tmp_path / "sessions.sqlite", secret=b"other" * 8).get(sid) is None  # key changed
    assert store.get("forged") is None and store.get(None) is None
    store.delete(sid)
    assert other_worker.get(sid) is None


def test_expired_sessions_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SessionStore(tmp_path / "sessions.sqlite", secret=b"k" * 32)
    sid = store.create("bob", "bob-password-123")
    later = time.time() + 9 * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert store.get(sid) is None
