"""Server-side sign-in sessions, shared by every app worker on the machine (sqlite, no Redis).

The browser holds only a random session id (an HttpOnly cookie). Everything else
stays on the server, in one sqlite file in the cache folder (mode 0600):
the session id's SHA-256 (not the id itself), the username, the MLflow password
encrypted with Fernet (AES-128-CBC + HMAC) under the app's secret key, and an expiry.
gunicorn workers are separate processes, so a process-local dict would not do.

Secret key: ``MLFLOW_CC_SECRET_KEY`` (set it in production: a long random string, at least
32 characters; example or weak values are refused at startup, :func:`check_secret`), else a
random key generated once into ``<cache>/app-secret.key`` (0600). It also signs the sign-in
form's CSRF tokens (:meth:`SessionStore.csrf_token`).

Lifetimes: a session ends after :data:`IDLE_TIMEOUT_S` without a request, and in any case
``MLFLOW_CC_SESSION_MAX_AGE`` seconds (default 12 h) after sign-in, however busy.
Failed sign-ins are counted here too (:meth:`SessionStore.failed_sign_ins`), so the rate
limit holds across all workers of the machine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from mlflow_cc.artifacts.files import cache_dir

SECRET_ENV = "MLFLOW_CC_SECRET_KEY"
MAX_AGE_ENV = "MLFLOW_CC_SESSION_MAX_AGE"
#: Sign-ins last this long (seconds) without use; each request extends them.
IDLE_TIMEOUT_S = 8 * 3600
#: However busy, a sign-in lasts at most this long (seconds; ``MLFLOW_CC_SESSION_MAX_AGE``).
DEFAULT_MAX_AGE_S = 12 * 3600
MIN_SECRET_CHARS = 32
#: Values copied from examples and tutorials: refused whatever their length.
EXAMPLE_SECRETS = ("change-me", "changeme", "change_me", "change-this", "changethis", "replace-me",
                   "replaceme", "secret", "secret-key", "secretkey", "your-secret-key", "password",
                   "mlflow-cc", "example", "test", "dev")


class WeakSecretError(ValueError):
    """``MLFLOW_CC_SECRET_KEY`` is an example value or too weak to protect sign-in sessions."""


def check_secret(value: str, name: str = SECRET_ENV) -> None:
    """Refuse an example or weak secret with a message that says how to make a good one."""
    lowered = value.strip().lower()
    words = lowered.replace("_", "-").replace(" ", "-")
    problem = None
    if lowered in EXAMPLE_SECRETS or any(w in words for w in ("change-me", "changeme", "replace-me")):
        problem = "is an example value"
    elif len(value) < MIN_SECRET_CHARS:
        problem = f"is {len(value)} characters long (at least {MIN_SECRET_CHARS} needed)"
    elif len(set(value)) < 8:
        problem = "repeats too few distinct characters"
    if problem:
        raise WeakSecretError(
            f"{name} {problem}: it protects every signed-in user's MLflow password. Set it to a long "
            f"random string, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`, or "
            f"unset it to let the app generate one into its cache folder (one machine).")


def session_max_age() -> int:
    """The absolute session lifetime in seconds (``MLFLOW_CC_SESSION_MAX_AGE``, default 12 h)."""
    raw = (os.environ.get(MAX_AGE_ENV) or "").strip()
    if not raw:
        return DEFAULT_MAX_AGE_S
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{MAX_AGE_ENV} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{MAX_AGE_ENV} must be positive, not {value}")
    return value


def app_secret() -> bytes:
    """The app's secret key (env, else a generated file shared by the workers); refuses weak ones."""
    env = os.environ.get(SECRET_ENV)
    if env:
        check_secret(env)
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
    """Sessions in ``<cache>/sessions.sqlite``.

    ``max_age_s``: the absolute lifetime of a session (default ``MLFLOW_CC_SESSION_MAX_AGE``,
    else 12 h); ``idle_s``: how long it lasts without a request.
    """

    def __init__(self, path: Path | None = None, secret: bytes | None = None, *,
                 max_age_s: int | None = None, idle_s: int = IDLE_TIMEOUT_S) -> None:
        self.path = path or cache_dir() / "sessions.sqlite"
        secret = secret or app_secret()
        key = hashlib.sha256(b"mlflow-cc sessions\0" + secret).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self._csrf_key = hashlib.sha256(b"mlflow-cc csrf\0" + secret).digest()
        self.max_age_s = max_age_s if max_age_s is not None else session_max_age()
        self.idle_s = idle_s
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS sessions (id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, "
                       "secret BLOB NOT NULL, expires REAL NOT NULL)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
            if "created" not in columns:  # a file of an older version: its sessions count as too old
                db.execute("ALTER TABLE sessions ADD COLUMN created REAL NOT NULL DEFAULT 0")
            db.execute("CREATE TABLE IF NOT EXISTS failed_sign_ins (key TEXT NOT NULL, at REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS failed_sign_ins_key ON failed_sign_ins (key, at)")
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
        now = time.time()
        with self._connect() as db:
            db.execute("DELETE FROM sessions WHERE expires < ? OR created < ?", (now, now - self.max_age_s))
            db.execute("INSERT INTO sessions (id_hash, username, secret, expires, created) VALUES (?, ?, ?, ?, ?)",
                       (self._hash(session_id), username, self._fernet.encrypt(password.encode()),
                        now + min(self.idle_s, self.max_age_s), now))
        return session_id

    def get(self, session_id: str | None) -> Session | None:
        """The session of a cookie value, or None (unknown, idle too long, too old or undecryptable)."""
        if not session_id:
            return None
        now = time.time()
        with self._connect() as db:
            row = db.execute("SELECT username, secret, expires, created FROM sessions WHERE id_hash = ?",
                             (self._hash(session_id),)).fetchone()
            if row is None or row[2] < now or row[3] + self.max_age_s < now:
                return None
            try:
                password = self._fernet.decrypt(row[1]).decode()
            except InvalidToken:  # the secret key changed: sign in again
                return None
            # Extend the idle deadline (at most once a minute), never past the absolute one.
            expires = min(now + self.idle_s, row[3] + self.max_age_s)
            if expires - row[2] > 60:
                db.execute("UPDATE sessions SET expires = ? WHERE id_hash = ?", (expires, self._hash(session_id)))
        return Session(row[0], password)

    def delete(self, session_id: str | None) -> None:
        if session_id:
            with self._connect() as db:
                db.execute("DELETE FROM sessions WHERE id_hash = ?", (self._hash(session_id),))

    # -- CSRF tokens ---------------------------------------------------------------------
    def csrf_token(self, purpose: str, binding: str) -> str:
        """An HMAC of ``binding`` (a pre-session nonce, or a session id) under the app's secret."""
        return hmac.new(self._csrf_key, f"{purpose}\0{binding}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, purpose: str, binding: str | None, token: str | None) -> bool:
        """True when ``token`` was made by :meth:`csrf_token` for this purpose and binding."""
        if not binding or not token:
            return False
        return hmac.compare_digest(self.csrf_token(purpose, binding), token)

    # -- failed sign-ins (rate limit) ----------------------------------------------------------
    def failed_sign_ins(self, key: str, window_s: float) -> tuple[int, float]:
        """Failed sign-ins of ``key`` in the last ``window_s`` seconds, and when the oldest of them was."""
        now = time.time()
        with self._connect() as db:
            db.execute("DELETE FROM failed_sign_ins WHERE at < ?", (now - window_s,))
            count, oldest = db.execute("SELECT COUNT(*), MIN(at) FROM failed_sign_ins WHERE key = ?",
                                       (self._hash(key),)).fetchone()
        return int(count), float(oldest or now)

    def record_failed_sign_in(self, key: str) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO failed_sign_ins VALUES (?, ?)", (self._hash(key), time.time()))

    def clear_failed_sign_ins(self, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM failed_sign_ins WHERE key = ?", (self._hash(key),))
