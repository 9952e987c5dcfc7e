"""Plug-and-play score prior (Tweedie's formula).

For the MMSE denoiser ``D*_ε`` of ``p_ε = p * N(0, ε I)``, Tweedie's identity gives
``∇ log p_ε(x) = (D*_ε(x) − x)/ε``; a learned denoiser ``D_ε`` replaces ``D*_ε`` (Laumont et al.,
SIAM J. Imaging Sci. 15(2), 2022; ``docs/algorithms.md §score-prior``). **ε is the noise
variance**: the denoiser is called with its std ``√ε`` (deepinv's ``ScorePrior.grad(x, sigma)``
takes a std; passing ε there squares it again).
"""
from __future__ import annotations

import contextlib
import math

import torch

__all__ = ["ScorePrior", "AUTO_CHUNK_PIXELS", "PRECISIONS", "batch_chunk_size"]

#: ``precision`` of the denoiser's evaluation: ``full`` (the dtype of the chains) or ``bfloat16``
#: (``torch.autocast``: convolutions and matrix products in bfloat16, everything else, the
#: chains and the statistics in the run's dtype; ``docs/algorithms.md §memory``)
PRECISIONS = ("full", "bfloat16")

#: ``batch_chunk="auto"``: at most this many pixels (chains x channels x H x W) per denoiser call,
#: i.e. 8 chains of 256² gray in one call, one chain per call from 724² gray up. A call's
#: transient memory is proportional to its pixels (for lipdncnn_gray_s5, float32: ~0.4 kB per
#: pixel, measured in ``bench/bench_memory.py``), so this caps it at ~0.2 GB whatever the batch.
AUTO_CHUNK_PIXELS = 2**19


