"""The app's status strip: "store unreachable, retrying" and who is signed in.

Every few seconds the browser asks the server whether the tracking store answers
(:class:`~mlflow_cc.read.store_health.StoreHealth`); while it does not, a banner says so
and that the models shown are those read before. Nothing else on the page changes,
so the user's selection, filters and tab survive an outage; the banner goes away by
itself when the store is back.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, dcc, html

from dash_app.auth import CSRF_FIELD, LOGOUT_PATH, current_session, logout_token
from mlflow_cc.read.store_health import StoreHealth

CHECK_MS = 2500
HIDDEN = {"display": "none"}
USER_STYLE = {"color": "#d8d8d8", "fontSize": "13px", "marginLeft": "16px"}
SIGN_OUT_STYLE = {"color": "#9cc9ff", "background": "none", "border": "0", "padding": "0", "cursor": "pointer",
                  "textDecoration": "underline", "font": "inherit"}
SHOWN = {"display": "block", "background": "#fff4d6", "color": "#6b4b00", "border": "1px solid #e0b44c",
         "padding": "6px 12px", "margin": "4px 12px", "borderRadius": "4px", "fontSize": "14px"}


def layout(source: Any) -> html.Div:
    """The banner (hidden while the store answers) and, when signed in, the user and a sign-out button.

    Signing out is a POST carrying the session's CSRF token (see :mod:`dash_app.auth`).
    """
    session = current_session()
    # Inside `mlflow server` the browser's MLflow sign-in applies (no session of ours: no sign-out).
    sign_out = [] if logout_token() is None else [" · ", html.Form(
        action=LOGOUT_PATH, method="post", style={"display": "inline"}, children=[
            dcc.Input(type="hidden", name=CSRF_FIELD, value=logout_token() or ""),
            html.Button("Sign out", id="cc-sign-out", type="submit", style=SIGN_OUT_STYLE)])]
    user = [] if session is None else [html.Span(className="cc-user", style=USER_STYLE, children=[
        "Signed in as ", html.B(session.username, id="cc-user-name"), *sign_out])]
    text, style = banner(source.health, check=False)
    return html.Div(className="cc-status", children=[
        *user,
        # the last known state (reading the page's models just now updated it); the tick checks again
        html.Div(id="cc-store-status", role="status", children=text, style=style, **{"aria-live": "polite"}),
        dcc.Interval(id="cc-store-status-tick", interval=CHECK_MS)])


def banner(health: StoreHealth, *, check: bool = True) -> tuple[str, dict[str, str]]:
    """Text and style of the banner for the store's current state (``check``: ask the store first)."""
    if (not health.check()) if check else health.is_down:
        text = (f"Tracking store unreachable ({health.last_error}); retrying every {CHECK_MS / 1000:.1f} s. "
                "The models shown are those read before it went away.")
        return text, SHOWN
    return "", HIDDEN


def register(app: Dash, source: Any, **_: Any) -> None:
    health: StoreHealth = source.health

    @app.callback(Output("cc-store-status", "children"), Output("cc-store-status", "style"),
                  Input("cc-store-status-tick", "n_intervals"), prevent_initial_call=True)
    def _status(_n: int | None) -> tuple[str, dict[str, str]]:
        return banner(health)
