r"""The forward (noising) diffusion that defines DMMD's noise levels.

DMMD (Galashov, De Bortoli & Gretton, ICLR 2025, arXiv 2405.06780) trains its kernel on data
corrupted "by a forward diffusion process, as commonly used in denoising diffusion probabilistic
models" (abstract). The paper's exact schedule could not be read; **our choice** is the
continuous-time limit of the DDPM schedule used elsewhere in this package
(``β_i = linspace(1e-4, 2e-2, 1000)``, Ho et al. 2020), i.e. the VP-linear SDE of Song et al.
(2021) with ``β(t) = β_min + t (β_max − β_min)``, ``β_min = 0.1``, ``β_max = 20``, ``t ∈ [0, 1]``:

    ᾱ(t) = exp(−β_min t − ½ (β_max − β_min) t²),   x_t = √ᾱ(t) x_0 + √(1 − ᾱ(t)) ε,

on the [−1, 1] image scale (``x_0 = 2·image − 1``). ᾱ(1) ≈ 4.3e−5, so x_1 is N(0, I) to within
that factor: the flow's particles start from N(0, I).
"""
from __future__ import annotations

import torch

__all__ = ["BETA_MIN", "BETA_MAX", "alpha_bar", "forward_noise", "to_signed", "to_unit"]

BETA_MIN = 0.1
BETA_MAX = 20.0


def alpha_bar(t: torch.Tensor) -> torch.Tensor:
    """ᾱ(t) of the VP-linear schedule (module docstring), elementwise for ``t`` in [0, 1]."""
    t = torch.as_tensor(t, dtype=torch.float32)
    return torch.exp(-BETA_MIN * t - 0.5 * (BETA_MAX - BETA_MIN) * t * t)


def forward_noise(x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw of ``x_t = √ᾱ(t) x_0 + √(1 − ᾱ(t)) ε`` for a batch ``x0`` ``[B, D]`` and levels
    ``t`` (scalar or ``[B]``); ε from ``generator``."""
    a = alpha_bar(t).to(x0)
    a = a.reshape(-1, *([1] * (x0.ndim - 1))) if a.ndim else a
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """Images ``[n, 1, h, w]`` in [0, 1] → flat vectors ``[n, h·w]`` in [−1, 1] (the flow's scale)."""
    return (2 * images - 1).reshape(images.shape[0], -1)


def to_unit(z: torch.Tensor, side: int) -> torch.Tensor:
    """Flat particles ``[n, side²]`` on the [−1, 1] scale → images ``[n, side, side]`` clamped to [0, 1]."""
    return ((z.reshape(-1, side, side) + 1) / 2).clamp(0, 1)
