"""Noise models ``p(y | z)`` with ``z = A x``: Gaussian, Poisson, Poisson–Gaussian.

Every model exposes the same methods (see ``docs/CONTRACT.md``):

* ``sample(z, *, generator) -> y``
* ``nll(y, z) -> [B]``: negative log-likelihood summed over pixels, constants independent of
  ``z`` dropped;
* ``grad_z(y, z)``: ``∂ nll / ∂ z`` (pixel-wise);
* ``grad(x, y, operator) = A^T grad_z(y, A x)``: gradient of ``x -> nll(y, A x)``;
* ``lipschitz_z(y=None)``: Lipschitz constant of ``z -> grad_z(y, z)``;
* ``lipschitz(operator, shape, *, y=None, generator=None) = ||A||^2 · lipschitz_z(y)``.

``y`` may have batch size 1 while ``z`` (or ``x``) has batch size ``B`` (one per MCMC chain):
the pixel-wise formulas broadcast and ``nll`` returns ``[B]``.

Scale: images on ``[0, 1]``; ``sigma`` is a standard deviation on that scale; ``gain`` is the
intensity of one photon on that scale (``y = gain · Poisson(z / gain)``, so ``E[y] = z`` and
``Var[y] = gain · z``; small gain = many photons = little noise).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["NoiseModel", "GaussianNoise", "PoissonNoise", "PoissonGaussianNoise"]


def _positive_float(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}; pass e.g. {name}=0.01")
    return v


def _randn(z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal of ``z``'s shape drawn from ``generator`` (on the generator's device)."""
    n = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=generator.device)
    return n.to(z.device)


def _check_generator(generator) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            "generator: pass an explicit torch.Generator, e.g. torch.Generator().manual_seed(0)"
        )
    return generator


