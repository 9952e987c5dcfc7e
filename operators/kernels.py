"""Blur kernels (point-spread functions): uniform, Gaussian, seeded random motion, from file.

Kernels are float64 tensors ``[h, w]`` (same kernel for every channel) or ``[C, h, w]``
(one per channel), non-negative, summing to 1 (per channel). The origin of a kernel is
pixel ``(h // 2, w // 2)`` (see :mod:`operators.functional`).

Validation (:func:`check_kernel`), each a one-line error naming the argument:

* NaN/Inf entries, negative entries, empty/zero-sum, wrong ndim: ``ValueError``;
* sum != 1 (per channel, tolerance 1e-6): **normalised** to sum 1 with a ``UserWarning``
  (kernels read from 8-bit/16-bit image files are normalised silently: such a file cannot
  hold a sum-1 kernel);
* even height or width: accepted with a ``UserWarning`` — the origin ``(h//2, w//2)`` lies
  half a pixel off the geometric centre, so the blurred image is shifted by half a pixel
  (in every boundary mode); pad the kernel with a zero row/column to an odd size to avoid it.
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
import torch

__all__ = [
    "uniform_kernel",
    "gaussian_kernel",
    "motion_kernel",
    "load_kernel",
    "check_kernel",
]


def _check_size(size, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{name}: kernel size must be a positive int, got {size!r}")
    return int(size)


def uniform_kernel(size: int) -> torch.Tensor:
    """Box blur: ``k = 1/size² `` on a ``size × size`` support (float64 ``[size, size]``)."""
    size = _check_size(size)
    return torch.full((size, size), 1.0 / size**2, dtype=torch.float64)


def gaussian_kernel(size: int, std: float) -> torch.Tensor:
    r"""Isotropic Gaussian ``k[m,n] ∝ exp(-((m-c)² + (n-c)²) / (2 std²))``, ``c = size // 2``,
    normalised to sum 1 (float64 ``[size, size]``); ``std`` in pixels."""
    size = _check_size(size)
    std = float(std)
    if not math.isfinite(std) or std <= 0:
        raise ValueError(f"std: Gaussian kernel std must be finite and > 0 (pixels), got {std!r}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r**2) / (2.0 * std**2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def motion_kernel(
    size: int,
    *,
    generator: torch.Generator,
    length: float | None = None,
    curvature: float = 1.0,
    n_steps: int | None = None,
) -> torch.Tensor:
    r"""Random camera-shake kernel from a seeded random trajectory.

    A point moves ``n_steps`` (default ``4·size``) steps of equal length
    ``length / n_steps`` (default ``length = size - 1`` pixels). Its heading starts uniform in
    ``[0, 2π)`` and performs a Gaussian random walk with per-step std
    ``curvature / sqrt(n_steps)`` (so the total heading drift has std ``curvature`` rad;
    ``curvature = 0``: straight linear motion). The trajectory is centred on its bounding box,
    shrunk if it does not fit in ``size - 1`` pixels, and rasterised with bilinear weights
    around the origin ``(size//2, size//2)``; the kernel is normalised to sum 1.

    All randomness comes from ``generator`` (same seed -> same kernel). Written here rather than
    with ``deepinv.physics.generator.MotionBlurGenerator`` to keep the trajectory model
    explicit, torch-only and seedable by a plain ``torch.Generator``.

    >>> k = motion_kernel(9, generator=torch.Generator().manual_seed(0))
    >>> tuple(k.shape), round(float(k.sum()), 6)
    ((9, 9), 1.0)
    """
    size = _check_size(size)
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator: pass a torch.Generator, e.g. torch.Generator().manual_seed(0)")
    if n_steps is None:
        n_steps = 4 * size
    n_steps = _check_size(n_steps, "n_steps")
    length = float(size - 1 if length is None else length)
    if not math.isfinite(length) or length < 0:
        raise ValueError(f"length: motion length must be finite and >= 0 pixels, got {length!r}")
    curvature = float(curvature)
    if not math.isfinite(curvature) or curvature < 0:
        raise ValueError(f"curvature: must be finite and >= 0 (radians), got {curvature!r}")

    theta0 = 2.0 * math.pi * torch.rand((), generator=generator, dtype=torch.float64)
    dtheta = torch.randn(n_steps, generator=generator, dtype=torch.float64)
    theta = theta0 + torch.cumsum(dtheta * curvature / math.sqrt(n_steps), 0)
    step = length / n_steps
    pts = torch.cat(
        [torch.zeros(1, 2, dtype=torch.float64),
         torch.cumsum(torch.stack([torch.sin(theta), torch.cos(theta)], 1) * step, 0)]
    )  # (row, col) positions, n_steps + 1
    pts = pts - (pts.max(0).values + pts.min(0).values) / 2
    extent = float((pts.max(0).values - pts.min(0).values).max())
    if extent > size - 1:
        pts = pts * ((size - 1) / extent)
    pts = pts + size // 2 - (0.5 if size % 2 == 0 else 0.0)
    pts = pts.clamp(0.0, size - 1.0)

    k = torch.zeros(size, size, dtype=torch.float64)
    base = torch.floor(pts).long().clamp(max=max(size - 2, 0))
    frac = pts - base
    for dr in (0, 1):
        for dc in (0, 1):
            w = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
            r = (base[:, 0] + dr).clamp(max=size - 1)
            c = (base[:, 1] + dc).clamp(max=size - 1)
            k.index_put_((r, c), w, accumulate=True)
    return k / k.sum()


def check_kernel(k, name: str = "kernel", *, normalise_silently: bool = False) -> torch.Tensor:
    """Validate a kernel and return it as a float64 tensor ``[h, w]`` or ``[C, h, w]``.

    See the module docstring for the rules (errors on NaN/Inf, negatives, zero sum, bad ndim;
    ``UserWarning`` + normalisation when the sum is not 1; ``UserWarning`` for even sizes).
    """
    if isinstance(k, np.ndarray):
        if not np.issubdtype(k.dtype, np.number) or np.iscomplexobj(k):
            raise ValueError(f"{name}: kernel must be a real numeric array, got dtype {k.dtype}")
        k = torch.from_numpy(np.array(k, dtype=np.float64))
    elif isinstance(k, torch.Tensor):
        if k.is_complex():
            raise ValueError(f"{name}: kernel must be real, got dtype {k.dtype}")
        k = k.detach().to("cpu", torch.float64)
    else:
        raise ValueError(
            f"{name}: expected a [h, w] or [C, h, w] tensor/array or a file path, got {type(k).__name__}"
        )
    if k.ndim == 4 and k.shape[0] == 1:
        k = k[0]
    if k.ndim == 3 and k.shape[0] == 1:
        k = k[0]
    if k.ndim not in (2, 3) or k.numel() == 0:
        raise ValueError(
            f"{name}: kernel must have shape [h, w] or [C, h, w], got {tuple(k.shape)}"
        )
    bad = int((~torch.isfinite(k)).sum())
    if bad:
        raise ValueError(f"{name}: kernel has {bad} NaN/Inf entries; pass a finite array")
    neg = int((k < 0).sum())
    if neg:
        raise ValueError(
            f"{name}: kernel has {neg} negative entries; a blur kernel must be >= 0 "
            "(e.g. k = k.clip(0) then normalise)"
        )
    sums = k.sum(dim=(-2, -1))
    if torch.any(sums <= 0):
        raise ValueError(f"{name}: kernel sums to 0; pass a kernel with positive mass")
    if torch.any((sums - 1).abs() > 1e-6):
        if not normalise_silently:
            warnings.warn(
                f"{name}: kernel sums to {sums.flatten().tolist()} instead of 1; normalised "
                "to sum 1 (divide it by its sum yourself to silence this)",
                UserWarning,
                stacklevel=3,
            )
    k = k / sums[..., None, None]
    h, w = k.shape[-2:]
    if h % 2 == 0 or w % 2 == 0:
        warnings.warn(
            f"{name}: kernel size {h}x{w} is even; its origin is pixel ({h // 2}, {w // 2}), "
            "half a pixel off centre, so the blur shifts the image by half a pixel; "
            "pad it to an odd size to avoid this",
            UserWarning,
            stacklevel=3,
        )
    return k.contiguous()


def load_kernel(path_or_array, name: str = "kernel") -> torch.Tensor:
    """A kernel from a ``.npy`` file, an image file (PNG/TIFF/JPEG, gray or per-channel RGB;
    normalised to sum 1 without warning), or a tensor/array; validated by :func:`check_kernel`.
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        from operators._io import read_raw

        arr = read_raw(path_or_array, name)
        is_image = os.path.splitext(os.fspath(path_or_array))[1].lower() != ".npy"
        if is_image:
            if arr.ndim == 3:  # [H, W, C] -> [C, H, W]; drop alpha; identical channels -> gray
                arr = np.moveaxis(arr[..., :3], -1, 0)
                if np.all(arr == arr[:1]):
                    arr = arr[0]
            arr = arr.astype(np.float64)
        return check_kernel(arr, name, normalise_silently=is_image)
    return check_kernel(path_or_array, name)
