"""Fixtures shared by the torch helper tests (import the names into a test module to use them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run the module's tests with one torch thread, restored after.

    Small models on shared cores: one thread is several times faster than two that wait on each
    other (measured: a digits CNN forward pass 36 ms vs 310 ms under load).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
