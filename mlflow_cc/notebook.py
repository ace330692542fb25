"""Show the app inside a Jupyter notebook: ``mlflow_cc.show(experiment="digits")``."""

from __future__ import annotations

from typing import Any


def show(experiment: str | None = None, tracking_uri: str | None = None, *, port: int = 8050,
         height: int = 900, mlflow_ui_url: str | None = None, mode: str = "inline") -> Any:
    """Serve the app on 127.0.0.1 and display it in the notebook (Dash's ``jupyter_mode``).

    ``experiment`` is a name or id (default: the newest experiment); ``mode`` is any of
    Dash's jupyter modes ("inline", "tab", "external"). Returns the Dash app.
    """
    from mlflow_cc.extras import require

    require("app", "mlflow_cc.show")
    from mlflow.tracking import MlflowClient

    from dash_app.app import create_app
    from mlflow_cc.errors import MlflowCCError
    from mlflow_cc.read.reader import list_experiments

    if experiment is None:
        exps = list_experiments(MlflowClient(tracking_uri))
        if not exps:
            raise MlflowCCError("no experiments in the store yet")
        experiment = exps[0]["id"]
    app = create_app(experiment=experiment, tracking_uri=tracking_uri, mlflow_ui_url=mlflow_ui_url)
    app.run(jupyter_mode=mode, jupyter_height=height, host="127.0.0.1", port=port)
    return app
