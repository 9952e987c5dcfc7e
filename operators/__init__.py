"""Forward models (blur, inpainting, identity, composition) and noise models.

``import operators`` only imports torch and numpy; deepinv, PIL and tifffile are imported
inside the functions that use them.
"""
from operators.base import LinearOperator, adjoint_error, power_norm_squared
from operators.blur import Blur
from operators.identity import Composition, Identity
from operators.inpainting import Inpainting, box_mask, load_mask, random_mask
from operators.kernels import check_kernel, gaussian_kernel, load_kernel, motion_kernel, uniform_kernel
from operators.noise import GaussianNoise, NoiseModel, PoissonGaussianNoise, PoissonNoise
from operators.registry import NOISES, OPERATORS, build_noise, build_operator

__all__ = [
    "LinearOperator",
    "adjoint_error",
    "power_norm_squared",
    "Blur",
    "Identity",
    "Composition",
    "Inpainting",
    "random_mask",
    "box_mask",
    "load_mask",
    "uniform_kernel",
    "gaussian_kernel",
    "motion_kernel",
    "load_kernel",
    "check_kernel",
    "NoiseModel",
    "GaussianNoise",
    "PoissonNoise",
    "PoissonGaussianNoise",
    "OPERATORS",
    "NOISES",
    "build_operator",
    "build_noise",
]
