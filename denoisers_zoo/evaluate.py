"""Shared evaluation helpers (model cards and ``bench/bench_denoisers.py``)."""
from __future__ import annotations

import statistics
import time

import torch

from denoisers_zoo.nets import psnr

__all__ = ["eval_images", "add_noise", "psnr_rows", "forward_time", "measure_lipschitz", "ASTRONAUT_CROP"]

#: held-out colour test crop (rows, cols) of skimage.data.astronaut (512x512)
ASTRONAUT_CROP = (slice(0, 256), slice(128, 384))


def eval_images(channels: int) -> dict[str, torch.Tensor]:
    """Held-out evaluation images ``{name: [1, C, H, W]}``: cameraman (gray models) and an astronaut crop."""
    from denoisers_zoo.data import load_camera, load_skimage

    r, c = ASTRONAUT_CROP
    ims = {}
    if channels == 1:
        ims["cameraman"] = load_camera(1)
    ims["astronaut_crop256"] = load_skimage("astronaut", channels)[None][..., r, c].contiguous()
    return ims


def add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    return x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)


def _time(fn, n: int) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


@torch.no_grad()
def psnr_rows(den, image: torch.Tensor, sigmas_255, *, seed: int = 0, baseline=None, n_time: int = 3) -> list[dict]:
    """PSNR (dB, outputs clamped to [0,1]) of ``den`` (and ``baseline``, same noise, at the sigmas
    within its ``sigma_range``) at each sigma."""
    rows = []
    for s255 in sigmas_255:
        s = float(s255) / 255.0
        y = add_noise(image, s, seed + int(round(s255 * 100)))
        den(y, s)  # warm-up
        t_model = _time(lambda: den(y, s), n_time)
        row = {"sigma_255": float(s255), "psnr_noisy": psnr(y.clamp(0, 1), image),
               "psnr_model": psnr(den(y, s).clamp(0, 1), image), "time_model_s": t_model}
        if baseline is not None and s <= getattr(baseline, "sigma_range", (0.0, float("inf")))[1]:
            t0 = time.perf_counter()
            out = baseline(y, s)
            row["time_baseline_s"] = time.perf_counter() - t0
            row["psnr_baseline"] = psnr(out.clamp(0, 1), image)
            row["gain_db"] = row["psnr_model"] - row["psnr_baseline"]
            row["speed_ratio"] = row["time_baseline_s"] / t_model
        rows.append(row)
    return rows


@torch.no_grad()
def forward_time(den, channels: int, size: int = 256, sigma: float = 25 / 255, n: int = 10) -> float:
    """Median seconds of one ``[1, C, size, size]`` forward pass."""
    lo, hi = den.sigma_range
    sigma = min(max(sigma, lo), hi)
    x = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        den(x, sigma)
    return _time(lambda: den(x, sigma), n)


def measure_lipschitz(den, image: torch.Tensor, sigmas, *, n_points: int = 3, crop: int = 64, n_iter: int = 30, seed: int = 0) -> dict:
    """Max local residual Lipschitz constant over ``n_points`` noisy crops x ``sigmas``."""
    from denoisers_zoo.lipschitz import residual_lipschitz

    g = torch.Generator().manual_seed(seed)
    h, w = image.shape[-2:]
    vals = []
    for s in sigmas:
        for _ in range(n_points):
            r = int(torch.randint(0, h - crop + 1, (1,), generator=g))
            c = int(torch.randint(0, w - crop + 1, (1,), generator=g))
            x = image[..., r : r + crop, c : c + crop]
            x = x + s * torch.randn(x.shape, generator=g)
            vals.append({"sigma_255": s * 255, "at": [r, c], "value": residual_lipschitz(den, x, s, n_iter=n_iter, generator=g)})
    return {"max": max(v["value"] for v in vals), "points": vals, "crop": crop, "n_iter": n_iter}
