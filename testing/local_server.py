"""Start a real ``mlflow server`` process on 127.0.0.1 (tests, benchmarks, ``make team``)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MlflowServer:
    """A running ``mlflow server``; ``url`` is its tracking URI."""

    process: subprocess.Popen[bytes]
    url: str
    backend_uri: str
    artifacts_dir: Path
    log_path: Path
    args: list[str]

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` seconds."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def restart(self, timeout: float = 300.0) -> None:
        """Start the same server again on the same port (after :meth:`stop`)."""
        self.stop()
        self.process = _spawn(self.args, self.log_path)
        wait_healthy(self.url, self.process, self.log_path, timeout)


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None, log_path: Path | None,
                 timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server at {url} not healthy after {timeout:.0f}s")


def start_mlflow_server(backend_uri: str, workdir: Path, *, port: int | None = None,
                        extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                        timeout: float = 300.0, static_prefix: str = "") -> MlflowServer:
    """Start ``mlflow server`` with served artifacts under ``workdir``; waits for /health.

    ``static_prefix``: ``--static-prefix`` (the returned ``url`` includes it).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    artifacts = workdir / "artifacts"
    artifacts.mkdir(exist_ok=True)
    log_path = workdir / f"mlflow-server-{port}.log"
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    args = [mlflow_bin, "server", "--backend-store-uri", backend_uri, "--artifacts-destination",
            str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            *(["--static-prefix", static_prefix] if static_prefix else []), *(extra_args or [])]
    if env:
        os.environ.update(env)
    proc = _spawn(args, log_path)
    url = f"http://127.0.0.1:{port}{static_prefix}"
    try:
        wait_healthy(url, proc, log_path, timeout)
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return MlflowServer(proc, url, backend_uri, artifacts, log_path, args)


def create_postgres_database(prefix: str = "mlflowcc", host: str = "127.0.0.1", port: int = 5432,
                             user: str = "postgres") -> tuple[str, str]:
    """Create a fresh database; returns (name, SQLAlchemy URI with the psycopg2 driver)."""
    import psycopg2

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(host=host, port=port, user=user, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return name, f"postgresql+psycopg2://{user}@{host}:{port}/{name}"


def drop_postgres_database(name: str, host: str = "127.0.0.1", port: int = 5432,
                           user: str = "postgres") -> None:
    import psycopg2

    conn = psycopg2.connect(host=host, port=port, user=user, dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()
