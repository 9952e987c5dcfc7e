"""The box C = [lo, hi] shared by the sampler steps: starting positions and the end-of-step
projection / out-of-box fraction (``docs/algorithms.md §box``)."""
from __future__ import annotations

import math

import torch

__all__ = ["initial_position", "apply_box", "check_box_params"]


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


def check_box_params(params, sampler: str) -> None:
    """Validate and normalise (in place, frozen dataclass) the fields every Langevin family's
    params share: ``step_size`` δ > 0, ``clip`` C = (lo, hi) or None, ``projected`` (needs C) and
    the tail parameter ``lam`` λ > 0 (needed by the soft variant with a box)."""
    set_ = lambda k, v: object.__setattr__(params, k, v)  # noqa: E731
    d = float(params.step_size)
    if not (math.isfinite(d) and d > 0):
        raise ValueError(f"step_size: must be a finite δ > 0, got {params.step_size}; or use step_size='auto'")
    set_("step_size", d)
    if params.clip is not None:
        lo, hi = (float(c) for c in params.clip)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"clip: must be (lo, hi) with lo < hi, got {params.clip}; e.g. clip=(-1.0, 2.0)")
        set_("clip", (lo, hi))
    elif params.projected:
        raise ValueError(f"clip: projected {sampler} needs a box C; pass clip=(lo, hi) or projected=False")
    if params.lam is not None:
        lam = float(params.lam)
        if not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"lam: must be a finite λ > 0, got {params.lam}")
        set_("lam", lam)
    elif params.clip is not None and not params.projected:
        raise ValueError("lam: the soft tail term with a box C needs λ; pass lam=... or lam='auto' via make_params")
