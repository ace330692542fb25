"""Sign-in that follows MLflow's: each user signs in with their MLflow credentials.

Against an ``mlflow server --app-name basic-auth``, :func:`install_auth` puts a login
form in front of the whole app. The form's password goes to the server in the POST
body only, is checked against MLflow (:func:`mlflow_cc.read.user_client.check_credentials`)
and is kept server-side (:mod:`dash_app.sessions`); the browser gets an HttpOnly,
SameSite cookie holding a random session id. Each request then runs as its user
(:func:`current_session`), and the app reads the store with that user's own client,
so MLflow decides which experiments the user sees and where flags may be written.

Nothing here logs a password, puts it in a URL or sends it back to the browser.

Hardening:

* The form carries a CSRF token, an HMAC (under the app's secret) of a random nonce held in
  a pre-session cookie; a POST /login whose token does not match its cookie is refused (400).
* Failed sign-ins are limited per client address and username: after
  :data:`MAX_FAILED_SIGN_INS` within :data:`FAILED_WINDOW_S` seconds, POST /login answers
  429 with ``Retry-After`` without asking MLflow. The counts live in the sessions file, so
  the limit is shared by every worker of the machine (not by several machines).
* Sign-out is a POST with a CSRF token bound to the session (GET /logout shows a form).
* ``next`` is only ever a path of this app (:func:`safe_next`).
"""

from __future__ import annotations

import html
import math
import secrets
import time
import unicodedata
from typing import Any
from urllib.parse import quote

import flask
from dash import Dash

from dash_app.sessions import Session, SessionStore
from mlflow_cc.read.user_client import SignInError, check_credentials

COOKIE = "mlflow_cc_session"
#: Pre-session cookie: a random nonce the sign-in form's CSRF token is bound to.
CSRF_COOKIE = "mlflow_cc_csrf"
CSRF_FIELD = "csrf_token"
#: Failed sign-ins allowed per client address and username within the window (seconds).
MAX_FAILED_SIGN_INS = 5
FAILED_WINDOW_S = 60.0
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
#: Paths that work signed out: the login form, and the favicon a browser asks for.
OPEN_PATHS = frozenset({LOGIN_PATH, LOGOUT_PATH, "/favicon.ico"})

