"""A small synthetic generation experiment written with the public writers: a base language model
and two derived models answering 30 questions in three topics, some answers changed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from mlflow_cc import derive_model, log_base_model
from mlflow_cc.artifacts import log_dataset, log_generation_outputs

VOCAB, K = 60, 5
#: (topic, question, reference): 30 questions; the yes/no ones make a repeated answer change.
QUESTIONS = [
    ("geography", "What is the capital of France?", "Paris"),
    ("geography", "What is the capital of Japan?", "Tokyo"),
    ("geography", "Which river flows through Cairo?", "the Nile"),
    ("geography", "What is the largest ocean?", "the Pacific Ocean"),
    ("geography", "Which country has Lisbon as capital?", "Portugal"),
    ("geography", "What is the tallest mountain?", "Mount Everest"),
    ("geography", "Which continent is Kenya in?", "Africa"),
    ("geography", "What is the capital of Canada?", "Ottawa"),
    ("geography", "Which desert covers much of North Africa?", "the Sahara"),
    ("geography", "What is the longest river in Europe?", "the Volga"),
    ("science", "What is the largest animal?", "the blue whale"),
    ("science", "Is water made of hydrogen and oxygen?", "yes"),
    ("science", "Is the Sun a planet?", "no"),
    ("science", "Is iron magnetic?", "yes"),
    ("science", "Do plants need light to grow?", "yes"),
    ("science", "Is sound faster than light?", "no"),
    ("science", "Is DNA a double helix?", "yes"),
    ("science", "What gas do plants take in?", "carbon dioxide"),
    ("science", "Which tag makes text bold in HTML: <b> or <i>?", "<b>"),
    ("science", "What is the chemical symbol of gold?", "Au"),
    ("history", "In which year did World War II end?", "1945"),
    ("history", "Who was the first president of the United States?", "George Washington"),
    ("history", "Which empire built the Colosseum?", "the Roman Empire"),
    ("history", "In which year did the Berlin Wall fall?", "1989"),
    ("history", "Who wrote the Declaration of Independence?", "Thomas Jefferson"),
    ("history", "Which ship sank in 1912?", "the Titanic"),
    ("history", "Who painted the Mona Lisa?", "Leonardo da Vinci"),
    ("history", "Which civilization built Machu Picchu?", "the Inca"),
    ("history", "In which year did humans first land on the Moon?", "1969"),
    ("history", "Who discovered penicillin?", "Alexander Fleming"),
]
#: Answers of the derived models that differ from the base's (instance index -> answer).
CHANGES = {
    "prune 30%": {0: "Lyon", 10: "the blue shark", 18: "<i>", 24: "Benjamin Franklin"},
    "prune 70%": {0: "Lyon", 3: "the Atlantic Ocean", 10: "the blue shark", 11: "no", 13: "no", 14: "no",
                  16: "no", 20: "1944", 21: "George Washington Carver", 26: "Leonardo", 29: "Alexander"},
}
#: Base answers that are wrong (the base is not perfect either).
BASE_WRONG = {9: "the Danube", 27: "the Maya"}


@dataclass
class GenerationExperiment:
    experiment_id: str
    run_ids: list[str]  # base first
    names: list[str]
    dataset_run_id: str
    ids: list[str]
    answers: dict[str, list[str]] = field(default_factory=dict)  # model name -> answers


def _tokens(rng: np.random.Generator, n_tok: int, changed: bool, base: tuple[np.ndarray, np.ndarray] | None
            ) -> tuple[np.ndarray, np.ndarray]:
    if base is not None and not changed:
        return base
    ids = np.stack([rng.choice(VOCAB, K, replace=False) for _ in range(n_tok)])
    probs = np.sort(rng.dirichlet(np.ones(K + 1), n_tok)[:, :K], axis=1)[:, ::-1]
    return ids, np.log(probs).astype(np.float32)


def log_generation_experiment(experiment: str, uri: str, seed: int = 0) -> GenerationExperiment:
    rng = np.random.default_rng(seed)
    client = MlflowClient(uri)
    ids = [f"q{i:02d}" for i in range(len(QUESTIONS))]
    topics = [q[0] for q in QUESTIONS]
    prompts = [q[1] for q in QUESTIONS]
    refs = [q[2] for q in QUESTIONS]
    with log_base_model("tiny-lm", experiment=experiment, tracking_uri=uri) as base:
        pass
    instances = pd.DataFrame({"instance_id": ids, "meta_topic": topics})
    previews = pd.DataFrame({"instance_id": ids, "kind": "text", "value": prompts})
    dataset_run = log_dataset(base.experiment_id, "questions", instances, previews, client=client)
    runs = [(base.run_id, "tiny-lm")]
    for name, sparsity in (("prune 30%", 0.3), ("prune 70%", 0.7)):
        with derive_model(base.run_id, "prune", {"sparsity": sparsity}, tracking_uri=uri) as child:
            pass
        runs.append((child.run_id, name))
    out = GenerationExperiment(base.experiment_id, [r for r, _ in runs], [n for _, n in runs], dataset_run, ids)
    base_tokens: list[tuple[np.ndarray, np.ndarray]] = []
    for k, (run_id, name) in enumerate(runs):
        answers = [BASE_WRONG.get(i, r) for i, r in enumerate(refs)]
        changes = CHANGES.get(name, {})
        answers = [changes.get(i, a) for i, a in enumerate(answers)]
        tokens = [_tokens(rng, len(refs[i].split()) + 1, i in changes, base_tokens[i] if k else None)
                  for i in range(len(ids))]
        if not k:
            base_tokens = tokens
        nll = np.array([0.4 + 0.1 * (i % 3) + (1.5 if i in changes else 0.2 * k) for i in range(len(ids))])
        log_generation_outputs(run_id, ids, answers, refs, prompts=prompts, reference_nll=nll,
                               topk_token_ids=[t[0] for t in tokens], topk_logprobs=[t[1] for t in tokens],
                               scores={"length": np.array([float(len(a)) for a in answers])},
                               dataset="questions", dataset_run_id=dataset_run, client=client)
        out.answers[name] = answers
    return out


@dataclass
class ValueExperiment:
    experiment_id: str
    run_ids: list[str]  # base first
    ids: list[str]


def log_value_experiment(kind: str, experiment: str, uri: str) -> ValueExperiment:
    """A base and one quantized model with regression (values, targets) or embedding (vectors) outputs
    on 12 instances in two subgroups."""
    client = MlflowClient(uri)
    ids = [f"x{i:02d}" for i in range(12)]
    with log_base_model(f"{kind}-net", experiment=experiment, tracking_uri=uri) as base:
        pass
    with derive_model(base.run_id, "quantize", {"bits": 8}, tracking_uri=uri) as child:
        pass
    instances = pd.DataFrame({"instance_id": ids, "meta_site": ["north"] * 6 + ["south"] * 6})
    dataset_run = log_dataset(base.experiment_id, "readings", instances, client=client)
    values = np.arange(12, dtype=float)
    if kind == "regression":
        from mlflow_cc.artifacts import log_regression_outputs

        targets = values + 0.5
        log_regression_outputs(base.run_id, ids, values, targets, dataset="readings", dataset_run_id=dataset_run,
                               client=client)
        shifted = values + np.where(np.arange(12) >= 6, 3.0, 0.0)  # the south site drifts by 3
        log_regression_outputs(child.run_id, ids, shifted, targets, dataset="readings", dataset_run_id=dataset_run,
                               client=client)
    else:
        from mlflow_cc.artifacts import log_embedding_outputs

        vectors = np.stack([np.cos(values), np.sin(values)], axis=1)
        turned = vectors.copy()
        turned[6:] = vectors[6:, ::-1] * [1, -1]  # the south site's vectors turn by 90 degrees: cosine 0
        log_embedding_outputs(base.run_id, ids, vectors, dataset="readings", dataset_run_id=dataset_run, client=client)
        log_embedding_outputs(child.run_id, ids, turned, dataset="readings", dataset_run_id=dataset_run, client=client)
    return ValueExperiment(base.experiment_id, [base.run_id, child.run_id], ids)
