"""The box C = [lo, hi] shared by the sampler steps: starting positions and the end-of-step
projection / out-of-box fraction (``docs/algorithms.md §box``)."""
from __future__ import annotations

import torch

__all__ = ["initial_position", "apply_box"]


def initial_position(x0: torch.Tensor, clip: tuple[float, float] | None, projected: bool) -> torch.Tensor:
    """Copy of the chains' start ``x0`` ``[B, C, H, W]``, projected onto C for projected samplers."""
    if x0.ndim != 4:
        raise ValueError(f"x0: expected [B, C, H, W] (B = chains), got shape {tuple(x0.shape)}")
    x = x0.detach().clone()
    if projected:
        x.clamp_(*clip)
    return x


def apply_box(x_new: torch.Tensor, clip: tuple[float, float] | None, projected: bool) -> torch.Tensor:
    """End of a step: clamp ``x_new`` onto C in place if ``projected``; return the fraction of
    pixels outside C per chain (``[B]``; 0 when projected, NaN without a box)."""
    b = x_new.shape[0]
    if clip is None:
        return torch.full((b,), float("nan"), dtype=x_new.dtype, device=x_new.device)
    lo, hi = clip
    if projected:
        x_new.clamp_(lo, hi)
        return torch.zeros(b, dtype=x_new.dtype, device=x_new.device)
    return ((x_new < lo) | (x_new > hi)).flatten(1).to(x_new.dtype).mean(1)