def _sum_pixels(t: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch dimension -> ``[B]``."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


class NoiseModel:
    """Base class; subclasses implement ``sample``, ``nll``, ``grad_z`` and ``lipschitz_z``."""

    name: str = "noise"
    #: the data term ``||A x - y||^2 / (2 sigma^2)`` has an exact prox for operators with
    #: ``has_exact_prox`` (only Gaussian noise says yes)
    quadratic_data_term: bool = False

    def sample(self, z: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def misfit(self, y: torch.Tensor, z: torch.Tensor) -> float | None:
        """Reduced chi-square of the residual ``y - z`` (about 1 at the truth), or None when the
        model has no such statistic."""
        return None

    def nll(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def grad_z(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def lipschitz_z(self, y: torch.Tensor | None = None) -> float:
        raise NotImplementedError

    def grad(self, x: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:
        """``∇_x nll(y, A x) = A^T grad_z(y, A x)``; shape of ``x``."""
        return operator.A_adjoint(self.grad_z(y, operator.A(x)))

    def lipschitz(
        self,
        operator,
        shape: Sequence[int],
        *,
        y: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        n_iter: int = 100,
    ) -> float:
        """Lipschitz constant of ``x -> grad(x, y, A)``: ``||A||_2^2 · lipschitz_z(y)``.

        ``||A||_2^2`` is computed by power iteration on ``A^T A`` (seeded ``generator``; seed 0
        if ``None``) on images of ``shape`` (use batch 1).
        """
        lz = self.lipschitz_z(y)
        return operator.norm_squared(shape, n_iter=n_iter, generator=generator) * lz


class GaussianNoise(NoiseModel):
    r"""Additive white Gaussian noise ``y = z + σ n``, ``n ~ N(0, I)``.

    .. math:: \mathrm{nll}(y, z) = \sum_i (y_i - z_i)^2 / (2σ^2), \quad
              \nabla_z = (z - y)/σ^2, \quad L_z = 1/σ^2,

    so the data term of ``x`` has Lipschitz constant ``L_y = ||A||^2 / σ^2``.

    >>> noise = GaussianNoise(0.1)
    >>> noise.lipschitz_z()
    99.99999999999999
    """

    name = "gaussian"
    quadratic_data_term = True

    def __init__(self, sigma: float):
        self.sigma = _positive_float(sigma, "sigma")

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma})"

    def sample(self, z: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        _check_generator(generator)
        return z + self.sigma * _randn(z, generator)

    def nll(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return _sum_pixels((z - y) ** 2) / (2.0 * self.sigma**2)

    def grad_z(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (z - y) / self.sigma**2

    def lipschitz_z(self, y: torch.Tensor | None = None) -> float:
        return 1.0 / self.sigma**2

    def misfit(self, y: torch.Tensor, z: torch.Tensor) -> float:
        """``||z - y||^2 / (m sigma^2)`` (mean over the batch): chi^2_m / m at the truth, so 1 ± sqrt(2/m)."""
        return float(((z - y) ** 2).mean()) / self.sigma**2


class PoissonNoise(NoiseModel):
    r"""Poisson (shot) noise ``y = gain · Poisson(z / gain)``; ``E[y] = z``, ``Var[y] = gain·z``.

    Exact negative log-likelihood (in counts ``n = y/gain``, rate ``λ = z/gain``, constants
    dropped): ``φ(z) = (z - y log z) / gain`` per pixel. ``φ`` blows up at ``z -> 0`` and
    is undefined for ``z <= 0``, so its gradient is not Lipschitz. **Guard (quadratic
    extension):** with a threshold ``t > 0`` (``threshold``, default ``1e-2`` on the [0,1]
    scale), each pixel uses

    .. math::
        φ_t(z) = φ(z)  \text{ if } z ≥ t, \qquad
        φ_t(z) = φ(t) + φ'(t)(z - t) + \tfrac12 φ''(t)(z - t)^2  \text{ if } z < t,

    with ``φ'(z) = (1 - y/z)/gain`` and ``φ''(z) = y/(gain z^2)``. ``φ_t`` is convex, C¹,
    equal to the exact NLL wherever ``A x ≥ t``, and defined for every real ``z`` (chains
    may leave [0, 1]). Its curvature is ``y_i/(gain·max(z,t)^2) ≤ y_i/(gain t^2)``, hence

    .. math:: L_z = \max_i y_i / (\mathrm{gain}\; t^2)

    (``lipschitz_z`` therefore needs ``y``). Pixels with ``y_i <= 0`` are linear
    (``φ = z/gain``). Sampling clamps negative rates to 0.
    """

    name = "poisson"

    def __init__(self, gain: float, *, threshold: float = 1e-2):
        self.gain = _positive_float(gain, "gain")
        self.threshold = _positive_float(threshold, "threshold")

    def __repr__(self) -> str:
        return f"PoissonNoise(gain={self.gain}, threshold={self.threshold})"

    # shifted problem: Poisson-Gaussian reuses these with (y + s, z + s)
    def _shift(self) -> float:
        return 0.0

    def _counts(self, y: torch.Tensor) -> torch.Tensor:
        return torch.clamp(y + self._shift(), min=0.0)

    def sample(self, z: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        _check_generator(generator)
        rates = (torch.clamp(z, min=0.0) / self.gain).to(generator.device)
        counts = torch.poisson(rates, generator=generator)
        return (self.gain * counts).to(device=z.device, dtype=z.dtype)

    def nll(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        yy = self._counts(y)
        u = z + self._shift()
        t = self.threshold
        uc = torch.clamp(u, min=t)
        exact = uc - yy * torch.log(uc)
        d = torch.clamp(u - t, max=0.0)  # (u - t) below the threshold, 0 above
        # φ(t) + φ'(t) d + ½ φ''(t) d²  (with d = 0 above t this reduces to φ(u))
        ext = (1.0 - yy / t) * d + 0.5 * (yy / t**2) * d**2
        return _sum_pixels(exact + ext) / self.gain

    def grad_z(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        yy = self._counts(y)
        u = z + self._shift()
        t = self.threshold
        above = (1.0 - yy / torch.clamp(u, min=t)) / self.gain
        below = (1.0 - yy / t + (yy / t**2) * (u - t)) / self.gain
        return torch.where(u >= t, above, below)

    def lipschitz_z(self, y: torch.Tensor | None = None) -> float:
        if y is None:
            raise ValueError(
                f"y: {type(self).__name__}.lipschitz_z depends on the observation; pass y=..."
            )
        ymax = float(self._counts(y).max())
        return max(ymax, 0.0) / (self.gain * self.threshold**2)


class PoissonGaussianNoise(PoissonNoise):
    r"""Poisson–Gaussian noise ``y = gain · Poisson(z / gain) + σ n``, ``n ~ N(0, I)``.

    ``E[y] = z``, ``Var[y] = gain·z + σ^2``. The exact likelihood is an infinite mixture; we
    use the **shifted-Poisson approximation** (matches the first two moments): with
    ``s = σ^2 / gain``, ``(y + s)/gain`` is treated as ``Poisson((z + s)/gain)``, i.e. the
    :class:`PoissonNoise` NLL applied to ``u = z + s`` and ``y + s`` clamped at 0:

    .. math:: φ(z) = \big((z + s) - (y + s)^+ \log(z + s)\big) / \mathrm{gain},

    with the same quadratic extension below ``u < t`` (``threshold``), so
    ``L_z = \max_i (y_i + s)^+ / (\mathrm{gain}\, t^2)``. Sampling is exact.
    """

    name = "poisson_gaussian"

    def __init__(self, gain: float, sigma: float, *, threshold: float = 1e-2):
        super().__init__(gain, threshold=threshold)
        self.sigma = _positive_float(sigma, "sigma")

    def __repr__(self) -> str:
        return (
            f"PoissonGaussianNoise(gain={self.gain}, sigma={self.sigma}, "
            f"threshold={self.threshold})"
        )

    def _shift(self) -> float:
        return self.sigma**2 / self.gain

    def sample(self, z: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        y = super().sample(z, generator=generator)
        return y + self.sigma * _randn(z, generator)
