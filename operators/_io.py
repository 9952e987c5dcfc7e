"""Read raw arrays from .npy / PNG / TIFF / JPEG files (no scaling). Shared by kernels, masks
and :mod:`pnp_imaging.imageio`. Heavy readers are imported inside the function.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "ARRAY_SUFFIXES", "read_raw"]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy",) + IMAGE_SUFFIXES


def read_raw(path, name: str = "path") -> np.ndarray:
    """Return the stored array of ``path`` (``[H, W]`` or ``[H, W, C]`` for images).

    Raises ``FileNotFoundError`` / ``ValueError`` with one line naming the path.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in ARRAY_SUFFIXES:
        raise ValueError(
            f"{name}: unsupported file type {suffix!r} for {path!r}; use one of {ARRAY_SUFFIXES}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: file not found: {path!r}; check the path")
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                arr = np.asarray(im)
    except Exception as exc:  # corrupt / unreadable
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{name}: cannot read {path!r} ({msg}); pass a valid {suffix} file") from None
    return np.asarray(arr)