_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Compress and Compare</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;background:#f5f6f8;display:flex;justify-content:center;padding-top:12vh}}
form{{background:#fff;padding:28px 32px;border-radius:8px;box-shadow:0 1px 4px #0002;width:320px}}
h1{{font-size:18px;margin:0 0 4px}} p{{color:#555;font-size:13px;margin:0 0 16px}}
label{{display:block;font-size:13px;margin:10px 0 4px}} input{{width:100%;box-sizing:border-box;padding:7px}}
button{{margin-top:18px;width:100%;padding:8px;background:#1f5fa8;color:#fff;border:0;border-radius:4px}}
.error{{color:#a01919;background:#fdecec;padding:8px;border-radius:4px;font-size:13px}}
</style></head><body>
<form method="post" action="{action}" autocomplete="on">
<h1>Compress and Compare</h1>
<p>Sign in with your MLflow account on {server}.</p>
{error}
<label for="username">Username</label><input id="username" name="username" value="{username}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<input type="hidden" name="next" value="{next}">
<input type="hidden" name="csrf_token" value="{csrf}">
<button type="submit" id="login-submit">Sign in</button>
</form></body></html>"""


_LOGOUT_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign out · Compress and Compare</title></head>
<body style="font-family:system-ui,sans-serif;display:flex;justify-content:center;padding-top:12vh">
<form method="post" action="{action}"><p>Sign out of Compress and Compare?</p>
<input type="hidden" name="csrf_token" value="{csrf}">
<button type="submit" id="logout-submit">Sign out</button> <a href="/">Back to the app</a></form>
</body></html>"""


def current_session() -> Session | None:
    """The signed-in user of the request being served (None outside a signed-in request)."""
    return flask.g.get("cc_session") if flask.has_request_context() else None


def logout_token() -> str | None:
    """The CSRF token of the sign-out form for the request's session (None when signed out)."""
    return flask.g.get("cc_logout_token") if flask.has_request_context() else None


def safe_next(target: str | None) -> str:
    """``target`` if it is a path of this app, else "/": never redirect a user off the app.

    A path starts with one "/" (not "//", which a browser reads as another host) and has
    no backslash, whitespace or control character: browsers drop tabs and newlines and read
    a backslash as a slash, so "/" + TAB + "/evil.example" and "/" + backslash +
    "evil.example" both mean ``//evil.example``.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ch.isspace() or unicodedata.category(ch)[0] in "CZ" for ch in target):
        return "/"
    return target



def first_hook(app: Dash, hook: Any) -> None:
    """Make ``hook`` the first before-request hook of ``app``, which sets ``flask.g.cc_session``.

    Dash's own first-request hook draws the layout, which reads the store as the user: it
    waits for the first signed-in request (not the login form or an open path).
    """
    hooks = app.server.before_request_funcs.setdefault(None, [])
    dash_setup = getattr(app, "_setup_server", None)
    for i, existing in enumerate(hooks):
        if dash_setup is not None and existing == dash_setup:
            hooks[i] = lambda: dash_setup() if flask.g.get("cc_session") is not None else None
    hooks.insert(0, hook)


def _form(tracking_uri: str, *, csrf: str, error: str = "", username: str = "", next_path: str = "/") -> str:
    return _FORM.format(action=LOGIN_PATH, server=html.escape(tracking_uri),
                        error=f'<div class="error" role="alert">{html.escape(error)}</div>' if error else "",
                        username=html.escape(username), next=html.escape(safe_next(next_path)),
                        csrf=html.escape(csrf))


def install_auth(app: Dash, tracking_uri: str, sessions: SessionStore | None = None) -> SessionStore:
    """Require an MLflow sign-in for every page and callback of ``app``."""
    store = sessions or SessionStore()
    server: flask.Flask = app.server

    def _require_sign_in() -> Any:
        flask.g.cc_session = None
        flask.g.cc_logout_token = None
        session_id = flask.request.cookies.get(COOKIE)
        session = store.get(session_id)
        if session is not None:
            flask.g.cc_logout_token = store.csrf_token("logout", session_id or "")
        if flask.request.path in OPEN_PATHS:
            return None
        if session is None:
            if flask.request.path.startswith("/_dash-") or flask.request.method != "GET":
                return flask.jsonify({"error": "sign in first", "login": LOGIN_PATH}), 401
            full = flask.request.full_path.rstrip("?")
            return flask.redirect(f"{LOGIN_PATH}?next={quote(full, safe='/')}")
        flask.g.cc_session = session
        return None

    first_hook(app, _require_sign_in)

    def _login_page(status: int = 200, **kwargs: Any) -> flask.Response:
        """The form, with a fresh pre-session nonce (cookie) and the CSRF token bound to it."""
        nonce = secrets.token_urlsafe(24)
        response = flask.make_response(_form(tracking_uri, csrf=store.csrf_token("login", nonce), **kwargs), status)
        response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="Strict", secure=flask.request.is_secure,
                            path=LOGIN_PATH)
        return response

    @server.route(LOGIN_PATH, methods=["GET", "POST"])
    def _login() -> Any:
        if flask.request.method == "GET":
            return _login_page(next_path=flask.request.args.get("next", "/"))
        username = (flask.request.form.get("username") or "").strip()
        password = flask.request.form.get("password") or ""
        next_path = safe_next(flask.request.form.get("next"))
        if not store.check_csrf("login", flask.request.cookies.get(CSRF_COOKIE), flask.request.form.get(CSRF_FIELD)):
            return _login_page(400, error="This sign-in form has expired or did not come from this app; "
                                          "please sign in again.", username=username, next_path=next_path)
        limit_key = f"{flask.request.remote_addr or '?'}\0{username.lower()}"
        failures, oldest = store.failed_sign_ins(limit_key, FAILED_WINDOW_S)
        if failures >= MAX_FAILED_SIGN_INS:
            wait = max(1, math.ceil(oldest + FAILED_WINDOW_S - time.time()))
            response = _login_page(429, error=f"Too many failed sign-ins; try again in {wait} s.",
                                   username=username, next_path=next_path)
            response.headers["Retry-After"] = str(wait)
            return response
        try:
            if not username or not password:
                raise SignInError("Enter your MLflow username and password.")
            try:
                check_credentials(tracking_uri, username, password)
            except SignInError:
                store.record_failed_sign_in(limit_key)
                raise
        except SignInError as exc:
            return _login_page(401, error=str(exc), username=username, next_path=next_path)
        store.clear_failed_sign_ins(limit_key)
        response = flask.redirect(next_path)
        response.set_cookie(COOKIE, store.create(username, password), httponly=True, samesite="Lax",
                            secure=flask.request.is_secure, path="/", max_age=store.max_age_s)
        response.delete_cookie(CSRF_COOKIE, path=LOGIN_PATH)
        return response

    @server.route(LOGOUT_PATH, methods=["GET", "POST"])
    def _logout() -> Any:
        session_id = flask.request.cookies.get(COOKIE)
        signed_in = store.get(session_id) is not None
        if flask.request.method == "GET":  # never sign out on a GET (a link or an image could)
            if not signed_in:
                return flask.redirect(LOGIN_PATH)
            return _LOGOUT_FORM.format(action=LOGOUT_PATH, csrf=html.escape(logout_token() or ""))
        if signed_in and not store.check_csrf("logout", session_id, flask.request.form.get(CSRF_FIELD)):
            return "sign-out refused: the form did not come from this app", 400
        store.delete(session_id)
        response = flask.redirect(LOGIN_PATH, 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @server.after_request
    def _headers(response: flask.Response) -> flask.Response:
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if flask.request.path in (LOGIN_PATH, LOGOUT_PATH):
            response.headers["Cache-Control"] = "no-store"
        return response

    return store
