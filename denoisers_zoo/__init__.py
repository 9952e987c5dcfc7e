"""Denoisers used as priors: trained networks, exact closed-form denoisers, BM3D."""
from denoisers_zoo.base import Denoiser, as_sigma_tensor

__all__ = ["Denoiser", "as_sigma_tensor"]
