"""Shared fixtures (keep small)."""
from __future__ import annotations

import pathlib

import pytest
import torch

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh CPU generator seeded with 0."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def one_torch_thread():
    """One torch intra-op thread for the test (``pytest.mark.usefixtures("one_torch_thread")``): on
    the shared 2-core machine more threads only add contention, and one fixes the reduction order."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def data_dir() -> pathlib.Path:
    """The repository's ``data/`` folder (small shipped images, kernels, masks)."""
    return DATA


def one_line(exc_info) -> str:
    """The message of a raised error, asserting it is a single line."""
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg
