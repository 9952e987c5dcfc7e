"""``pnp-imaging dmmd evaluate``: samples of a DMMD model next to baselines, measured by the digits
toolkit (``pnp_imaging.analyses.digits.evaluate_samples``: class balance under the shipped digit
classifier, Fréchet distance in its features, nearest-neighbour distance to the train split), with a
sample grid (PNG), a small HTML report and the numbers as JSON.

Baselines (always): ``test_digits`` (the held-out test split: what fresh data scores on the
nearest-neighbour and class-balance rows; its Fréchet distance is 0 by construction, the reference
set being the test split), ``train_digits`` (``n`` random train images: the Fréchet distance of
real digits at the same sample size; nearest-train distance 0, fully "memorised") and
``gaussian_noise`` (as many images as samples, each pixel N(mean, std) of that pixel over the train
split, clamped to [0, 1]: what no model scores). Other generators (e.g. the digits diffusion model)
enter as ``compare={name: samples}``.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["noise_baseline", "sample_grid", "evaluate_model", "write_report"]

ROWS = ("n_samples", "mean_confidence", "tv_to_train_labels", "kl_to_train_labels", "tv_to_uniform", "frechet_distance",
        "nn_train_mean", "nn_train_median", "nn_test_to_train_median", "memorised_fraction", "closer_than_test_median",
        "class_counts")


def noise_baseline(train: torch.Tensor, n: int, *, seed: int) -> torch.Tensor:
    """``n`` images ``[n, 8, 8]``: per-pixel Gaussian noise with the train split's pixel mean and std, clamped to [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    flat = train.reshape(len(train), -1)
    noise = flat.mean(0) + flat.std(0) * torch.randn(n, flat.shape[1], generator=g)
    return noise.clamp(0, 1).reshape(n, *train.shape[-2:])


def sample_grid(images: torch.Tensor, *, cols: int = 8, zoom: int = 4) -> torch.Tensor:
    """Tile ``[m, h, w]`` images in [0, 1] into one ``[H, W]`` image (1-pixel gaps at 0.5, nearest-neighbour ``zoom``)."""
    m, h, w = images.shape
    rows = -(-m // cols)
    grid = torch.full((rows * (h + 1) + 1, cols * (w + 1) + 1), 0.5)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = im
    return grid.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1)


def evaluate_model(model, *, n: int, seed: int, compare: dict | None = None, progress: bool = False) -> tuple[dict, dict]:
    """``({name: evaluate_samples dict}, {name: images [m, 8, 8]})`` for the model's ``n`` samples
    (seed ``seed``; first entry), ``compare``'s sample sets and the baselines."""
    from pnp_imaging.analyses.digits import evaluate_samples, load_digit_classifier, load_digits_images
    from pnp_imaging.dmmd.store import sample

    samples = sample(model, n, seed=seed, progress=progress)
    train = load_digits_images("train")[:, 0]
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    sets = {model.name: samples, **(compare or {}), "test_digits": load_digits_images("test")[:, 0],
            "train_digits": train[pick], "gaussian_noise": noise_baseline(train, n, seed=seed)}
    sets = {name: torch.as_tensor(np.asarray(x), dtype=torch.float32).reshape(-1, 8, 8) for name, x in sets.items()}
    classifier = load_digit_classifier()
    return {name: evaluate_samples(x, classifier=classifier) for name, x in sets.items()}, sets


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _table(results: dict) -> str:
    head = "<tr><th>quantity</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in results) + "</tr>"
    body = "".join(f"<tr><td>{k}</td>" + "".join(f"<td>{_cell(r.get(k, ''))}</td>" for r in results.values()) + "</tr>"
                   for k in ROWS)
    return f"<table border='1' cellpadding='3' style='border-collapse:collapse'>{head}{body}</table>"


def _grids(out: Path, sets: dict) -> str:
    """One PNG grid (first 64 images) per sample set, ``grid_<name>.png``; their HTML figures."""
    from pnp_imaging.imageio import write_image

    figures = []
    for name, images in sets.items():
        write_image(out / f"grid_{name}.png", sample_grid(images[:64].clamp(0, 1)))
        figures.append(f"<figure style='display:inline-block;margin:6px'><img src='grid_{html.escape(name)}.png' "
                       f"style='image-rendering:pixelated;width:240px'><figcaption>{html.escape(name)}</figcaption></figure>")
    return "".join(figures)


def write_report(out: str | Path, model, results: dict, sets: dict, settings: dict) -> Path:
    """Write the model's ``samples.npy`` and ``samples.png`` (first 64), a grid per sample set,
    ``metrics.json`` and ``report.html`` into ``out``; ``sets`` as returned by :func:`evaluate_model`."""
    from pnp_imaging._io import atomic_write_text
    from pnp_imaging.imageio import write_image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    samples = sets[model.name]
    np.save(out / "samples.npy", samples.numpy().astype(np.float32))
    write_image(out / "samples.png", sample_grid(samples[:64]))
    figures = _grids(out, sets)
    payload = {"model": model.name, "settings": settings, "results": results}
    atomic_write_text(out / "metrics.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>DMMD evaluation: {html.escape(model.name)}</title>"
            f"</head><body><h1>DMMD evaluation: {html.escape(model.name)}</h1>"
            f"<p>Flow settings: <code>{html.escape(json.dumps(settings, sort_keys=True))}</code></p>"
            f"<h2>First 64 images of each set</h2><div>{figures}</div>"
            f"<h2>Digits metrics</h2>{_table(results)}"
            "<p>frechet_distance: to the test split in the digit classifier's features; nn_train_*: Euclidean distance "
            "(pixel scale) of each image to its nearest train digit; memorised_fraction: share nearer than the 5 % "
            "quantile of test digits' distances (about 0.05 for fresh data); closer_than_test_median: about 0.5 for "
            "fresh data.</p></body></html>\n")
    return atomic_write_text(out / "report.html", text)
