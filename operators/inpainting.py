"""Inpainting: ``A x = m ⊙ x`` with a binary mask ``m`` (1 = observed, 0 = missing).

``A`` is diagonal, so ``A^T = A`` and ``||A||^2 = 1`` (0 for an all-missing mask). Missing
pixels are kept as zeros in ``y`` (same shape as ``x``), as deepinv's ``Inpainting`` does. The
product is written directly instead of wrapping ``deepinv.physics.Inpainting`` because that
class stores the mask as a buffer of one dtype and would change the dtype of float32/float64
inputs; there is nothing else to reuse for an element-wise product.

Masks are ``[1, H, W]`` (shared by all channels) or ``[C, H, W]`` float64 tensors of 0/1.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from operators.base import LinearOperator

__all__ = ["Inpainting", "random_mask", "box_mask", "load_mask", "check_mask", "fill_missing"]


def _gaussian_blur(x: torch.Tensor, std: float) -> torch.Tensor:
    """Separable Gaussian filter (zero padding; the ratio in :func:`fill_missing` cancels it)."""
    r = int(3 * std + 0.5)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k / k.sum()
    b, c, h, w = x.shape
    z = x.reshape(b * c, 1, h, w)
    z = torch.nn.functional.conv2d(z, k.view(1, 1, 1, -1), padding=(0, r))
    z = torch.nn.functional.conv2d(z, k.view(1, 1, -1, 1), padding=(r, 0))
    return z.reshape(b, c, h, w)


def fill_missing(y: torch.Tensor, mask: torch.Tensor, *, scales: Sequence[float] = (1.0, 2.0, 4.0, 8.0, 16.0),
                 min_weight: float = 0.05) -> torch.Tensor:
    """A cheap starting image for inpainting: observed pixels kept, missing ones filled by
    normalised convolution ``(G_s * (m y)) / (G_s * m)`` (Knutsson & Westin 1993) at the smallest
    Gaussian std ``s`` in ``scales`` whose local observed weight ``G_s * m`` reaches
    ``min_weight``; pixels with no observed neighbour at any scale get the mean of the observed
    values. ``y`` is ``[B, C, H, W]``, ``mask`` broadcastable to it (1 = observed)."""
    m = mask.to(dtype=y.dtype, device=y.device).expand_as(y)
    out = y * m
    todo = m < 0.5
    for s in scales:
        if not bool(todo.any()):
            break
        num = _gaussian_blur(y * m, s)
        den = _gaussian_blur(m, s)
        ok = todo & (den >= min_weight)
        out = torch.where(ok, num / den.clamp_min(1e-12), out)
        todo = todo & ~ok
    if bool(todo.any()):
        n_obs = m.flatten(1).sum(1).clamp_min(1.0)
        mean = ((y * m).flatten(1).sum(1) / n_obs).view(-1, *([1] * (y.ndim - 1))).expand_as(y)
        out = torch.where(todo, mean, out)
    return out


def _shape3(shape, name: str = "shape") -> tuple[int, int, int]:
    s = tuple(int(v) for v in shape)
    if len(s) == 2:
        s = (1,) + s
    elif len(s) == 4:
        s = s[1:]
    if len(s) != 3 or min(s) < 1:
        raise ValueError(f"{name}: expected (H, W), (C, H, W) or (B, C, H, W), got {tuple(shape)!r}")
    return s


def check_mask(mask, name: str = "mask") -> torch.Tensor:
    """Validate a mask and return it as float64 ``[1|C, H, W]`` of 0/1.

    Accepts ``[H, W]``, ``[C, H, W]`` or ``[1, C, H, W]`` tensors/arrays (bool or numeric).
    Non-binary values or NaN -> ``ValueError`` (threshold it first, e.g. ``mask > 0.5``).
    """
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.array(mask, dtype=np.float64))
    elif isinstance(mask, torch.Tensor):
        mask = mask.detach().to("cpu", torch.float64)
    else:
        raise ValueError(f"{name}: expected a [H, W] or [C, H, W] tensor/array or a file path, got {type(mask).__name__}")
    if mask.ndim == 4 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.numel() == 0:
        raise ValueError(f"{name}: mask must have shape [H, W] or [C, H, W], got {tuple(mask.shape)}")
    nonbinary = int(((mask != 0) & (mask != 1)).sum())
    if nonbinary:
        raise ValueError(
            f"{name}: mask has {nonbinary} entries that are not 0 or 1; pass a binary mask "
            "(1 = observed), e.g. mask > 0.5"
        )
    return mask.contiguous()


def random_mask(shape: Sequence[int], missing_ratio: float, *, generator: torch.Generator) -> torch.Tensor:
    """Mask with exactly ``round(missing_ratio · H · W)`` missing pixels chosen uniformly
    without replacement (``torch.randperm`` with ``generator``).

    ``shape`` ``(H, W)`` or ``(1, H, W)``: one mask shared by all channels (``[1, H, W]``);
    ``(C, H, W)`` with ``C > 1``: independent per-channel masks, ``round(ratio·C·H·W)`` missing.
    """
    C, H, W = _shape3(shape)
    r = float(missing_ratio)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"missing_ratio: must be in [0, 1], got {missing_ratio!r}")
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator: pass a torch.Generator, e.g. torch.Generator().manual_seed(0)")
    n = C * H * W
    mask = torch.ones(n, dtype=torch.float64)
    mask[torch.randperm(n, generator=generator)[: round(r * n)]] = 0.0
    return mask.reshape(C, H, W)


def box_mask(shape: Sequence[int], box: Sequence[int]) -> torch.Tensor:
    """Mask ``[1, H, W]`` with the rectangle ``box = (top, left, height, width)`` missing (0)."""
    C, H, W = _shape3(shape)
    try:
        top, left, h, w = (int(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box: expected (top, left, height, width), got {box!r}") from None
    if top < 0 or left < 0 or h < 1 or w < 1 or top + h > H or left + w > W:
        raise ValueError(
            f"box: {(top, left, h, w)} (top, left, height, width) does not fit in the {H}x{W} image"
        )
    mask = torch.ones(1, H, W, dtype=torch.float64)
    mask[:, top : top + h, left : left + w] = 0.0
    return mask


def load_mask(path, name: str = "mask") -> torch.Tensor:
    """Mask from a ``.npy`` (0/1 values) or image file (values must be 0 or the file's maximum,
    e.g. 0/255 for 8-bit; white = observed). An RGB image with identical channels gives
    ``[1, H, W]``, otherwise ``[3, H, W]``."""
    from operators._io import read_raw

    arr = read_raw(path, name)
    if os.path.splitext(os.fspath(path))[1].lower() != ".npy":
        if arr.ndim == 3:
            arr = np.moveaxis(arr[..., :3], -1, 0)
            if np.all(arr == arr[:1]):
                arr = arr[:1]
        arr = arr.astype(np.float64)
        top = arr.max()
        if top > 0:
            arr = arr / top
    return check_mask(arr, name)


class Inpainting(LinearOperator):
    r"""``A x = m ⊙ x``, ``A^T y = m ⊙ y`` (``m`` binary, 1 = observed).

    Args:
        mask: ``[H, W]``, ``[1|C, H, W]`` tensor/array or a file path (see :func:`load_mask`).

    ``x`` must be ``[B, C, H, W]`` with matching ``H, W`` (and ``C`` for a ``[C, H, W]`` mask).

    >>> op = Inpainting(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    >>> op.A(torch.ones(1, 1, 2, 2)).sum().item()
    2.0
    """

    name = "inpainting"

    def __init__(self, mask):
        if isinstance(mask, (str, os.PathLike)):
            mask = load_mask(mask)
        self.mask = check_mask(mask)
        self.channels = self.mask.shape[0] if self.mask.shape[0] > 1 else None
        self._cache: dict = {}

    def __repr__(self) -> str:
        missing = 1.0 - float(self.mask.mean())
        return f"Inpainting(mask={tuple(self.mask.shape)}, missing={missing:.3f})"

    def check_shape(self, shape: Sequence[int], name: str = "x") -> None:
        C, H, W = tuple(shape)[-3:]
        mc, mh, mw = self.mask.shape
        if (mh, mw) != (H, W) or (mc > 1 and mc != C):
            raise ValueError(
                f"{name}: image shape {(C, H, W)} does not match mask shape {(mc, mh, mw)}; "
                "pass a [H, W] or [C, H, W] mask of the image size"
            )

    def norm_squared(self, shape: Sequence[int], **kwargs) -> float:
        """``||A||_2^2 = max_i m_i``: exact (1, or 0 for an all-missing mask); kwargs ignored."""
        self.check_shape(shape, "shape")
        return float(self.mask.max())

    def _m(self, x: torch.Tensor) -> torch.Tensor:
        self.check_shape(x.shape)
        key = (x.dtype, x.device)
        if key not in self._cache:
            self._cache[key] = self.mask.to(device=x.device, dtype=x.dtype)
        return self._cache[key]

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self._m(x) * x

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self._m(y) * y

    has_exact_prox = True

    @property
    def observed_mask(self) -> torch.Tensor:
        return self.mask

    def gram_spectrum(self, shape: Sequence[int]):
        """``A^T A = diag(m²)``: pixel basis, eigenvalues ``m²`` (``[C|1, H, W]``, float64)."""
        from operators.spectral import GramSpectrum

        self.check_shape(shape, "shape")
        H, W = tuple(shape)[-2:]
        return GramSpectrum(self.mask.to(torch.float64) ** 2, "pixel", (H, W))

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
        """Pixel-wise ``(z + gamma m y) / (1 + gamma m^2)`` (``A^T A = diag(m^2)``)."""
        m = self._m(z)
        return (z + gamma * m * y) / (1.0 + gamma * m * m)
