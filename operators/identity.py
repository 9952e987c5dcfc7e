"""Identity operator (denoising) and composition of operators."""
from __future__ import annotations

import torch

from operators.base import LinearOperator

__all__ = ["Identity", "Composition"]


class Identity(LinearOperator):
    """``A x = x`` (denoising); ``A^T = I``, ``||A||^2 = 1``.

    >>> Identity().A(torch.ones(1, 1, 2, 2)).sum().item()
    4.0
    """

    name = "identity"
    channels = None

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return x

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return y

    def norm_squared(self, shape, **kwargs) -> float:
        """``||I||^2 = 1`` exactly; kwargs ignored."""
        return 1.0

    has_exact_prox = True

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
        return (z + gamma * y) / (1.0 + gamma)

    def gram_spectrum(self, shape):
        """``A^T A = I``: every eigenvalue is 1 (pixel basis)."""
        from operators.spectral import GramSpectrum

        H, W = tuple(shape)[-2:]
        return GramSpectrum(torch.ones(1, 1, 1, dtype=torch.float64), "pixel", (int(H), int(W)))

    def __repr__(self) -> str:
        return "Identity()"


class Composition(LinearOperator):
    """``A = second ∘ first`` (e.g. blur then mask): ``A x = second(first(x))``,
    ``A^T y = first^T(second^T(y))``.
    """

    name = "composition"

    def __init__(self, first: LinearOperator, second: LinearOperator):
        for arg, op in (("first", first), ("second", second)):
            if not isinstance(op, LinearOperator):
                raise ValueError(f"{arg}: expected a LinearOperator, got {type(op).__name__}")
        c1, c2 = first.channels, second.channels
        if c1 is not None and c2 is not None and c1 != c2:
            raise ValueError(
                f"second: operator expects {c2} channels but first expects {c1}; "
                "build both for the same number of channels"
            )
        self.first = first
        self.second = second
        self.channels = c1 if c1 is not None else c2

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self.second.A(self.first.A(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self.first.A_adjoint(self.second.A_adjoint(y))

    @property
    def observed_mask(self):
        """The mask of the last factor (blur then mask: the mask), or None."""
        return self.second.observed_mask

    def __repr__(self) -> str:
        return f"Composition({self.first!r}, {self.second!r})"
