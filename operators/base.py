"""Linear operator base class, relative adjointness check and power-iteration norm.

Images are tensors of shape ``[B, C, H, W]``; operators act independently on each batch
element. Concrete operators wrap deepinv physics (see :mod:`operators.blur`,
:mod:`operators.inpainting`).
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["LinearOperator", "adjoint_error", "power_norm_squared"]


class LinearOperator:
    """A linear forward model ``A`` with its adjoint ``A^T``.

    Subclasses implement :meth:`A` and :meth:`A_adjoint`. ``channels`` is the number of image
    channels the operator accepts (``None``: any).
    """

    name: str = "linear"
    channels: int | None = None

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 (maths name)
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def AtA(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self.A_adjoint(self.A(x))

    #: True when :meth:`prox_l2` is exact and cheap (a diagonal or FFT-diagonal ``A^T A``).
    has_exact_prox: bool = False
    #: the mask of observed pixels when the last factor of ``A`` is a pixel mask (inpainting), else None
    observed_mask = None

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
        """``argmin_x (gamma/2)||A x - y||^2 + (1/2)||x - z||^2 = (I + gamma A^T A)^{-1}(z + gamma A^T y)``
        (deepinv's ``prox_l2`` convention). Only operators with ``has_exact_prox`` implement it."""
        raise NotImplementedError(
            f"{type(self).__name__}: no exact prox_l2 (A^T A is not diagonal in a known basis); "
            "use a gradient step instead (map.splitting: gradient)"
        )

    def gram_spectrum(self, shape: Sequence[int]):
        """The eigenvalues of ``A^T A`` and its diagonalising basis for images of ``shape``
        (``[..., C, H, W]``): an :class:`operators.spectral.GramSpectrum`. Only operators with
        ``has_exact_prox`` implement it."""
        raise NotImplementedError(
            f"{type(self).__name__}: A^T A is not diagonal in a known basis (no exact data flow); "
            "use circular blur, inpainting or identity, or a sampler with an explicit data step"
        )

    def norm_squared(
        self,
        shape: Sequence[int],
        *,
        n_iter: int = 100,
        tol: float = 1e-6,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> float:
        """Squared spectral norm ``||A||_2^2 = ||A^T A||_2`` by power iteration on ``A^T A``."""
        return power_norm_squared(
            self, shape, n_iter=n_iter, tol=tol, generator=generator, dtype=dtype, device=device
        )


def adjoint_error(op: LinearOperator, x: torch.Tensor, y: torch.Tensor) -> float:
    """Relative adjointness error ``|<Ax, y> - <x, A^T y>| / max(|<Ax,y>|, |<x,A^T y>|)``.

    As scico's ``valid_adjoint``; ``y`` must have the shape of ``op.A(x)``.
    """
    lhs = torch.sum(op.A(x) * y).item()
    rhs = torch.sum(x * op.A_adjoint(y)).item()
    scale = max(abs(lhs), abs(rhs), 1e-300)
    return abs(lhs - rhs) / scale


def power_norm_squared(
    op: LinearOperator,
    shape: Sequence[int],
    *,
    n_iter: int = 100,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> float:
    """Largest eigenvalue of ``A^T A`` by power iteration from a seeded random start.

    ``n_iter`` must be an int; iteration stops early once the Rayleigh quotient changes by
    less than ``tol`` (relative).
    """
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
    if generator is None:
        generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(tuple(shape), generator=generator, dtype=dtype).to(device)
    x = x / torch.linalg.vector_norm(x)
    value = 0.0
    for _ in range(n_iter):
        z = op.AtA(x)
        new_value = torch.sum(x * z).item()
        norm = torch.linalg.vector_norm(z)
        if norm == 0:
            return 0.0
        x = z / norm
        if abs(new_value - value) <= tol * abs(new_value):
            value = new_value
            break
        value = new_value
    return float(value)
