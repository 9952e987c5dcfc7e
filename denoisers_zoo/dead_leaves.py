"""Dead-leaves images: synthetic, scale-invariant training images (no download needed).

The dead-leaves model (Matheron 1968; Lee, Mumford & Huang 2001, "Occlusion models for natural
images", IJCV 41) stacks random opaque disks; with radii drawn from ``p(r) ∝ r^(-alpha)`` on
``[r_min, r_max]`` and ``alpha ≈ 3`` the images are approximately scale invariant, like natural
images. Achddou, Gousseau & Ladjal (2021, "Synthetic images as a regularity prior for image
restoration neural networks", SSVM) train denoisers on such images alone and report results
approaching training on natural photos (their figures are not reproduced here); here they are an
optional supplement to the 17 bundled photos (recipe key ``data.dead_leaves``, see
``denoisers_zoo/train.py``).

Rendering is front to back (Kendall & Thönnes' exact simulation of the stationary model): each new
disk only paints pixels no earlier disk covers, and drawing stops once ``coverage`` of the canvas is
painted (the rest gets one last grey level); centres are uniform on the canvas enlarged by r_max
on each side, so large disks centred outside it occlude as they should. The canvas is
``supersample`` times finer than the output and block-averaged, so disk edges are anti-aliased as
a camera's would be.
Our choice: grey levels uniform on [0, 1] (Achddou et al. draw colours from natural-image histograms);
defaults alpha = 3, r_min = 1 px, r_max = the image size, supersample = 4, coverage = 0.998.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sample_radii", "dead_leaves_image"]


def sample_radii(n: int, alpha: float, r_min: float, r_max: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` radii with density ∝ r^(-alpha) on [r_min, r_max] (inverse CDF)."""
    u = rng.random(n)
    if abs(alpha - 1.0) < 1e-12:
        return r_min * (r_max / r_min) ** u
    a = 1.0 - alpha
    return (r_min**a + u * (r_max**a - r_min**a)) ** (1.0 / a)


def dead_leaves_image(size: int, rng: np.random.Generator, *, alpha: float = 3.0, r_min: float = 1.0,
                      r_max: float | None = None, supersample: int = 4, coverage: float = 0.998,
                      max_disks: int = 200_000, channels: int = 1) -> np.ndarray:
    """One ``[channels, size, size]`` float32 dead-leaves image in [0, 1] (radii in output pixels).

    With ``channels = 3`` each disk gets an independent uniform colour.
    """
    size, ss = int(size), int(supersample)
    r_max = float(size) if r_max is None else float(r_max)
    if channels not in (1, 3):
        raise ValueError(f"dead_leaves: channels must be 1 or 3, got {channels}")
    if size < 8 or ss < 1:
        raise ValueError(f"dead_leaves: size must be >= 8 and supersample >= 1, got {size}, {ss}")
    if not (alpha > 0 and 0 < r_min < r_max):
        raise ValueError(f"dead_leaves: need alpha > 0 and 0 < r_min < r_max, got {alpha}, {r_min}, {r_max}")
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"dead_leaves: coverage must be in (0, 1), got {coverage}")
    n = size * ss
    canvas = np.zeros((n, n, channels), dtype=np.float32)
    covered = np.zeros((n, n), dtype=bool)
    painted, target = 0, coverage * n * n
    chunk = 4096
    margin = r_max * ss
    drawn = 0
    while painted < target and drawn < max_disks:
        radii = sample_radii(chunk, alpha, r_min, r_max, rng) * ss
        centres = rng.random((chunk, 2)) * (n + 2 * margin) - margin  # every disk that can touch the canvas
        greys = rng.random((chunk, channels)).astype(np.float32)
        for r, (cy, cx), g in zip(radii, centres, greys):
            y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, n)
            x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, n)
            if y0 >= y1 or x0 >= x1:
                continue
            yy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
            xx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
            new = (yy * yy + xx * xx <= r * r) & ~covered[y0:y1, x0:x1]
            k = int(new.sum())
            if k:
                canvas[y0:y1, x0:x1][new] = g
                covered[y0:y1, x0:x1] |= new
                painted += k
                if painted >= target:
                    break
        drawn += chunk
    canvas[~covered] = rng.random(channels).astype(np.float32)
    img = canvas.reshape(size, ss, size, ss, channels).mean(axis=(1, 3))
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
