r"""The digits toolkit: scikit-learn's 8x8 digits with a fixed split, a small digit classifier
shipped with the zoo's weights, and an evaluation of generated digits against the data.

Used to measure generative priors trained on the digits (the cloning experiment of Biroli,
Bonnaire, De Bortoli, Mézard 2024, ``pnp_imaging.analyses.cloning``; the MMD gradient-flow prior):

- :func:`load_digits_images` / :func:`load_digits_labels`: ``(n, 1, 8, 8)`` float32 images in
  [0, 1] (pixel / 16) and their ``(n,)`` int64 labels, for the ``"train"`` (1438), ``"test"``
  (359) or ``"all"`` (1797) split; the split is a fixed permutation seeded by ``seed``
  (``denoisers_zoo.data.load_digits_split``), so images and labels of one split always match.
- :func:`load_digit_classifier`: the shipped :class:`DigitClassifier` (``denoisers_zoo/weights/
  digits_classifier.pt``, sha256-checked against the manifest's ``classifiers`` section, read
  with ``torch.load(..., weights_only=True)``); :func:`train_digit_classifier` re-trains it.
- :func:`evaluate_samples`: class balance, Fréchet distance in the classifier's penultimate
  features (the FID recipe of Heusel et al. 2017, eq. in §3, with this small classifier in place
  of Inception), nearest-neighbour distances to the train split (memorisation), confidence
  (definitions: ``docs/algorithms.md §cloning``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["load_digits_images", "load_digits_labels", "DigitClassifier", "train_digit_classifier",
           "save_digit_classifier", "load_digit_classifier", "classifier_accuracy", "classifier_features",
           "frechet_distance", "evaluate_samples", "CLASSIFIER_NAME", "N_CLASSES"]

CLASSIFIER_NAME = "digits_classifier"
N_CLASSES = 10


def load_digits_images(split: str = "train", *, seed: int = 0) -> torch.Tensor:
    """The digits of ``split`` (``"train"``, ``"test"`` or ``"all"``): ``(n, 1, 8, 8)`` float32 in [0, 1]."""
    from denoisers_zoo.data import load_digits_split

    return load_digits_split(split, seed=seed)[0]


def load_digits_labels(split: str = "train", *, seed: int = 0) -> torch.Tensor:
    """The labels (0..9, int64, shape ``(n,)``) of :func:`load_digits_images` ``(split, seed=seed)``, same order."""
    from denoisers_zoo.data import load_digits_split

    return load_digits_split(split, seed=seed)[1]


class DigitClassifier(nn.Module):
    """Small CNN for 8x8 digits: conv(32)-conv(64)-pool-conv(64)-pool, then a 64-unit layer (the
    features of :meth:`features`) and a linear read-out to 10 logits. Input ``(B, 1, 8, 8)`` in [0, 1]."""

    def __init__(self, width: int = 32, features: int = 64):
        super().__init__()
        w = int(width)
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(8 * w, int(features)), nn.ReLU(),
        )
        self.head = nn.Linear(int(features), N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, features)`` (after the ReLU)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _init_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """He-normal weights, zero biases, drawn from ``generator`` (no global seed)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                nn.init.kaiming_normal_(p, nonlinearity="relu", generator=generator)
            else:
                p.zero_()


