"""Server-side sign-in sessions, shared by every app worker on the machine (sqlite, no Redis).

The browser holds only a random session id (an HttpOnly cookie). Everything else
stays on the server, in one sqlite file in the cache folder (mode 0600):
the session id's SHA-256 (not the id itself), the username, the MLflow password
encrypted with Fernet (AES-128-CBC + HMAC) under the app's secret key, and an expiry.
gunicorn workers are separate processes, so a process-local dict would not do.

Secret key: ``MLFLOW_CC_SECRET_KEY`` (set it in production: any long random string),
else a random key generated once into ``<cache>/app-secret.key`` (0600).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from mlflow_cc.artifacts.files import cache_dir

SECRET_ENV = "MLFLOW_CC_SECRET_KEY"
#: Sign-ins last this long (seconds) without use; each request extends them.
IDLE_TIMEOUT_S = 8 * 3600


def app_secret() -> bytes:
    """The app's secret key (env, else a generated file shared by the workers)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode()
    path = cache_dir() / "app-secret.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_urlsafe(48).encode())
    try:
        os.link(tmp, path)  # first worker wins; the others read its key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


@dataclass(frozen=True)
class Session:
    """A signed-in user. ``password`` lives only in server memory while a request runs."""

    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"Session(username={self.username!r})"


class SessionStore:
    """Sessions in ``<cache>/sessions.sqlite``."""

    def __init__(self, path: Path | None = None, secret: bytes | None = None) -> None:
        self.path = path or cache_dir() / "sessions.sqlite"
        key = hashlib.sha256(b"mlflow-cc sessions\0" + (secret or app_secret())).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS sessions (id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, "
                       "secret BLOB NOT NULL, expires REAL NOT NULL)")
        os.chmod(self.path, 0o600)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    @staticmethod
    def _hash(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def create(self, username: str, password: str) -> str:
        """Store a sign-in; returns the new session id (for the cookie)."""
        session_id = secrets.token_urlsafe(32)
        with self._connect() as db:
            db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                       (self._hash(session_id), username, self._fernet.encrypt(password.encode()),
                        time.time() + IDLE_TIMEOUT_S))
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        """The session of a cookie value, or None (unknown, expired or undecryptable)."""
        if not session_id:
            return None
        with self._connect() as db:
            row = db.execute("SELECT username, secret, expires FROM sessions WHERE id_hash = ?",
                             (self._hash(session_id),)).fetchone()
            if row is None or row[2] < time.time():
                return None
            try:
                password = self._fernet.decrypt(row[1]).decode()
            except InvalidToken:  # the secret key changed: sign in again
                return None
            if row[2] - time.time() < IDLE_TIMEOUT_S - 60:  # extend at most once a minute
                db.execute("UPDATE sessions SET expires = ? WHERE id_hash = ?",
                           (time.time() + IDLE_TIMEOUT_S, self._hash(session_id)))
        return Session(row[0], password)

    def delete(self, session_id: str | None) -> None:
        if session_id:
            with self._connect() as db:
                db.execute("DELETE FROM sessions WHERE id_hash = ?", (self._hash(session_id),))
