"""Image-quality metrics against a known ground truth (images on the [0, 1] scale).

Both clamp the *estimate* to [0, 1] (the truth already lies there), so that a chain whose
mean leaves the image range is not rewarded for it; both use scikit-image's implementations.
"""
from __future__ import annotations

import torch

__all__ = ["psnr", "ssim"]


def _numpy(x: torch.Tensor, clamp: bool):
    x = x.detach().double().cpu()
    if clamp:
        x = x.clamp(0.0, 1.0)
    return x.reshape(-1, *x.shape[-2:]).numpy()  # [C, H, W]


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB with peak 1 of ``x`` (clamped to [0, 1]) against ``ref``; both ``[1, C, H, W]``."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _numpy(x, True), _numpy(ref, False)
    if (a == b).all():
        return float("inf")
    return float(peak_signal_noise_ratio(b, a, data_range=1.0))


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float:
    """SSIM (scikit-image defaults, data range 1, channels averaged) of ``x`` clamped to [0, 1]."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_numpy(x, True), _numpy(ref, False), data_range=1.0, channel_axis=0))
