"""The ``mlflow-cc`` command: ``tree``, ``demo``, ``ui``."""

from __future__ import annotations

import json
import sys

import click

from mlflow_cc.errors import MlflowCCError


@click.group()
def main() -> None:
    """Compress and Compare for MLflow."""


@main.command()
@click.option("--experiment", "-e", required=True, help="Experiment name or id.")
@click.option("--tracking-uri", default=None, help="Default: as MLflow (MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def tree(experiment: str, tracking_uri: str | None, as_json: bool) -> None:
    """Print an experiment's provenance forest, one model a line."""
    from mlflow_cc.reader import ExperimentReader
    from mlflow_cc.tree_text import forest_lines

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
    from mlflow_cc.demo import build_demo

    for name, status in build_demo(tracking_uri, only=only or None):
        click.echo(f"{name}: {status}")


if __name__ == "__main__":  # pragma: no cover
    main()
