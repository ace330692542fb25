"""Layer capture at language-model size: a randomly initialised Llama of about 1.1B parameters.

    nice -n 10 python benchmarks/llm_capture.py [--layers 22] [--hidden 2048] [--intermediate 5632]
                                                [--vocab 32000] [--models 8] [--repeats 2]

The model is TinyLlama-1.1B's architecture built from a ``transformers.LlamaConfig`` (no
download), float32, random weights (``initializer_range`` 0.02), tied embeddings off:
1,100,048,384 parameters, 4.4 GB. Everything written (a sqlite store, its artifacts, the
``torch.save`` files) goes to a temporary folder removed at the end. Memory: about 5.5 GB at peak
(one model; the compared models are the same model perturbed in place, one after another).
Keys of the JSON line printed last:

- ``params``: parameters of the model; ``model_mb``: its float32 state dict, MB (2**20 bytes).
- ``capture_s`` (s): :func:`mlflow_cc.torch.layers.log_layers` without activations (exact
  per-tensor summaries; tensors above ``sample_above`` = 2**20 elements stored as a fixed sample
  of 2**16 values, the rest in full; logged to the sqlite store), median of ``--repeats``.
- ``save_s`` (s): ``torch.save(model.state_dict(), file)`` to the same disk, the floor, timed the
  same way, interleaved with the above.
- ``capture_ratio`` = capture_s / save_s. Target <= 1.5.
- ``artifact_mb``: the run's stored layer artifacts (summary Parquet + weights safetensors), MB;
  ``artifact_ratio`` = artifact bytes / float32 state dict bytes. Target <= 0.05.
- ``capture_peak_over_model``: peak resident memory of this process during one capture (Linux
  ``VmHWM``, reset just before via ``/proc/self/clear_refs``; the model, the interpreter with
  torch, transformers and MLflow included) / the state dict size. Target <= 1.3.
- ``sampled_tensors`` / ``full_tensors``: tensors stored as samples / in full.
- ``activations_s`` (s): :func:`mlflow_cc.torch.activations.capture_activations` on 4 prompts
  of 16 random tokens (hooks on every decoder layer, attention, MLP, RMSNorm and Linear), for
  information (no target: it is a forward pass of the model).
- ``models``: models compared (the base and ``models - 1`` copies, each pruned a little more by
  magnitude in place, 5 % of each weight matrix per step); ``compare_s`` (s) and
  ``compare_peak_mb``: :func:`mlflow_cc.analysis.layer_compare.compare_layer_runs` of all of them
  against the base in a fresh process, streamed one tensor at a time, peak RSS above the
  process's RSS after imports, MB. Target <= 1,500.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlflow
import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import mlflow_cc as cc
from mlflow_cc import contract
from mlflow_cc.artifacts.files import artifact_path
from mlflow_cc.torch.activations import capture_activations
from mlflow_cc.torch.layers import log_layers

SAMPLE_ABOVE = 1 << 20


def build_model(layers: int, hidden: int, intermediate: int, vocab: int) -> LlamaForCausalLM:
    """A random float32 Llama (TinyLlama-1.1B's shapes by default)."""
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=4,
                         max_position_embeddings=2048, tie_word_embeddings=False)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).float().eval()


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def capture_vs_save(model: torch.nn.Module, base: cc.ModelRun, work: Path, repeats: int) -> dict[str, float]:
    """Median seconds of log_layers and torch.save, interleaved; the peak RSS of the first capture."""
    captures, saves, peaks = [], [], []
    run_id = ""
    for i in range(repeats):
        target = work / "state.pt"
        start = time.perf_counter()
        torch.save(model.state_dict(), target)
        saves.append(time.perf_counter() - start)
        target.unlink()
        with cc.derive_model(base, "copy", {"repeat": i}) as run:
            reset_peak()
            start = time.perf_counter()
            log_layers(run, model, sample_above=SAMPLE_ABOVE)
            captures.append(time.perf_counter() - start)
            peaks.append(rss_mb("VmHWM"))
            run_id = run.run_id
    return {"capture_s": statistics.median(captures), "save_s": statistics.median(saves),
            "peak_mb": max(peaks), "run_id": run_id}  # type: ignore[dict-item]


