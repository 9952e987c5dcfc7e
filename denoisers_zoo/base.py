"""The one denoiser interface shared by the zoo, the samplers and the diffusion backend."""
from __future__ import annotations

import torch

__all__ = ["Denoiser", "as_sigma_tensor"]


def as_sigma_tensor(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``sigma`` as a ``[B]`` tensor on ``x``'s device/dtype (float or [B] accepted)."""
    batch = x.shape[0]
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(batch)
    s = s.reshape(-1)
    if s.shape[0] != batch:
        raise ValueError(
            f"sigma has {s.shape[0]} entries but x has batch size {batch}; pass a float or a [B] tensor"
        )
    if torch.any(s < 0) or not torch.all(torch.isfinite(s)):
        raise ValueError("sigma must be finite and >= 0 (noise std on the [0,1] scale)")
    return s


class Denoiser(torch.nn.Module):
    """``D(x, sigma)``: x a ``[B, C, H, W]`` tensor in [0, 1], sigma a float or ``[B]`` tensor
    (Gaussian noise std on the [0, 1] scale). Returns a tensor of x's shape.

    Attributes: ``name``, ``channels`` (None: any), ``sigma_range`` (min, max) on the [0,1]
    scale, ``blind`` (True if sigma is ignored), ``lipschitz`` (measured Lipschitz constant of
    the residual ``x - D(x)``, or None when unknown).
    """

    name: str = "denoiser"
    channels: int | None = None
    sigma_range: tuple[float, float] = (0.0, float("inf"))
    blind: bool = False
    lipschitz: float | None = None

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError
