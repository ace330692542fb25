"""Sign-in that follows MLflow's: each user signs in with their MLflow credentials.

Against an ``mlflow server --app-name basic-auth``, :func:`install_auth` puts a login
form in front of the whole app. The form's password goes to the server in the POST
body only, is checked against MLflow (:func:`mlflow_cc.read.user_client.check_credentials`)
and is kept server-side (:mod:`dash_app.sessions`); the browser gets an HttpOnly,
SameSite cookie holding a random session id. Each request then runs as its user
(:func:`current_session`), and the app reads the store with that user's own client,
so MLflow decides which experiments the user sees and where flags may be written.

Nothing here logs a password, puts it in a URL or sends it back to the browser.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

import flask
from dash import Dash

from dash_app.sessions import Session, SessionStore
from mlflow_cc.read.user_client import SignInError, check_credentials

COOKIE = "mlflow_cc_session"
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
<button type="submit" id="login-submit">Sign in</button>
</form></body></html>"""


def current_session() -> Session | None:
    """The signed-in user of the request being served (None outside a signed-in request)."""
    return flask.g.get("cc_session") if flask.has_request_context() else None


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never redirect a user off the app after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _form(tracking_uri: str, *, error: str = "", username: str = "", next_path: str = "/") -> str:
    return _FORM.format(action=LOGIN_PATH, server=html.escape(tracking_uri),
                        error=f'<div class="error" role="alert">{html.escape(error)}</div>' if error else "",
                        username=html.escape(username), next=html.escape(_safe_next(next_path)))


def install_auth(app: Dash, tracking_uri: str, sessions: SessionStore | None = None) -> SessionStore:
    """Require an MLflow sign-in for every page and callback of ``app``."""
    store = sessions or SessionStore()
    server: flask.Flask = app.server

    def _require_sign_in() -> Any:
        flask.g.cc_session = None
        if flask.request.path in OPEN_PATHS:
            return None
        session = store.get(flask.request.cookies.get(COOKIE))
        if session is None:
            if flask.request.path.startswith("/_dash-") or flask.request.method != "GET":
                return flask.jsonify({"error": "sign in first", "login": LOGIN_PATH}), 401
            full = flask.request.full_path.rstrip("?")
            return flask.redirect(f"{LOGIN_PATH}?next={quote(full, safe='/')}")
        flask.g.cc_session = session
        return None

    # First of all before-request hooks. Dash's own first-request hook draws the layout, which
    # reads the store as the user: it waits for the first signed-in request (not the login form).
    hooks = server.before_request_funcs.setdefault(None, [])
    dash_setup = getattr(app, "_setup_server", None)
    for i, hook in enumerate(hooks):
        if dash_setup is not None and hook == dash_setup:
            hooks[i] = lambda: dash_setup() if flask.g.get("cc_session") is not None else None
    hooks.insert(0, _require_sign_in)

    @server.route(LOGIN_PATH, methods=["GET", "POST"])
    def _login() -> Any:
        if flask.request.method == "GET":
            return _form(tracking_uri, next_path=flask.request.args.get("next", "/"))
        username = (flask.request.form.get("username") or "").strip()
        password = flask.request.form.get("password") or ""
        next_path = _safe_next(flask.request.form.get("next"))
        try:
            if not username or not password:
                raise SignInError("Enter your MLflow username and password.")
            check_credentials(tracking_uri, username, password)
        except SignInError as exc:
            return _form(tracking_uri, error=str(exc), username=username, next_path=next_path), 401
        response = flask.redirect(next_path)
        response.set_cookie(COOKIE, store.create(username, password), httponly=True, samesite="Lax",
                            secure=flask.request.is_secure, path="/")
        return response

    @server.route(LOGOUT_PATH, methods=["GET", "POST"])
    def _logout() -> Any:
        store.delete(flask.request.cookies.get(COOKIE))
        response = flask.redirect(LOGIN_PATH)
        response.delete_cookie(COOKIE, path="/")
        return response

    @server.after_request
    def _headers(response: flask.Response) -> flask.Response:
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if flask.request.path == LOGIN_PATH:
            response.headers["Cache-Control"] = "no-store"
        return response

    return store
