"""Functions of ``A^T A`` for operators that diagonalise it in a known orthogonal basis.

For circular blur ``A^T A`` is diagonal in the 2-D Fourier basis with eigenvalues
``|k̂(ω)|²``; for inpainting it is diagonal in the pixel basis with eigenvalues ``m_i²``; for
the identity every eigenvalue is 1. A :class:`GramSpectrum` holds those eigenvalues (in float64)
and applies ``f(A^T A) x`` for any multiplier ``f(eigenvalues)``: the exact data flows of the
likelihood-exact samplers (``docs/algorithms.md §likelihood-exact``) and the exact data prox
are functions of this kind.

``apply`` keeps real images real: the Fourier multipliers of a real kernel's ``|k̂|²`` are
real and even, so ``irfft2(m · rfft2(x))`` is the symmetric matrix ``f(A^T A)`` applied to x.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GramSpectrum"]


@dataclass(frozen=True, eq=False)
class GramSpectrum:
    """Eigenvalues of ``A^T A`` in its diagonalising basis and the basis change.

    ``eigenvalues``: float64 tensor broadcastable against the transformed image —
    ``[C|1, H, W//2+1]`` in the ``rfft2`` domain (``basis="fourier"``) or ``[C|1, H, W]`` /
    ``[1, 1, 1]`` in the pixel domain (``basis="pixel"``). ``image_size``: ``(H, W)``.
    """

    eigenvalues: torch.Tensor
    basis: str
    image_size: tuple[int, int]

    def __post_init__(self):
        if self.basis not in ("fourier", "pixel"):
            raise ValueError(f"basis: must be 'fourier' or 'pixel', got {self.basis!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coefficients of ``x`` ``[B, C, H, W]`` in the diagonalising basis."""
        return torch.fft.rfft2(x) if self.basis == "fourier" else x

    def inverse(self, c: torch.Tensor) -> torch.Tensor:
        """Image from coefficients (the inverse of :meth:`forward`)."""
        return torch.fft.irfft2(c, s=self.image_size) if self.basis == "fourier" else c

    def apply(self, x: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        """``f(A^T A) x`` for ``multiplier = f(eigenvalues)`` (cast to x's dtype and device)."""
        m = multiplier.to(device=x.device, dtype=x.real.dtype if x.is_complex() else x.dtype)
        return self.inverse(self.forward(x) * m)

    def combine(self, pairs) -> torch.Tensor:
        """``Σ_i f_i(A^T A) x_i`` for ``pairs = [(x_i, multiplier_i), ...]`` with one inverse
        transform (a step that filters the drift and the noise differently)."""
        total = None
        for x, m in pairs:
            term = self.forward(x) * m.to(device=x.device, dtype=x.dtype)
            total = term if total is None else total.add_(term)
        return self.inverse(total)
