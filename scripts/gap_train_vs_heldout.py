"""Generalisation gap of a zoo denoiser: its PSNR gain over BM3D on 256x256 centre crops of its
TRAINING photos next to the same gain on the held-out rows of the bench (same noise seed). A gain
much larger on training photos than on held-out ones says the model is data-limited.

Usage (repo root; ~2 min on one core, BM3D dominates)::

    python scripts/gap_train_vs_heldout.py [MODEL] [OUT.json]     # defaults: drunet_gray, runs/gap_train_vs_heldout.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import denoisers_zoo as zoo
from denoisers_zoo.data import load_skimage
from denoisers_zoo.evaluate import eval_images, psnr_rows

#: Training photos of the drunet_gray recipes that are at least 256 px on each side.
TRAIN_PHOTOS = ("chelsea", "coffee", "rocket", "motorcycle_left", "clock", "coins", "moon", "cell", "brick", "grass")
SIGMAS_255 = (15, 25, 50)


def centre_crop(x: torch.Tensor, size: int = 256) -> torch.Tensor:
    h, w = x.shape[-2:]
    r, c = (h - size) // 2, (w - size) // 2
    return x[..., r:r + size, c:c + size].reshape(1, -1, size, size)


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    name = argv[0] if argv else "drunet_gray"
    out_path = Path(argv[1] if len(argv) > 1 else "runs/gap_train_vs_heldout.json")
    den, bm3d = zoo.load(name), zoo.load("bm3d")
    images = {n: centre_crop(load_skimage(n, 1)) for n in TRAIN_PHOTOS}
    images.update({f"held-out {k}": v for k, v in eval_images(1).items()})
    gains = {}
    for label, im in images.items():
        rows = psnr_rows(den, im, list(SIGMAS_255), seed=0, baseline=bm3d, n_time=1)
        gains[label] = {f"{r['sigma_255']:g}": round(r["gain_db"], 3) for r in rows}
        print(f"{label:28s} " + "  ".join(f"sigma {s}: {g:+.2f}" for s, g in gains[label].items()), flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"model": name, "gain_over_bm3d_db": gains}, indent=1) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