def _random_shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image shifted by -1, 0 or +1 pixel along each axis (zero fill): the augmentation."""
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    dr, dc = torch.randint(0, 3, (2, x.shape[0]), generator=generator)
    rows = (dr.view(-1, 1) + torch.arange(8)).view(-1, 1, 8, 1).expand(-1, 1, 8, 10)
    out = padded.gather(2, rows)
    cols = (dc.view(-1, 1) + torch.arange(8)).view(-1, 1, 1, 8).expand(-1, 1, 8, 8)
    return out.gather(3, cols)


def train_digit_classifier(*, seed: int = 0, epochs: int = 40, batch: int = 64, lr: float = 2e-3,
                           split_seed: int = 0) -> tuple[DigitClassifier, dict]:
    """Train :class:`DigitClassifier` on the train split (Adam, cross-entropy, cosine learning rate,
    ±1-pixel shifts); returns the model (eval mode) and a record with its train and test accuracy."""
    if epochs < 1 or batch < 1:
        raise ValueError(f"train_digit_classifier: epochs and batch must be >= 1, got {epochs}, {batch}")
    gen = torch.Generator().manual_seed(int(seed))
    x, y = load_digits_images("train", seed=split_seed), load_digits_labels("train", seed=split_seed)
    model = DigitClassifier()
    _init_parameters(model, gen)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((x.shape[0] + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], batch):
            idx = perm[i : i + batch]
            loss = nn.functional.cross_entropy(model(_random_shift(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    info = {"seed": int(seed), "epochs": int(epochs), "batch": int(batch), "lr": float(lr), "steps": steps,
            "split_seed": int(split_seed), "parameters": sum(p.numel() for p in model.parameters()),
            "train_accuracy": classifier_accuracy(model, "train", seed=split_seed),
            "test_accuracy": classifier_accuracy(model, "test", seed=split_seed)}
    return model, info


@torch.no_grad()
def classifier_accuracy(model: nn.Module, split: str = "test", *, seed: int = 0) -> float:
    """Share of the ``split`` digits whose predicted class is the label."""
    pred = model(load_digits_images(split, seed=seed)).argmax(1)
    return float((pred == load_digits_labels(split, seed=seed)).double().mean())


def _weights_dir(manifest: str | Path | None) -> tuple[Path, Path]:
    import denoisers_zoo

    mpath = Path(manifest) if manifest is not None else denoisers_zoo.MANIFEST_PATH
    return mpath.parent, mpath


def save_digit_classifier(model: DigitClassifier, info: dict, *, manifest: str | Path | None = None) -> Path:
    """Write the weights next to the zoo's manifest (``digits_classifier.pt``) and record them,
    with their sha256 and ``info``, in the manifest's ``classifiers`` section."""
    import json

    from denoisers_zoo.train import sha256_file, write_manifest

    wdir, mpath = _weights_dir(manifest)
    dst = wdir / f"{CLASSIFIER_NAME}.pt"
    torch.save({k: v.detach().to(torch.float32).clone().contiguous() for k, v in model.state_dict().items()}, dst)
    data = json.loads(mpath.read_text()) if mpath.exists() else {"models": {}}
    data.setdefault("classifiers", {})[CLASSIFIER_NAME] = {
        "file": dst.name, "sha256": sha256_file(dst), "arch": {"type": "digit_cnn", "width": 32, "features": 64},
        "train": info, "recipe": "pnp_imaging.analyses.digits.train_digit_classifier"}
    write_manifest(data, mpath)
    return dst


def load_digit_classifier(*, manifest: str | Path | None = None) -> DigitClassifier:
    """The shipped digit classifier (eval mode, no gradients), sha256-checked against the manifest.

    :raises FileNotFoundError: no entry or no weights file (message names the fix).
    :raises ValueError: the file's sha256 differs from the manifest's (corrupt file).
    """
    import json

    from denoisers_zoo.train import sha256_file

    wdir, mpath = _weights_dir(manifest)
    fix = "re-train it with `python demos/digits_models.py --classifier` (or restore it with git checkout)"
    entry = (json.loads(mpath.read_text()).get("classifiers", {}) if mpath.exists() else {}).get(CLASSIFIER_NAME)
    wfile = wdir / (entry["file"] if entry else f"{CLASSIFIER_NAME}.pt")
    if entry is None or not wfile.exists():
        raise FileNotFoundError(f"load_digit_classifier: {wfile} or its manifest entry in {mpath} is missing; {fix}")
    digest = sha256_file(wfile)
    if digest != entry["sha256"]:
        raise ValueError(f"load_digit_classifier: {wfile} is corrupt (sha256 {digest[:12]}... != manifest "
                         f"{entry['sha256'][:12]}...); {fix}")
    model = DigitClassifier(width=entry["arch"]["width"], features=entry["arch"]["features"])
    model.load_state_dict(torch.load(wfile, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _as_digit_batch(samples) -> torch.Tensor:
    """``(m, 8, 8)`` or ``(m, 1, 8, 8)`` array/tensor in [0, 1] -> float32 ``(m, 1, 8, 8)`` tensor."""
    x = torch.as_tensor(np.asarray(samples) if not torch.is_tensor(samples) else samples).detach().cpu()
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8) or x.shape[0] < 2:
        raise ValueError(f"evaluate_samples: samples must have shape (m, 8, 8) or (m, 1, 8, 8) with m >= 2, "
                         f"got {tuple(x.shape)}")
    x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()) or float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6:
        raise ValueError("evaluate_samples: samples must be finite and in [0, 1] (pixel / 16); "
                         "clamp them with .clamp(0, 1) first")
    return x


