"""scikit-learn's bundled digits (1,797 8x8 images) and a small CNN for them. Needs torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

CLASS_NAMES = [str(d) for d in range(10)]


@dataclass
class DigitsSplit:
    """Train/test tensors; ``test_ids`` are stable instance ids ("digits-<index>")."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    test_ids: list[str]
    train_ids: list[str]


def load_digits_split(seed: int = 0, test_fraction: float = 0.3,
                      keep_fraction: dict[int, float] | None = None) -> DigitsSplit:
    """Deterministic split; ``keep_fraction`` subsamples classes in the training set only
    (e.g. ``{3: 0.1}`` keeps 10 % of the 3s) to make them rare."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    if keep_fraction:
        keep = [i for i in train if rng.random() < keep_fraction.get(int(y[i]), 1.0)]
        train = np.array(keep)
    return DigitsSplit(torch.from_numpy(x[train]), torch.from_numpy(y[train]),
                       torch.from_numpy(x[test]), torch.from_numpy(y[test]),
                       [f"digits-{i}" for i in test], [f"digits-{i}" for i in train])


class DigitsCNN(nn.Module):
    """Two conv blocks with batch norm and a linear head: about 97 % test accuracy."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * channels * 16, 64), nn.ReLU(),
                                        nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 8, lr: float = 3e-3,
          batch_size: int = 64, seed: int = 0) -> nn.Module:
    """Adam on cross-entropy; deterministic for a seed."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())
