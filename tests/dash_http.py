"""Call a Dash app's callbacks over HTTP, as a browser (or an attacker's script) would.

The request is built from the app's own ``/_dash-dependencies``, so a test names only the
output it wants and the values it sends; everything else is sent as ``None``.
"""

from __future__ import annotations

import json
from typing import Any


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return str(item["id"]), str(item["property"])


def _outputs(spec: str) -> list[str]:
    """The "id.prop" of a callback's output spec ("..a.x...b.y.." for several)."""
    return spec[2:-2].split("...") if spec.startswith("..") else [spec]


def call(web: Any, output: str, values: dict[tuple[str, str], Any], changed: list[str] | None = None,
         headers: dict[str, str] | None = None, query: str = "") -> Any:
    """POST the callback whose output spec contains ``output`` ("id.prop"); returns the response.

    ``web`` is a Flask test client (or an :class:`HttpClient`); ``values`` maps (id, property) of inputs and states to what
    the browser would send; ``changed`` the "id.prop" that triggered the call (default: the first input).
    """
    deps = web.get("/_dash-dependencies", headers=headers or {}).get_json()
    matches = [d for d in deps if output in _outputs(d["output"]) and not d.get("clientside_function")]
    assert len(matches) == 1, f"{len(matches)} server callbacks write {output}"
    dep = matches[0]
    multi = dep["output"].startswith("..")
    out_specs = _outputs(dep["output"])
    outputs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in out_specs]
    inputs = [{**i, "value": values.get(_key(i))} for i in dep["inputs"]]
    state = [{**s, "value": values.get(_key(s))} for s in dep["state"]]
    first = f"{dep['inputs'][0]['id']}.{dep['inputs'][0]['property']}"
    body = {"output": dep["output"], "outputs": outputs if multi else outputs[0], "inputs": inputs,
            "state": state, "changedPropIds": changed or [first]}
    return web.post(f"/_dash-update-component{query}", data=json.dumps(body), content_type="application/json",
                    headers=headers or {})


def outputs(response: Any) -> dict[str, dict[str, Any]]:
    """{component id: {property: value}} of a callback's JSON answer."""
    assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:500])
    return response.get_json()["response"]


class HttpClient:
    """The part of Flask's test client that :func:`call` uses, over real HTTP to a running server.

    Every request opens a new connection, so a server with several worker processes hands
    them to whichever worker accepts first.
    """

    def __init__(self, base_url: str, timeout: float = 120) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, headers: dict[str, str] | None = None) -> _Response:
        import requests

        return _Response(requests.get(self.base_url + path, headers=headers, timeout=self.timeout))

    def post(self, path: str, data: str, content_type: str, headers: dict[str, str] | None = None) -> _Response:
        import requests

        return _Response(requests.post(self.base_url + path, data=data, timeout=self.timeout,
                                       headers={**(headers or {}), "Content-Type": content_type}))


class _Response:
    def __init__(self, response: Any) -> None:
        self._response = response
        self.status_code = response.status_code

    def get_json(self) -> Any:
        return self._response.json()

    def get_data(self, as_text: bool = False) -> Any:
        return self._response.text if as_text else self._response.content


def remove_flag_call(web: Any, cmp: dict[str, Any], run_id: str, flag_id: str, clicks: int = 1,
                     headers: dict[str, str] | None = None) -> Any:
    """Press a listed flag's remove button (a pattern-matching id), as the browser sends it."""
    deps = web.get("/_dash-dependencies", headers=headers or {}).get_json()
    dep = next(d for d in deps if "cmp-flag-rm" in json.dumps(d["inputs"]))
    outs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in _outputs(dep["output"])]
    button = {"flag": flag_id, "run": run_id, "type": "cmp-flag-rm"}
    body = {"output": dep["output"], "outputs": outs,
            "inputs": [[{"id": button, "property": "n_clicks", "value": clicks}]],
            "state": [{"id": "cmp-ctx", "property": "data", "value": cmp}],
            "changedPropIds": [json.dumps(button, separators=(",", ":"), sort_keys=True) + ".n_clicks"]}
    return web.post("/_dash-update-component", data=json.dumps(body), content_type="application/json",
                    headers=headers or {})


def comparison_context(web: Any, state: dict[str, Any]) -> Any:
    """The Performance Comparison's context (``cmp-ctx``) for ``state``, as computed once its page shows."""
    from dash_app.views.comparison import TAB_VALUE

    values = {("ov-state", "data"): state, ("app-tabs", "value"): TAB_VALUE}
    return outputs(call(web, "cmp-ctx.data", values))["cmp-ctx"]["data"]
