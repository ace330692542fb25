"""Layer capture speed vs ``torch.save``, and streamed vs naive memory when comparing layers.

    python benchmarks/capture.py [--models 8] [--repeats 5]

Everything it writes (a sqlite store, its artifacts, the ``torch.save`` files) goes into a
temporary folder that is removed at the end; nothing lands in the working directory.

For a ResNet-50-sized model (25.6M parameters, built from plain torch layers, random init):

- ``params``: parameters of that model.
- ``layers_s`` (s): :func:`mlflow_cc.torch.layers.log_layers` (per-tensor summaries +
  effective weights as safetensors, logged to the temp sqlite store), median of
  ``--repeats`` after one untimed round;
- ``save_state_dict_s`` (s): plain ``torch.save(model.state_dict(), file)``, the floor,
  timed the same way, interleaved with the above;
- ``layers_ratio`` = layers_s / save_state_dict_s. Target <= 2.0.

Then ``--models`` such models (``models``: the base and magnitude-pruned copies) are
logged, and fresh subprocesses each report their peak RSS above their RSS after imports
(MB = 2**20 bytes, Linux ``VmHWM``):

- ``compare_peak_mb``: :func:`mlflow_cc.analysis.layer_compare.compare_layer_runs` of the base
  against the others, streamed one tensor at a time from the logged safetensors;
- ``pairwise_peak_mb``: the baseline, what a careful user does by hand: load the base's
  weights once, then each other model's weights in turn (``safetensors.numpy.load_file``),
  computing its difference to the base tensor by tensor, and drop it before the next
  (base + one model resident at a time; ``load_file`` reads the file before copying the
  tensors out, so the model being loaded is briefly resident twice);
- ``compare_ratio`` = compare_peak_mb / pairwise_peak_mb. Target <= 0.5 (proposed with this baseline).
  (Before 2026-11 this key was against loading all models at once; that is now
  ``compare_vs_all_ratio``.)
- ``naive_peak_mb``: loading all ``--models`` models' weights at once;
- ``compare_vs_all_ratio`` = compare_peak_mb / naive_peak_mb. Target <= 0.25.

The last stdout line is that JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlflow
import torch
from torch import nn

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.artifacts.files import artifact_path
from mlflow_cc.torch.effective import make_pruning_permanent
from mlflow_cc.torch.layers import log_layers
from mlflow_cc.torch.pruning import apply_pruning, prunable_tensors


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce, 3x3, 1x1 expand (x4), with a projection shortcut when needed."""

    def __init__(self, inp: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(inp, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))
        self.shortcut = (nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                         if stride != 1 or inp != out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet50_like() -> nn.Module:
    """ResNet-50's layout (3, 4, 6, 3 bottlenecks; 1,000 classes): 25,557,032 parameters."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1)]
    inp = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(inp, width, stride if i == 0 else 1))
            inp = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inp, 1000)]
    return nn.Sequential(*layers).eval()


def time_layers_vs_save(model: nn.Module, base: cc.ModelRun, work: Path, repeats: int) -> tuple[float, float]:
    """Median seconds of log_layers and of torch.save, interleaved, after one untimed round each."""
    layers, saves = [], []
    for i in range(repeats + 1):
        with cc.derive_model(base, "copy", {"repeat": i}) as run:
            start = time.perf_counter()
            log_layers(run, model)
            layers.append(time.perf_counter() - start)
        start = time.perf_counter()
        torch.save(model.state_dict(), work / f"state-{i}.pt")
        saves.append(time.perf_counter() - start)
        (work / f"state-{i}.pt").unlink()
    return statistics.median(layers[1:]), statistics.median(saves[1:])


_PEAK = """
import json, resource, sys
sys.path.insert(0, {root!r})
import numpy as np, mlflow
from mlflow.tracking import MlflowClient
from safetensors.numpy import load_file
from mlflow_cc.analysis.layer_compare import compare_layer_runs
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
before = rss_mb()
args = json.loads(sys.argv[1])
if args["mode"] == "compare":
    result = compare_layer_runs(MlflowClient(args["uri"]), args["base"], args["others"])
    n = len(result.tensors)
elif args["mode"] == "pairwise":
    base = load_file(args["paths"][0])
    n = 0
    for path in args["paths"][1:]:
        other = load_file(path)
        for name, w in other.items():
            if name in base and base[name].shape == w.shape:
                float(np.abs(w - base[name]).sum())
                n += 1
        del other
else:
    loaded = [load_file(p) for p in args["paths"]]
    n = sum(len(x) for x in loaded)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
print(json.dumps({{"peak_mb": peak - before, "rows": n}}))
"""


def peak_mb(mode: str, **args: object) -> float:
    """Peak RSS above the post-import RSS of a fresh process doing ``mode``, MB."""
    out = subprocess.run([sys.executable, "-c", _PEAK.format(root=str(ROOT)), json.dumps({"mode": mode, **args})],
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = resnet50_like()
    n_params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(prefix="mlflow-cc-bench-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        for name in ("capture-bench", "capture-compare"):  # artifacts in the temp folder, not ./mlruns
            client.create_experiment(name, artifact_location=(work / "artifacts" / name).as_uri())
        base = cc.log_base_model("resnet50-like", experiment="capture-bench", tracking_uri=uri)
        base.end()
        layers_s, save_s = time_layers_vs_save(model, base, work, args.repeats)
        print(f"layers {layers_s:.2f} s, torch.save {save_s:.2f} s", file=sys.stderr)

        with cc.log_base_model("base", experiment="capture-compare", tracking_uri=uri) as cmp_base:
            log_layers(cmp_base, model)
        others = []
        for i in range(1, args.models):
            sparsity = i / args.models
            with cc.derive_model(cmp_base, "prune", {"sparsity": sparsity}) as run:
                pruned = resnet50_like()
                pruned.load_state_dict(model.state_dict())
                apply_pruning(pruned, sparsity, targets=prunable_tensors(pruned, exclude_types=["norm"]))
                log_layers(run, make_pruning_permanent(pruned))
                others.append(run.run_id)
        client = cmp_base.client
        paths = [str(artifact_path(client, r, contract.ARTIFACT_WEIGHTS)) for r in [cmp_base.run_id, *others]]
        compare_peak = peak_mb("compare", uri=uri, base=cmp_base.run_id, others=others)
        pairwise_peak = peak_mb("pairwise", paths=paths)
        naive_peak = peak_mb("naive", paths=paths)
    print(json.dumps({
        "params": n_params, "layers_s": round(layers_s, 3), "save_state_dict_s": round(save_s, 3),
        "layers_ratio": round(layers_s / save_s, 3), "models": args.models,
        "compare_peak_mb": round(compare_peak, 1), "pairwise_peak_mb": round(pairwise_peak, 1),
        "compare_ratio": round(compare_peak / pairwise_peak, 3), "naive_peak_mb": round(naive_peak, 1),
        "compare_vs_all_ratio": round(compare_peak / naive_peak, 3),
    }))


if __name__ == "__main__":
    main()
