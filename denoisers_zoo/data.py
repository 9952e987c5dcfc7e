"""Training / evaluation images bundled with scikit-image (no network), and a patch sampler;
scikit-learn's 8x8 digits with a fixed seeded train/test split, and a whole-image sampler."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["load_skimage", "PatchSampler", "sqrt_area_weights", "HELD_OUT_ALWAYS", "load_camera",
           "load_digits_split", "DigitsSampler", "DIGITS_SPLITS"]

#: Never used for training, whatever the recipe says.
HELD_OUT_ALWAYS = ("camera",)


def _raw(name: str) -> np.ndarray:
    import skimage.data as skd

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skd.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    fn = getattr(skd, name, None)
    if fn is None:
        raise ValueError(f"data: unknown skimage.data image {name!r}; list names from skimage.data")
    return fn()


def load_skimage(name: str, channels: int) -> torch.Tensor:
    """Return a ``[C, H, W]`` float32 tensor in [0, 1] (gray via ``rgb2gray`` for colour images)."""
    from skimage.color import gray2rgb, rgb2gray, rgba2rgb
    from skimage.util import img_as_float

    im = _raw(name)
    im = img_as_float(im)
    if im.ndim == 3 and im.shape[-1] == 4:
        im = rgba2rgb(im)
    if channels == 1:
        if im.ndim == 3:
            im = rgb2gray(im)
        t = torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32))[None]
    elif channels == 3:
        if im.ndim == 2:
            im = gray2rgb(im)
        t = torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32)).permute(2, 0, 1).contiguous()
    else:
        raise ValueError(f"data.channels: must be 1 or 3, got {channels}")
    return t.clamp_(0.0, 1.0)


def load_camera(channels: int = 1) -> torch.Tensor:
    """Held-out cameraman ``[1, C, H, W]``: ``data/cameraman.png`` if present, else ``skimage.data.camera()``."""
    from pathlib import Path

    p = Path(__file__).resolve().parents[1] / "data" / "cameraman.png"
    if p.exists():
        from skimage.io import imread
        from skimage.util import img_as_float

        im = img_as_float(imread(p))
        if im.ndim == 3:
            from skimage.color import rgb2gray

            im = rgb2gray(im[..., :3])
        t = torch.from_numpy(np.ascontiguousarray(im, dtype=np.float32))[None]
        if channels == 3:
            t = t.expand(3, -1, -1).contiguous()
        return t[None]
    return load_skimage("camera", channels)[None]


def sqrt_area_weights(images: list[torch.Tensor]) -> list[float]:
    """Default image weights for patch sampling: sqrt(H * W), so large images count more but do not dominate."""
    return [float(im.shape[-2] * im.shape[-1]) ** 0.5 for im in images]


def _check_scale_aug(cfg: dict | None) -> dict | None:
    """Validate ``data.scale_aug = {prob, min}`` (see ``PatchSampler``)."""
    if not cfg:
        return None
    unknown = sorted(set(cfg) - {"prob", "min"})
    if unknown:
        raise ValueError(f"data.scale_aug: unknown key(s) {unknown}; use prob and min, e.g. {{prob: 0.5, min: 0.5}}")
    prob, smin = float(cfg.get("prob", 0.5)), float(cfg.get("min", 0.5))
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"data.scale_aug.prob: the share of downscaled patches must be in (0, 1], got {prob}")
    if not 0.0 < smin < 1.0:
        raise ValueError(f"data.scale_aug.min: the smallest downscaling factor must be in (0, 1), got {smin}")
    return {"prob": prob, "min": smin}


class PatchSampler:
    """Random ``patch x patch`` crops with the 8 dihedral augmentations (flips / rot90).

    Images are drawn with probability proportional to sqrt(area) so large images count more
    but do not dominate, or to the given ``weights``. All randomness comes from the given
    ``torch.Generator``.

    ``scale_aug = {prob, min}`` (optional; recipe key ``data.scale_aug``): a share ``prob`` of the
    patches is a crop of side ``round(patch / s)`` downscaled to ``patch`` (bicubic with
    antialiasing, clamped to [0, 1]), s log-uniform in [``min``, 1] (capped so the crop fits the
    image): the same photos seen at coarser resolutions, i.e. more image content per patch and new
    edge/texture scales from a small training set. Without it the sampler draws exactly as before.
    """

    def __init__(self, images: list[torch.Tensor], patch: int, weights: list[float] | None = None,
                 scale_aug: dict | None = None):
        small = [i for i, im in enumerate(images) if min(im.shape[-2:]) < patch]
        if small:
            raise ValueError(f"data.patch: {patch} is larger than image(s) {small}; use a smaller patch")
        self.images = images
        self.patch = int(patch)
        self.scale_aug = _check_scale_aug(scale_aug)
        if weights is None:
            weights = sqrt_area_weights(images)
        w = torch.tensor(weights, dtype=torch.float64)
        if len(w) != len(images) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"PatchSampler: need one non-negative weight per image, got {len(w)} for {len(images)}")
        self.probs = w / w.sum()

    def _source_side(self, h: int, w: int, generator: torch.Generator) -> int:
        """Side of the source crop: ``patch``, or ``round(patch / s)`` for a scale-augmented patch."""
        if self.scale_aug is None:
            return self.patch
        u = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        if u[0] >= self.scale_aug["prob"]:
            return self.patch
        s = math.exp(math.log(self.scale_aug["min"]) * u[1])  # log-uniform in [min, 1]
        return max(self.patch, min(int(round(self.patch / s)), h, w))

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.multinomial(self.probs, batch, replacement=True, generator=generator)
        out = []
        p = self.patch
        for i in idx.tolist():
            im = self.images[i]
            h, w = im.shape[-2:]
            side = self._source_side(h, w, generator)
            r = int(torch.randint(0, h - side + 1, (1,), generator=generator))
            c = int(torch.randint(0, w - side + 1, (1,), generator=generator))
            crop = im[:, r : r + side, c : c + side]
            if side != p:
                crop = F.interpolate(crop[None], size=(p, p), mode="bicubic", antialias=True, align_corners=False)[0].clamp(0.0, 1.0)
            k = int(torch.randint(0, 8, (1,), generator=generator))
            if k >= 4:
                crop = crop.flip(-1)
            crop = torch.rot90(crop, k % 4, dims=(-2, -1))
            out.append(crop)
        return torch.stack(out).contiguous()


#: splits of :func:`load_digits_split`
DIGITS_SPLITS = ("train", "test", "all")


def load_digits_split(split: str = "train", *, seed: int = 0, test_fraction: float = 0.2):
    """scikit-learn's digits (1797 images of 8x8 pixels, 10 classes; bundled, no network) as
    ``(images [n, 1, 8, 8] float32 in [0, 1], labels [n] int64)``; pixel values (0..16) / 16.

    The split is a fixed permutation drawn by ``numpy.random.default_rng(seed)``: its first
    ``round(test_fraction * 1797)`` indices (359 for the default 0.2) are the test split, the rest
    (1438) the train split, each kept in the original order; ``"all"`` is the whole set in order.
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(f"digits split: {split!r} is not one of {DIGITS_SPLITS}; use 'train', 'test' or 'all'")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"digits test_fraction: must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy((bunch.images / 16.0).astype(np.float32))[:, None]
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    if split == "all":
        return images, labels
    n = images.shape[0]
    perm = np.random.default_rng(int(seed)).permutation(n)
    n_test = int(round(float(test_fraction) * n))
    idx = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
    return images[idx].contiguous(), labels[idx].contiguous()


class DigitsSampler:
    """Whole 8x8 digit images drawn uniformly with replacement (no flips: digits are not
    mirror-symmetric); the training-side counterpart of :class:`PatchSampler` for the
    recipe key ``data.source: sklearn.digits``. All randomness comes from the given generator."""

    def __init__(self, split: str = "train", *, seed: int = 0):
        self.images, _ = load_digits_split(split, seed=seed)

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, self.images.shape[0], (int(batch),), generator=generator)
        return self.images[idx].contiguous()
