"""Plug-and-play score prior (Tweedie's formula).

For the MMSE denoiser ``D*_ε`` of ``p_ε = p * N(0, ε I)``, Tweedie's identity gives
``∇ log p_ε(x) = (D*_ε(x) − x)/ε``; a learned denoiser ``D_ε`` replaces ``D*_ε`` (Laumont et al.,
SIAM J. Imaging Sci. 15(2), 2022; ``docs/algorithms.md §score-prior``). **ε is the noise
variance**: the denoiser is called with its std ``√ε`` (deepinv's ``ScorePrior.grad(x, sigma)``
takes a std; passing ε there squares it again).
"""
from __future__ import annotations

import math

import torch

__all__ = ["ScorePrior"]


class ScorePrior:
    r"""``score(x) = α (D(x, √ε) − x) / ε``.

    Args:
        denoiser: a :class:`denoisers_zoo.base.Denoiser` (or any callable ``D(x, sigma)``),
            called once per evaluation on the whole batch ``[B, C, H, W]`` (B = chains), under
            ``torch.no_grad()``.
        eps: denoiser noise **variance** ε > 0 on the [0, 1] scale, e.g. ``(5/255)**2``.
        alpha: prior weight α > 0 (α = 1: plain Bayes; α < 1 weakens the prior).
        lipschitz: Lipschitz constant ``L`` of the denoiser residual ``x − D(x)``; defaults to
            ``denoiser.lipschitz`` (1 for RealSN-DnCNN by construction). ``None`` if unknown:
            then :attr:`lipschitz` raises, and automatic step sizes need an explicit value.

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

    def __init__(self, denoiser, eps: float, alpha: float = 1.0, *, lipschitz: float | None = None):
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
        """``D(x, √ε)`` on the whole batch (no autograd graph)."""
        with torch.no_grad():
            return self.denoiser(x, self.sigma)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``α (D(x, √ε) − x)/ε``, shape of ``x``. One denoiser call."""
        d = self.denoise(x)
        # out of place: the denoiser output may alias its input or a cached buffer
        return (d - x).mul_(self.alpha / self.eps)

    def __repr__(self) -> str:
        name = getattr(self.denoiser, "name", type(self.denoiser).__name__)
        return f"ScorePrior({name}, eps={self.eps:.6g}, alpha={self.alpha:g}, L={self.residual_lipschitz})"
