"""Argument checks shared by the package: one helper per kind of check (one-line errors)."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_count", "check_generator"]


def check_count(name: str, value, minimum: int = 0) -> int:
    """``value`` must be a Python/numpy int (not bool, not float) ``>= minimum``; returns ``int(value)``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: must be an int, got {value!r} ({type(value).__name__}); e.g. {name}=1000")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def check_generator(generator) -> torch.Generator:
    """``generator`` must be a ``torch.Generator`` (the only source of randomness of a run), or
    per-chain streams (:class:`pnp_imaging.chain_rng.ChainGenerators`)."""
    from pnp_imaging.chain_rng import ChainGenerators

    if not isinstance(generator, (torch.Generator, ChainGenerators)):
        raise ValueError("generator: pass a torch.Generator, e.g. torch.Generator().manual_seed(0)")
    return generator


def check_positive(name: str, value, maximum: float | None = None) -> float:
    """A finite number ``> 0`` (and ``<= maximum`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < value < float("inf"):
        raise ValueError(f"{name}: must be a positive number, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: must be in (0, {maximum:g}], got {value}")
    return float(value)


def check_step_size(name: str, value) -> float | str:
    """``"auto"`` or a positive step size."""
    if value == "auto":
        return value
    if isinstance(value, str):
        raise ValueError(f"{name}: must be 'auto' or a positive number, got {value!r}")
    try:
        return check_positive(name, value)
    except ValueError:
        raise ValueError(f"{name}: must be 'auto' or a positive number, got {value!r}") from None


def check_box(name: str, value) -> tuple[float, float] | None:
    """None or ``[low, high]`` with ``low < high`` (returned as a tuple of floats)."""
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not value[0] < value[1]:
        raise ValueError(f"{name}: must be [low, high] with low < high (or null), got {value!r}")
    return (float(value[0]), float(value[1]))


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, got {value!r}")
    return value