@torch.no_grad()
def classifier_features(model: DigitClassifier, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features of ``x`` (float64), computed in batches of 1024."""
    return torch.cat([model.features(x[i : i + 1024]) for i in range(0, x.shape[0], 1024)]).double()


def frechet_distance(feat_a: torch.Tensor, feat_b: torch.Tensor) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017):
    :math:`\|\mu_a - \mu_b\|^2 + \mathrm{tr}(C_a + C_b - 2 (C_a C_b)^{1/2})`, with
    :math:`\mathrm{tr}(C_a C_b)^{1/2} = \sum_i \sqrt{\lambda_i(C_a^{1/2} C_b C_a^{1/2})}` computed from
    symmetric eigendecompositions (stable for the rank-deficient covariances of ReLU features)."""
    a, b = feat_a.double().numpy(), feat_b.double().numpy()
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cb @ root_a), 0.0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    return float(max(0.0, diff @ diff + np.trace(ca) + np.trace(cb) - 2.0 * cross))


def _class_balance(pred: torch.Tensor, train_labels: torch.Tensor) -> dict:
    """Histogram of predicted classes and its TV/KL to the train label frequencies and to uniform."""
    counts = torch.bincount(pred, minlength=N_CLASSES).double()
    p = counts / counts.sum()
    ref = torch.bincount(train_labels, minlength=N_CLASSES).double()
    ref = ref / ref.sum()
    uni = torch.full_like(p, 1.0 / N_CLASSES)
    kl = lambda q: float(torch.where(p > 0, p * torch.log(p / q), torch.zeros_like(p)).sum())  # noqa: E731
    return {"class_counts": [int(c) for c in counts], "class_freq": [float(v) for v in p],
            "tv_to_train_labels": float(0.5 * (p - ref).abs().sum()), "kl_to_train_labels": kl(ref),
            "tv_to_uniform": float(0.5 * (p - uni).abs().sum()), "kl_to_uniform": kl(uni)}


def _nearest_train(x: torch.Tensor, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance (pixel scale [0, 1], 64-d) and index of each row's nearest train image."""
    d = torch.cdist(x.reshape(x.shape[0], -1).double(), train.reshape(train.shape[0], -1).double())
    return d.min(1)


def evaluate_samples(samples, *, classifier: DigitClassifier | None = None, split_seed: int = 0) -> dict:
    """Evaluate generated digits ``(m, 8, 8)`` or ``(m, 1, 8, 8)`` in [0, 1] against the data.

    Returns a dict: ``class_counts``/``class_freq`` (predicted classes) with their total-variation
    and KL(samples ‖ ref) distances to the train label frequencies and to uniform; ``mean_confidence``
    (mean max softmax probability); ``frechet_distance`` to the test split in the classifier's
    64-d penultimate features; ``nn_train_mean``/``nn_train_median``: Euclidean distance of each
    sample to its nearest train image; the reference ``nn_test_to_train_median`` and ``..._q05``
    (held-out test digits to the train set); ``memorised_fraction``: share of samples nearer to a
    train image than the 5 % quantile of the test digits' distances (≈ 0.05 for a model that
    generalises like fresh data, → 1 for one that copies its training set); ``closer_than_test_median``
    (≈ 0.5 for fresh data). The same numbers for the test split itself are the baseline.
    """
    x = _as_digit_batch(samples)
    model = classifier if classifier is not None else load_digit_classifier()
    train = load_digits_images("train", seed=split_seed)
    test = load_digits_images("test", seed=split_seed)
    with torch.no_grad():
        prob = torch.softmax(model(x), 1)
        fd = frechet_distance(classifier_features(model, x), classifier_features(model, test))
    nn_x, _ = _nearest_train(x, train)
    nn_ref, _ = _nearest_train(test, train)
    q05, med = float(torch.quantile(nn_ref, 0.05)), float(nn_ref.median())
    out = {"n_samples": int(x.shape[0]), "mean_confidence": float(prob.max(1).values.mean()), "frechet_distance": fd,
           "nn_train_mean": float(nn_x.mean()), "nn_train_median": float(nn_x.median()),
           "nn_test_to_train_median": med, "nn_test_to_train_q05": q05,
           "memorised_fraction": float((nn_x < q05).double().mean()),
           "closer_than_test_median": float((nn_x < med).double().mean())}
    out.update(_class_balance(prob.argmax(1), load_digits_labels("train", seed=split_seed)))
    return out
