"""The like-for-like floor of ``benchmarks/overview.py``: a bare Dash page drawing ``n`` points twice.

    python benchmarks/overview_floor.py --port 8060 --n 52

The same Dash, React and Plotly bundle as the app (``dash_app/vendor.py``'s bundle when ``make install``
built it, else Dash's full one), one ``dcc.Graph`` in ``#ov-map`` and one in ``#ov-scatter``, each
a single scatter trace named ``models`` of ``n`` markers, in the layout (no callback, no other
component library). What is left of the app's load above this page is what mlflow-cc itself costs.
Served by Dash's own server on 127.0.0.1, like ``mlflow-cc ui``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from pathlib import Path

from dash import Dash, dcc, html

BUNDLE = Path(__file__).resolve().parents[1] / "dash_app" / "assets" / "vendor" / "plotly.min.js"


def figure(n: int, seed: int) -> dict:
    rng = random.Random(seed)
    return {"data": [{"type": "scatter", "mode": "markers", "name": "models", "customdata": list(range(n)),
                      "x": [rng.random() for _ in range(n)], "y": [rng.random() for _ in range(n)]}],
            "layout": {"height": 600, "margin": {"t": 20}}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, default=52)
    args = ap.parse_args()
    assets = Path(tempfile.mkdtemp(prefix="cc-floor-assets-"))
    if BUNDLE.exists():  # served from assets/, as the app does: Dash then skips its own bundle
        (assets / "vendor").mkdir()
        shutil.copy(BUNDLE, assets / "vendor" / BUNDLE.name)
    app = Dash(__name__, assets_folder=str(assets), update_title=None)
    app.layout = html.Div([html.Div(id="ov-map", children=dcc.Graph(figure=figure(args.n, 0))),
                           html.Div(id="ov-scatter", children=dcc.Graph(figure=figure(args.n, 1)))])
    try:
        app.run(host="127.0.0.1", port=args.port, debug=False)
    finally:
        shutil.rmtree(assets, ignore_errors=True)


if __name__ == "__main__":
    main()
