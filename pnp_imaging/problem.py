"""``Problem``: a forward operator, a noise model and an observation ``y``.

The data term is ``f_y(x) = -log p(y | x) = noise.nll(y, A x)`` (z-independent constants
dropped); ``data_grad`` is ``∇_x f_y`` and ``data_lipschitz`` its Lipschitz constant
``L_y = ||A||^2 · L_z`` (``= ||A||^2/σ^2`` for Gaussian noise). No sampling, MAP or plotting
lives here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from operators.base import LinearOperator
from operators.noise import NoiseModel

__all__ = ["Problem", "check_image_range"]

# seed of the power iteration behind ``data_lipschitz`` (deterministic, documented)
_LIPSCHITZ_SEED = 0


def _check_finite(t: torch.Tensor, name: str) -> None:
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(f"{name}: has {bad} NaN/Inf entries; pass a finite tensor")


def check_image_range(x: torch.Tensor, name: str = "x_true") -> None:
    """Warn (``UserWarning``) if ``x`` is outside ``[0, 1]``; say how to rescale."""
    from pnp_imaging.imageio import warn_outside_unit_range

    warn_outside_unit_range(x, name, stacklevel=3)


@dataclass(frozen=True, eq=False)
class Problem:
    """An imaging inverse problem ``y ~ p(y | A x)``.

    Attributes:
        operator: the linear forward model ``A``.
        noise: the noise model ``p(y | z)``.
        y: observation ``[1, C, H, W]`` (finite).
        x_true: ground truth ``[1, C, H, W]`` in [0, 1] if known (for evaluation only).
        x_shape: shape of one image ``x`` (batch 1); defaults to ``x_true.shape`` or
            ``y.shape`` (all shipped operators preserve the shape).

    ``data_nll(x)`` / ``data_grad(x)`` accept a batch of chains ``x`` of shape ``[B, C, H, W]``
    against ``y`` of batch 1.
    """

    operator: LinearOperator
    noise: NoiseModel
    y: torch.Tensor
    x_true: torch.Tensor | None = None
    x_shape: tuple[int, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        for name, obj, needs in (("operator", self.operator, ("A", "A_adjoint")),
                                 ("noise", self.noise, ("nll", "grad", "lipschitz"))):
            missing = [m for m in needs if not callable(getattr(obj, m, None))]
            if missing:
                raise ValueError(f"{name}: {type(obj).__name__} lacks {', '.join(missing)}; "
                                 f"use an operators.{'LinearOperator' if name == 'operator' else 'noise.NoiseModel'}")
        if not isinstance(self.y, torch.Tensor) or self.y.ndim != 4:
            raise ValueError("y: expected a [1, C, H, W] torch.Tensor; use read_image or unsqueeze")
        _check_finite(self.y, "y")
        if self.x_true is not None:
            if not isinstance(self.x_true, torch.Tensor) or self.x_true.ndim != 4:
                raise ValueError("x_true: expected a [1, C, H, W] torch.Tensor")
            _check_finite(self.x_true, "x_true")
            check_image_range(self.x_true, "x_true")
        if self.x_shape is None:
            ref = self.x_true if self.x_true is not None else self.y
            object.__setattr__(self, "x_shape", (1,) + tuple(ref.shape[1:]))
        else:
            object.__setattr__(self, "x_shape", tuple(int(s) for s in self.x_shape))
        ch = getattr(self.operator, "channels", None)
        if ch is not None and self.x_shape[1] != ch:
            raise ValueError(
                f"operator: expects {ch} channels but the image has {self.x_shape[1]}; "
                "build the kernel/mask with matching channels (or read the image with channels=...)"
            )

    # ------------------------------------------------------------------ data term
    def data_nll(self, x: torch.Tensor) -> torch.Tensor:
        """``-log p(y | x)`` up to a constant, one value per chain: ``[B]``."""
        return self.noise.nll(self.y, self.operator.A(x))

    def data_grad(self, x: torch.Tensor) -> torch.Tensor:
        """``∇_x -log p(y | x) = A^T ∇_z nll(y, A x)``; shape of ``x`` (``[B, C, H, W]``)."""
        return self.noise.grad(x, self.y, self.operator)

    @property
    def has_data_prox(self) -> bool:
        """True when ``prox_{t f_y}`` is exact and cheap: Gaussian noise and an operator whose
        ``A^T A`` is diagonal (inpainting, circular blur, identity)."""
        return bool(getattr(self.noise, "quadratic_data_term", False)) and bool(getattr(self.operator, "has_exact_prox", False))

    def data_prox(self, v: torch.Tensor, t: float) -> torch.Tensor:
        """``prox_{t f_y}(v) = argmin_x t ||A x - y||^2 / (2 sigma^2) + ||x - v||^2 / 2`` for
        Gaussian noise: ``operator.prox_l2(v, y, t / sigma^2)``. Requires :attr:`has_data_prox`."""
        if not self.has_data_prox:
            raise ValueError(
                f"data_prox: needs Gaussian noise and an operator with an exact prox (inpainting, circular blur, "
                f"identity); got {type(self.noise).__name__} with {type(self.operator).__name__}. Use map.splitting: gradient"
            )
        return self.operator.prox_l2(v, self.y, t / self.noise.sigma**2)

    def data_precision_spectrum(self):
        """``(spectrum, h)`` for the quadratic data term ``f_y(x) = ||A x − y||²/(2σ²)``: the
        :class:`operators.spectral.GramSpectrum` diagonalising ``H = A^T A/σ²`` and its
        eigenvalues ``h ≥ 0`` (float64). Requires :attr:`has_data_prox`."""
        if not self.has_data_prox:
            raise ValueError(
                f"data term: has no exact diagonalisation (needs Gaussian noise and circular blur, inpainting or "
                f"identity; got {type(self.noise).__name__} with {self.operator!r}); use sampler type skrock or pnp-ula"
            )
        spectrum = self.operator.gram_spectrum(self.x_shape)
        return spectrum, spectrum.eigenvalues / self.noise.sigma**2

    @cached_property
    def data_lipschitz(self) -> float:
        """``L_y = ||A||^2 · L_z(y)`` (cached). ``||A||^2`` by power iteration on ``A^T A``
        (float64, start seeded with 0, up to 500 iterations, relative tol 1e-6); power
        iteration approaches ``||A||^2`` from below."""
        gen = torch.Generator().manual_seed(_LIPSCHITZ_SEED)
        lip = self.noise.lipschitz(self.operator, self.x_shape, y=self.y, generator=gen, n_iter=500)
        if not math.isfinite(lip):
            raise ValueError(f"noise: Lipschitz constant is {lip}; check sigma/gain/threshold")
        return float(lip)

    def back_projection(self) -> torch.Tensor:
        """``A^T y`` clipped to ``[0, 1]`` (a cheap initial point), shape ``x_shape``."""
        return torch.clamp(self.operator.A_adjoint(self.y), 0.0, 1.0)

    def initial_guess(self) -> torch.Tensor:
        """Starting image for the MAP / the chains, shape ``x_shape``: for inpainting (alone or
        as the last factor of a composition) the observed pixels with the missing ones filled by
        normalised convolution (:func:`operators.inpainting.fill_missing`); otherwise the
        back-projection. A start of zeros in 80 % of the pixels is far outside the range of a
        denoiser trained at sigma = 5/255, which then barely fills the holes (measured, PnP-SGD
        200 iterations, stage-1 lipdncnn_gray_s5, 80 % missing, 128² cameraman crop: 10.1 dB from
        ``A^T y`` vs 24.7 dB from this start, whose own PSNR is 22.9 dB)."""
        from operators.inpainting import fill_missing

        mask = getattr(self.operator, "observed_mask", None)
        if mask is None:
            return self.back_projection()
        return torch.clamp(fill_missing(self.y, mask), 0.0, 1.0)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def simulate(
        cls,
        x_true: torch.Tensor,
        operator: LinearOperator,
        noise: NoiseModel,
        *,
        generator: torch.Generator,
    ) -> "Problem":
        """Simulate ``y = noise.sample(A x_true)`` and return the problem (with ``x_true``)."""
        if not isinstance(x_true, torch.Tensor) or x_true.ndim != 4 or x_true.shape[0] != 1:
            raise ValueError("x_true: expected a [1, C, H, W] torch.Tensor in [0, 1]")
        _check_finite(x_true, "x_true")
        check_image_range(x_true, "x_true")
        y = noise.sample(operator.A(x_true), generator=generator)
        return cls(operator=operator, noise=noise, y=y, x_true=x_true)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], *, generator: torch.Generator) -> "Problem":
        """Build a problem from a dict (validated by :func:`pnp_imaging.config.resolve_config`, or
        by the registry's builders).

        Keys:
            ``image``: path of the ground truth (optional if ``observation`` is given);
            ``channels``: 1 or 3 to convert the image on reading (optional);
            ``operator``: dict for :func:`operators.build_operator` (``type``: ``blur``,
            ``inpainting``, ``identity``, ``blur_inpainting``, or a list of dicts applied in
            order);
            ``noise``: dict for :func:`operators.build_noise` (``type``: ``gaussian``,
            ``poisson``, ``poisson_gaussian``);
            ``observation``: path of a measured ``y`` (.npy or image) instead of a simulated one.

        ``generator`` draws the noise (and random masks/kernels without their own ``seed``).

        >>> cfg = {"image": "data/cameraman.png",
        ...        "operator": {"type": "blur", "kernel": "uniform", "size": 9},
        ...        "noise": {"type": "gaussian", "sigma": 0.0039}}
        >>> Problem.from_config(cfg, generator=torch.Generator().manual_seed(0)).y.shape
        torch.Size([1, 1, 256, 256])
        """
        from operators.registry import build_noise, build_operator
        from pnp_imaging.imageio import read_image, read_observation

        channels = cfg.get("channels")
        x_true = read_image(cfg["image"], channels=channels) if cfg.get("image") else None
        obs = cfg.get("observation")
        y = read_observation(obs, channels=channels) if obs is not None else None
        shape = tuple((x_true if x_true is not None else y).shape)
        operator = build_operator(cfg["operator"], shape, generator=generator)
        noise = build_noise(cfg["noise"])
        if y is None:
            return cls.simulate(x_true, operator, noise, generator=generator)
        if x_true is not None and tuple(x_true.shape) != tuple(y.shape):
            raise ValueError(
                f"cfg.observation: shape {tuple(y.shape)} differs from image shape "
                f"{tuple(x_true.shape)}; use matching files"
            )
        return cls(operator=operator, noise=noise, y=y, x_true=x_true)
