"""The one denoiser interface shared by the zoo, the samplers and the diffusion backend."""
from __future__ import annotations

import torch

__all__ = ["Denoiser", "OffloadedDenoiser", "as_sigma_tensor"]


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


class OffloadedDenoiser(Denoiser):
    """``inner`` evaluated on another device (typically a GPU) for inputs that live elsewhere.

    The samplers keep the operators, the chain state and the streaming statistics on the CPU;
    only the network, which is where the time goes, runs on ``device``. Each call moves ``x``
    (and a tensor ``sigma``) to ``device`` and the result back to ``x``'s device and dtype:
    two copies of the image per call (~0.1 ms for 256x256 float32 over PCIe), against a
    network forward of milliseconds on the CPU. Autograd flows through the copies.
    """

    def __init__(self, inner: Denoiser, device: str | torch.device):
        super().__init__()
        self.device = torch.device(device)
        self.inner = inner.to(self.device)
        for attr in ("name", "channels", "sigma_range", "blind", "lipschitz"):
            setattr(self, attr, getattr(inner, attr, getattr(Denoiser, attr)))

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        s = sigma.to(self.device) if torch.is_tensor(sigma) else sigma
        return self.inner(x.to(self.device), s).to(device=x.device, dtype=x.dtype)
