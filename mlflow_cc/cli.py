"""The ``mlflow-cc`` command: ``tree``, ``demo``, ``ui``."""

from __future__ import annotations

import json
import os
import sys

import click

from mlflow_cc.errors import MlflowCCError
from mlflow_cc.extras import MissingExtraError, require


def _require(extra: str, feature: str) -> None:
    try:
        require(extra, feature)
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """Compress and Compare for MLflow."""


@main.command()
@click.option("--experiment", "-e", required=True, help="Experiment name or id.")
@click.option("--tracking-uri", default=None, help="Default: as MLflow (MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def tree(experiment: str, tracking_uri: str | None, as_json: bool) -> None:
    """Print an experiment's provenance forest, one model a line."""
    from mlflow_cc.read.reader import ExperimentReader
    from mlflow_cc.read.tree_text import forest_lines

    try:
        reader = ExperimentReader(experiment, tracking_uri)
        forest = reader.forest()
    except MlflowCCError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        doc = {"experiment": {"id": reader.experiment_id, "name": reader.experiment_name},
               "tracking_uri": reader.tracking_uri, **forest.to_dict()}
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return
    for line in forest_lines(forest, reader.metric_info):
        click.echo(line)


@main.command()
@click.option("--tracking-uri", default=None, help="Default: as MLflow.")
@click.option("--only", multiple=True, help="Build only these case studies (by name).")
def demo(tracking_uri: str | None, only: tuple[str, ...]) -> None:
    """Build the example experiments into the store (skipping those already there)."""
    _require("studies", "mlflow-cc demo")
    from mlflow_cc.studies.demo import build_demo

    for name, status in build_demo(tracking_uri, only=only or None):
        click.echo(f"{name}: {status}")


@main.command()
@click.option("--tracking-uri", default=None, help="Default: as MLflow (MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")
@click.option("--experiment", "-e", default=None, help="Experiment to open first (name or id); default: the newest.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 exposes the app to the network.")
@click.option("--port", default=8050, show_default=True, type=int)
@click.option("--mlflow-ui-url", default=None, help="Base URL of run links (default: the tracking server, or http://127.0.0.1:5000).")
@click.option("--workers", default=1, show_default=True, type=int,
              help="More than 1: serve with gunicorn, this many worker processes sharing one cache.")
@click.option("--auth", type=click.Choice(["none", "mlflow"]), default=None,
              help="mlflow: users sign in with their MLflow accounts (mlflow server --app-name basic-auth). "
                   "Default: $MLFLOW_CC_AUTH, else none (127.0.0.1 only).")
@click.option("--allow-remote", is_flag=True, help="Serve a non-loopback --host without sign-in (trusted networks only).")
@click.option("--allowed-hosts", default=None,
              help="Host names the app answers to besides localhost, 127.0.0.1, ::1 and --host (comma-separated, "
                   "any port; '*.example.org' for subdomains; '*' for any). Others get 400 (DNS rebinding). "
                   "Default: $MLFLOW_CC_ALLOWED_HOSTS.")
def ui(tracking_uri: str | None, experiment: str | None, host: str, port: int, mlflow_ui_url: str | None,
       workers: int, auth: str | None, allow_remote: bool, allowed_hosts: str | None) -> None:
    """Serve the Compress and Compare app."""
    _require("app", "mlflow-cc ui")
    if workers > 1 or auth == "mlflow" or (auth is None and os.environ.get("MLFLOW_CC_AUTH") == "mlflow"):
        _require("team", "mlflow-cc ui with --workers or sign-in")
    from mlflow.tracking import MlflowClient

    from dash_app.serving import (
        Settings,
        UnsafeBindError,
        check_bind,
        exec_gunicorn,
        gunicorn_env,
        parse_hosts,
    )
    from dash_app.wsgi import build_app
    from mlflow_cc.read.reader import list_experiments

    try:
        env_settings = Settings.from_env()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    auth = auth or env_settings.auth
    allow_remote = allow_remote or env_settings.allow_remote
    hosts = parse_hosts(allowed_hosts) if allowed_hosts is not None else env_settings.allowed_hosts
    try:
        check_bind(host, auth=auth, allow_remote=allow_remote)
    except UnsafeBindError as exc:
        raise click.ClickException(str(exc)) from None
    if workers > 1 or auth == "mlflow":
        click.echo(f"mlflow-cc app (gunicorn, {workers} worker(s), sign-in: {auth}): http://{host}:{port}/")
        exec_gunicorn(gunicorn_env(host=host, port=port, workers=workers, auth=auth, allow_remote=allow_remote,
                                   tracking_uri=tracking_uri, experiment=experiment, mlflow_ui_url=mlflow_ui_url,
                                   allowed_hosts=hosts))
    try:
        if experiment is None:
            exps = list_experiments(MlflowClient(tracking_uri))
            if not exps:
                raise click.ClickException("no experiments in the store yet; run `mlflow-cc demo` first")
            experiment = exps[0]["id"]
        # The same app as a team deployment (reader snapshots, store status strip), one process.
        app = build_app(Settings(tracking_uri=tracking_uri, auth="none", allow_remote=allow_remote,
                                 experiment=experiment, mlflow_ui_url=mlflow_ui_url, refresh_ms=3000,
                                 allowed_hosts=hosts, bind_host=host, trust_proxy=env_settings.trust_proxy))
    except (MlflowCCError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"mlflow-cc app: http://{host}:{port}/")
    app.run(host=host, port=port, debug=False)


if __name__ == "__main__":  # pragma: no cover
    main()
