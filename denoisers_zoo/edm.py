r"""A denoiser for the whole noise range of a diffusion model: EDM preconditioning around a U-Net.

Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models"
(NeurIPS 2022), Table 1 and eq. (7): with ``σ_d`` the data standard deviation,

    D(y, σ) = c_skip(σ) y + c_out(σ) F(c_in(σ) y, c_noise(σ)),
    c_skip = σ_d² / (σ² + σ_d²),  c_out = σ σ_d / √(σ² + σ_d²),  c_in = 1 / √(σ² + σ_d²),
    c_noise = ln(σ) / 4,

trained with the loss weight ``λ(σ) = 1 / c_out(σ)²`` (eq. (8)), so that the network target
``(x − c_skip y) / c_out`` has unit variance at every σ. The skip connection makes the small-σ end
exact to first order (``D → y``) and the large-σ end tends to the data mean (``c_skip → 0``,
``c_in y → unit noise``), which is what lets one network serve σ from ~0.002 to ~100.

Conventions here (deviations from the paper, stated): images on the [0, 1] scale are centred at
0.5 before the preconditioning (``y ↦ y − 0.5``, output ``+ 0.5``), and ``σ_d = 0.25`` (the
paper's 0.5 on its [−1, 1] scale); ``F`` is deepinv's DRUNet (``nb`` residual blocks per scale),
whose noise-level input channel receives ``c_noise`` instead of the paper's Fourier embedding;
σ is on the [0, 1] scale (half the [−1, 1] value).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["EDMDRUNet", "edm_coefficients", "edm_loss_weight", "SIGMA_DATA"]

#: data std on the [0, 1] scale (EDM's σ_data = 0.5 on [-1, 1])
SIGMA_DATA = 0.25


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA):
    """``(c_skip, c_out, c_in, c_noise)`` of Karras et al. 2022, Table 1, for a ``[B]`` σ tensor."""
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    root = torch.sqrt(s2 + d2)
    return d2 / (s2 + d2), sigma * sigma_data / root, 1.0 / root, torch.log(sigma.clamp_min(1e-12)) / 4.0


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """``λ(σ) = 1 / c_out(σ)² = (σ² + σ_d²) / (σ σ_d)²`` (Karras et al. 2022, eq. (8) with Table 1)."""
    return (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data).pow(2).clamp_min(1e-24)


class EDMDRUNet(nn.Module):
    """``forward(x, s) = 0.5 + c_skip u + c_out F(c_in u, c_noise)`` with ``u = x − 0.5`` (module docstring).

    ``F`` is deepinv's DRUNet (input: the scaled image plus one channel filled with ``c_noise``).
    """

    multiple = 8

    def __init__(self, channels: int, nc=(16, 32, 64, 128), nb: int = 1, sigma_data: float = SIGMA_DATA):
        super().__init__()
        from deepinv.models import DRUNet

        if not sigma_data > 0:
            raise ValueError(f"arch.sigma_data: must be > 0 (data std on the [0,1] scale, e.g. 0.25), got {sigma_data}")
        self.sigma_data = float(sigma_data)
        self.drunet = DRUNet(in_channels=channels, out_channels=channels, nc=tuple(nc), nb=int(nb), pretrained=None)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        s = s.to(x.dtype).clamp_min(1e-6)
        c_skip, c_out, c_in, c_noise = (c.view(b, 1, 1, 1) for c in edm_coefficients(s, self.sigma_data))
        u = x - 0.5
        z = torch.cat((c_in * u, c_noise.expand(b, 1, h, w)), 1)
        if z.device.type == "cpu":  # oneDNN NHWC kernels (see nets.DRUNetNet)
            f = self.drunet.forward_unet(z.contiguous(memory_format=torch.channels_last)).contiguous()
        else:
            f = self.drunet.forward_unet(z)
        return 0.5 + c_skip * u + c_out * f