def batch_chunk_size(batch_chunk: int | str | None, x_shape) -> int | None:
    """Chains per denoiser call for a batch of shape ``x_shape`` (None: the whole batch).
    ``"auto"``: as many as fit in :data:`AUTO_CHUNK_PIXELS` pixels, at least one."""
    if batch_chunk is None:
        return None
    if batch_chunk == "auto":
        per_chain = math.prod(int(s) for s in x_shape[1:])
        return max(1, AUTO_CHUNK_PIXELS // max(per_chain, 1))
    return int(batch_chunk)


def _check_batch_chunk(batch_chunk):
    ok = batch_chunk in (None, "auto") or (isinstance(batch_chunk, int) and not isinstance(batch_chunk, bool)
                                           and batch_chunk >= 1)
    if not ok:
        raise ValueError(f"batch_chunk: must be an integer >= 1 (chains per denoiser call), 'auto' or None "
                         f"(the whole batch in one call), got {batch_chunk!r}")
    return batch_chunk


def _check_precision(precision):
    if precision not in PRECISIONS:
        raise ValueError(f"precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


class ScorePrior:
    r"""``score(x) = α (D(x, √ε) − x) / ε``.

    Args:
        denoiser: a :class:`denoisers_zoo.base.Denoiser` (or any callable ``D(x, sigma)``),
            called on the batch ``[B, C, H, W]`` (B = chains) under ``torch.no_grad()``, in
            chunks of ``batch_chunk`` chains.
        eps: denoiser noise **variance** ε > 0 on the [0, 1] scale, e.g. ``(5/255)**2``.
        alpha: prior weight α > 0 (α = 1: plain Bayes; α < 1 weakens the prior).
        lipschitz: Lipschitz constant ``L`` of the denoiser residual ``x − D(x)``; defaults to
            ``denoiser.lipschitz`` (1 for RealSN-DnCNN by construction). ``None`` if unknown:
            then :attr:`lipschitz` raises, and automatic step sizes need an explicit value.
        batch_chunk: chains per denoiser call: an int >= 1, ``"auto"`` (default: as many as
            fit in :data:`AUTO_CHUNK_PIXELS` pixels) or None (the whole batch in one call). The
            network's activations are proportional to the pixels of a call, so chunks bound the
            peak memory of large batches; the denoiser acts on each chain separately, so the
            output is the same (bit for bit for the zoo's networks on the CPU, tested in
            ``tests/test_memory.py``).
        precision: ``"full"`` (default) or ``"bfloat16"``: the denoiser runs under
            ``torch.autocast`` in bfloat16 (float32 chains only; reduced-precision mode: faster on hardware with
            bfloat16 units, less activation memory; its measured effect on the estimates is in
            ``docs/algorithms.md §memory``). Its output is cast back to the chains' dtype.

    Attributes:
        sigma: ``√ε``, the std passed to the denoiser.
        residual_lipschitz: ``L`` (or None).
        lipschitz: ``α L / ε``, the Lipschitz constant of the score.

    >>> class Shrink(torch.nn.Module):  # exact MMSE denoiser of N(0, 1) at variance eps
    ...     lipschitz = None
    ...     def forward(self, x, sigma):
    ...         return x / (1 + sigma**2)
    >>> prior = ScorePrior(Shrink(), eps=0.25, lipschitz=0.2)
    >>> round(prior.score(torch.ones(1, 1, 1, 1)).item(), 6)  # = -x/(1 + eps)
    -0.8
    >>> round(prior.lipschitz, 6)
    0.8
    """

    def __init__(self, denoiser, eps: float, alpha: float = 1.0, *, lipschitz: float | None = None,
                 batch_chunk: int | str | None = "auto", precision: str = "full"):
        self.batch_chunk = _check_batch_chunk(batch_chunk)
        self.precision = _check_precision(precision)
        eps = float(eps)
        alpha = float(alpha)
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(
                f"eps: must be a finite denoiser noise VARIANCE > 0, got {eps}; e.g. eps=(5/255)**2"
            )
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha: must be a finite prior weight > 0, got {alpha}")
        if not callable(denoiser):
            raise ValueError(f"denoiser: expected a callable D(x, sigma), got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.eps = eps
        self.alpha = alpha
        self.sigma = math.sqrt(eps)
        rng = getattr(denoiser, "sigma_range", None)
        if rng is not None and not getattr(denoiser, "blind", False):
            lo, hi = float(rng[0]), float(rng[1])
            if not (lo * (1 - 1e-6) <= self.sigma <= hi * (1 + 1e-6)):
                raise ValueError(
                    f"eps: sqrt(eps) = {self.sigma:.4g} is outside the denoiser's sigma_range "
                    f"[{lo:.4g}, {hi:.4g}] ({getattr(denoiser, 'name', 'denoiser')}); pick eps in "
                    f"[{lo**2:.3g}, {hi**2:.3g}] (eps is a variance)"
                )
        if lipschitz is None:
            lipschitz = getattr(denoiser, "lipschitz", None)
        if lipschitz is not None:
            lipschitz = float(lipschitz)
            if not (math.isfinite(lipschitz) and lipschitz >= 0):
                raise ValueError(f"lipschitz: must be a finite residual Lipschitz constant >= 0, got {lipschitz}")
        self.residual_lipschitz = lipschitz

    @property
    def lipschitz(self) -> float:
        """``α L / ε``: Lipschitz constant of :meth:`score` (``docs/algorithms.md §score-prior``)."""
        if self.residual_lipschitz is None:
            name = getattr(self.denoiser, "name", type(self.denoiser).__name__)
            raise ValueError(
                f"lipschitz: denoiser {name!r} has no known residual Lipschitz constant L, so no step rule "
                "holds for it; use a zoo sampling prior (lipdncnn_gray_s5, lipdncnn_rgb_s5: L <= 1 by "
                "construction), pass ScorePrior(..., lipschitz=L) (prior.lipschitz) with L measured by "
                "denoisers_zoo.lipschitz, or give an explicit step size"
            )
        return self.alpha * self.residual_lipschitz / self.eps

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """``D(x, √ε)`` on the batch, ``batch_chunk`` chains per call, in ``precision`` (no
        autograd graph); the dtype of ``x``."""
        chunk = batch_chunk_size(self.batch_chunk, x.shape)
        reduced = self.precision == "bfloat16"
        if reduced and x.dtype != torch.float32:
            raise ValueError(f"precision: bfloat16 applies to float32 chains (autocast leaves {x.dtype} as it is); "
                             "use dtype float32 or precision full")
        mode = torch.autocast(x.device.type, dtype=torch.bfloat16) if reduced else contextlib.nullcontext()
        with torch.no_grad(), mode:
            if chunk is None or x.shape[0] <= chunk:
                return self.denoiser(x, self.sigma).to(x.dtype)
            out = torch.empty_like(x)
            for start in range(0, x.shape[0], chunk):
                out[start:start + chunk] = self.denoiser(x[start:start + chunk], self.sigma)
            return out

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``α (D(x, √ε) − x)/ε``, shape of ``x``. One denoiser call."""
        d = self.denoise(x)
        # out of place: the denoiser output may alias its input or a cached buffer
        return (d - x).mul_(self.alpha / self.eps)

    def __repr__(self) -> str:
        name = getattr(self.denoiser, "name", type(self.denoiser).__name__)
        extra = "" if self.precision == "full" else f", precision={self.precision}"
        return f"ScorePrior({name}, eps={self.eps:.6g}, alpha={self.alpha:g}, L={self.residual_lipschitz}{extra})"