def prune_step(model: torch.nn.Module, fraction: float) -> None:
    """Zero, in place, about the ``fraction`` of smallest |w| of every weight matrix (zeros included;
    the threshold is the quantile of a random sample of 65,536 values)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                sample = p.reshape(-1)[torch.randint(p.numel(), (1 << 16,), generator=gen)]
                p.masked_fill_(p.abs() <= torch.quantile(sample.abs(), fraction), 0.0)


class RandomPrompts:
    """What :func:`capture_activations` reads of an evaluation set: 4 prompts of 16 random tokens."""

    def __init__(self, vocab: int) -> None:
        ids = torch.randint(vocab, (4, 16), generator=torch.Generator().manual_seed(0))
        self.inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        self.instance_ids = [str(i) for i in range(4)]

    @staticmethod
    def forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).logits

    def __len__(self) -> int:
        return len(self.instance_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    # the fresh-process peak measurement of benchmarks/capture.py
    from capture import peak_mb

    model = build_model(args.layers, args.hidden, args.intermediate, args.vocab)
    n_params = sum(p.numel() for p in model.parameters())
    model_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    print(f"model: {n_params:,} parameters, {model_mb:.0f} MB, RSS {rss_mb():.0f} MB", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="mlflow-cc-llm-bench-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        client.create_experiment("llm-capture", artifact_location=(work / "artifacts").as_uri())
        base = cc.log_base_model("llama-1.1b-random", experiment="llm-capture", tracking_uri=uri)
        timed = capture_vs_save(model, base, work, args.repeats)
        print(f"capture {timed['capture_s']:.1f} s, torch.save {timed['save_s']:.1f} s", file=sys.stderr)
        folder = Path(str(artifact_path(client, str(timed["run_id"]), contract.ARTIFACT_WEIGHTS))).parent
        artifact_bytes = sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".parquet", ".safetensors"))
        summary = cc.artifacts.load_layer_summary(client, str(timed["run_id"]))
        stored = summary["stored"].value_counts()

        start = time.perf_counter()
        acts = capture_activations(model, RandomPrompts(args.vocab), np.arange(4))  # type: ignore[arg-type]
        activations_s = time.perf_counter() - start
        print(f"activations of {len(acts)} modules in {activations_s:.1f} s", file=sys.stderr)

        run_ids = []
        for i in range(args.models):
            if i:
                prune_step(model, 0.05 * i)
            with cc.derive_model(base, "prune", {"step": i}) as run:
                log_layers(run, model, sample_above=SAMPLE_ABOVE)
                run_ids.append(run.run_id)
        del model
        start = time.perf_counter()
        compare_peak = peak_mb("compare", uri=uri, base=run_ids[0], others=run_ids[1:])
        compare_s = time.perf_counter() - start
    print(json.dumps({
        "params": n_params, "model_mb": round(model_mb, 1), "capture_s": round(timed["capture_s"], 2),
        "save_s": round(timed["save_s"], 2), "capture_ratio": round(timed["capture_s"] / timed["save_s"], 3),
        "artifact_mb": round(artifact_bytes / 2**20, 2), "artifact_ratio": round(artifact_bytes / (model_mb * 2**20), 4),
        "capture_peak_over_model": round(timed["peak_mb"] / model_mb, 3),
        "sampled_tensors": int(stored.get("sample", 0)), "full_tensors": int(stored.get("full", 0)),
        "activations_s": round(activations_s, 2), "models": args.models, "compare_s": round(compare_s, 2),
        "compare_peak_mb": round(compare_peak, 1),
    }))


if __name__ == "__main__":
    main()
