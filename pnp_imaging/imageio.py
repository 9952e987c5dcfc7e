"""Read and write images as float tensors ``[1, C, H, W]`` on the ``[0, 1]`` scale.

Reading (PNG, TIFF, JPEG, ``.npy``):

* ``uint8`` -> ``/255``; ``uint16`` -> ``/65535``; other integer types -> error;
  ``bool`` -> 0/1; float arrays are kept as they are after checks (finite; values outside
  ``[0, 1]`` give a ``UserWarning`` saying how to rescale, :func:`read_image` only).
* ``.npy`` layouts: ``[H, W]``, ``[C, H, W]`` (C in 1, 3), ``[1, C, H, W]``, or
  ``[H, W, C]`` (C in 3, 4); image files are ``[H, W]`` or ``[H, W, C]``. An alpha
  channel is dropped.
* ``channels=1``: RGB -> gray with ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``;
  ``channels=3``: gray -> RGB by repetition; ``None``: as stored.

Writing: ``.png`` clipped to ``[0, 1]`` and stored as 8-bit (rounded), ``.npy`` as float32
``[C, H, W]`` (no clipping). Missing/unreadable files -> one-line error naming the path.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from operators._io import read_raw

__all__ = ["read_image", "read_observation", "write_image", "to_channels"]

_LUMA = (0.299, 0.587, 0.114)


def _to_chw(arr: np.ndarray, from_npy: bool, path: str) -> np.ndarray:
    """``[C, H, W]`` from the stored layout (``.npy``: channel-first preferred)."""
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3:
        if from_npy and arr.shape[0] in (1, 3):
            return arr
        if arr.shape[-1] in (1, 3, 4):
            return np.moveaxis(arr[..., :3], -1, 0)
    raise ValueError(
        f"path: cannot interpret array of shape {arr.shape} in {path!r} as an image; "
        "use [H, W], [C, H, W] or [H, W, C] with C in 1, 3"
    )


def _scale(arr: np.ndarray, path: str) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() >= 0 and arr.max() <= 65535 and arr.max() > 255:
            return arr.astype(np.float32) / 65535.0  # PIL opens 16-bit PNG as int32 ("I")
        if arr.min() >= 0 and arr.max() <= 255:
            return arr.astype(np.float32) / 255.0
        raise ValueError(
            f"path: integer image {path!r} has values in [{arr.min()}, {arr.max()}]; "
            "save it as uint8/uint16 or as a float .npy in [0, 1]"
        )
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        bad = int((~np.isfinite(out)).sum())
        if bad:
            raise ValueError(f"path: {path!r} has {bad} NaN/Inf values; pass a finite image")
        return out
    raise ValueError(f"path: unsupported dtype {arr.dtype} in {path!r}; use uint8, uint16 or float")


def to_channels(x: torch.Tensor, channels: int | None, name: str = "channels") -> torch.Tensor:
    """Convert ``[B, C, H, W]`` to ``channels`` (1: BT.601 luma; 3: repeat gray; None: keep)."""
    if channels is None or x.shape[1] == channels:
        return x
    if channels == 1 and x.shape[1] == 3:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    if channels == 3 and x.shape[1] == 1:
        return x.repeat(1, 3, 1, 1)
    raise ValueError(f"{name}: cannot convert {x.shape[1]} channels to {channels!r}; use 1, 3 or None")


def _read(path, channels, name: str) -> torch.Tensor:
    if channels not in (None, 1, 3):
        raise ValueError(f"channels: must be 1, 3 or None, got {channels!r}")
    path = os.fspath(path)
    arr = read_raw(path, name)
    from_npy = path.lower().endswith(".npy")
    arr = _scale(_to_chw(np.asarray(arr), from_npy, path), path)
    x = torch.from_numpy(np.ascontiguousarray(arr))[None]
    return to_channels(x, channels)


def read_image(path, *, channels: int | None = None) -> torch.Tensor:
    """Image file or ``.npy`` -> float32 ``[1, C, H, W]`` in ``[0, 1]`` (see module doc).

    >>> read_image("data/cameraman.png").shape
    torch.Size([1, 1, 256, 256])
    """
    x = _read(path, channels, "path")
    warn_outside_unit_range(x, f"path: {os.fspath(path)!r}", stacklevel=3)
    return x


def warn_outside_unit_range(x: torch.Tensor, what: str, *, stacklevel: int = 2) -> None:
    """Warn (``UserWarning``) if ``x`` has values outside ``[0, 1]``; say how to rescale."""
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        warnings.warn(
            f"{what} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; rescale it, e.g. x / 255 for 8-bit data "
            "or (x - x.min()) / (x.max() - x.min())", UserWarning, stacklevel=stacklevel + 1)


def read_observation(path, *, channels: int | None = None) -> torch.Tensor:
    """Observation ``y`` -> float32 ``[1, C, H, W]``; like :func:`read_image` but values outside
    ``[0, 1]`` are legitimate (noise) and not warned about; NaN/Inf are errors."""
    return _read(path, channels, "observation")


def write_image(path, x: torch.Tensor) -> None:
    """Write ``x`` (``[1, C, H, W]``, ``[C, H, W]`` or ``[H, W]``, C in 1, 3) to ``.png``
    (clipped to [0, 1], 8-bit) or ``.npy`` (float32 ``[C, H, W]``)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".png", ".npy"):
        raise ValueError(f"path: cannot write {suffix!r} ({path!r}); use .png or .npy")
    t = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"x: expected [1, C, H, W] with C in 1, 3, got {tuple(torch.as_tensor(x).shape)}")
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        raise FileNotFoundError(f"path: directory {parent!r} does not exist; create it first")
    if suffix == ".npy":
        np.save(path, t.numpy())
        return
    from PIL import Image

    arr = np.round(np.clip(t.numpy(), 0.0, 1.0) * 255.0).astype(np.uint8)
    img = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    Image.fromarray(img).save(path)
