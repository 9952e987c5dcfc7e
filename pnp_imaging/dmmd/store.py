"""Shipped DMMD models: export after training, install into ``weights/`` (manifest with sha256),
load (sha256-checked, ``torch.load(weights_only=True)``) and sample.

The weights file holds ``state_dict`` (the feature network), ``levels`` (the flow's noise grid) and
``data_mean`` (the training data's mean feature at each level, cached so that sampling needs no
data). The manifest ``weights/manifest.json`` has the zoo's format (``{"models": {name: entry}}``,
written by ``denoisers_zoo.train.write_manifest``; sha256 by ``denoisers_zoo.train.sha256_file``).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from pnp_imaging.dmmd.features import FeatureNet
from pnp_imaging.dmmd.flow import data_mean_features, level_grid, mmd_flow
from pnp_imaging.dmmd.noising import to_signed, to_unit

__all__ = ["DMMDModel", "export_model", "install", "load_model", "read_manifest", "sample", "WEIGHTS_DIR",
           "DEFAULT_MODEL"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "dmmd_digits"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class DMMDModel:
    """A loaded model: feature network, cached flow grid and data means, flow defaults, image side."""

    name: str
    net: FeatureNet
    levels: torch.Tensor
    data_mean: torch.Tensor
    flow: dict
    side: int
    entry: dict


def _manifest_path(manifest: str | os.PathLike | None) -> Path:
    return Path(manifest) if manifest is not None else WEIGHTS_DIR / "manifest.json"


def read_manifest(manifest: str | os.PathLike | None = None) -> dict:
    """``{"models": {name: entry}}`` (empty when the file does not exist)."""
    p = _manifest_path(manifest)
    return json.loads(p.read_text()) if p.is_file() else {"models": {}}


def export_model(result, recipe: dict, images: torch.Tensor, out: Path) -> Path:
    """Write ``out/<name>.pt`` (weights, flow grid, cached data means) and ``out/train_info.json``."""
    from denoisers_zoo.train import _hardware, sha256_file
    from pnp_imaging._io import atomic_torch_save, atomic_write_text

    flow = recipe["flow"]
    levels = level_grid(int(flow["levels"]), float(flow["t_min"]))
    means = data_mean_features(result.net.eval(), to_signed(images.float()), levels)
    path = Path(out) / f"{recipe['name']}.pt"
    state = {k: v.detach().float().clone() for k, v in result.net.state_dict().items()}
    atomic_torch_save({"state_dict": state, "levels": levels, "data_mean": means}, path)
    tail = result.losses[-100:]
    info = {"name": recipe["name"], "recipe": recipe.get("_recipe_path"), "arch": result.net.arch,
            "image_side": int(images.shape[-1]), "data": recipe["data"], "flow": flow,
            "train": {"steps_done": result.steps_done, "steps_planned": int(recipe["steps"]),
                      "stopped_by": result.stopped_by, "train_wall_minutes": round(result.wall_minutes, 2),
                      "threads": int(recipe.get("threads") or 1), "hardware": _hardware(),
                      "final_loss_mean_last_100": sum(tail) / max(1, len(tail)),
                      "parameters": sum(p.numel() for p in result.net.parameters())},
            "sha256": sha256_file(path), "file": path.name}
    atomic_write_text(Path(out) / "train_info.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


def install(out: str | os.PathLike, *, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Copy a finished run (``out/train_info.json`` and its weights) into ``weights_dir`` and record
    it in the manifest there (sha256 re-measured on the copy)."""
    from denoisers_zoo.train import sha256_file, write_manifest

    info = json.loads((Path(out) / "train_info.json").read_text())
    dst = weights_dir / info["file"]
    shutil.copyfile(Path(out) / info["file"], dst)
    entry = {k: v for k, v in info.items() if k != "name"}
    if entry.get("recipe") and Path(entry["recipe"]).is_absolute():
        entry["recipe"] = os.path.relpath(entry["recipe"], REPO)
    entry["sha256"] = sha256_file(dst)
    data = read_manifest(weights_dir / "manifest.json")
    data["models"][info["name"]] = entry
    write_manifest(data, weights_dir / "manifest.json")
    return dst


def load_model(name: str = DEFAULT_MODEL, *, manifest: str | os.PathLike | None = None) -> DMMDModel:
    """Load a shipped model by name; weights checked against the manifest's sha256."""
    from denoisers_zoo.train import sha256_file

    mpath = _manifest_path(manifest)
    models = read_manifest(mpath)["models"]
    if name not in models:
        raise ValueError(f"dmmd: unknown model {name!r}; shipped: {sorted(models)}")
    entry = models[name]
    wfile = mpath.parent / entry["file"]
    fix = f"retrain with `pnp-imaging dmmd train {entry.get('recipe', '<recipe>')} --install` or restore it with git checkout"
    if not wfile.is_file():
        raise FileNotFoundError(f"dmmd: weights file {wfile} is missing; {fix}")
    if sha256_file(wfile) != entry["sha256"]:
        raise ValueError(f"dmmd: weights file {wfile} does not match its manifest sha256; {fix}")
    blob = torch.load(wfile, map_location="cpu", weights_only=True)
    net = FeatureNet(**entry["arch"])
    net.load_state_dict(blob["state_dict"], strict=True)
    net.eval().requires_grad_(False)
    return DMMDModel(name, net, blob["levels"], blob["data_mean"], dict(entry["flow"]), int(entry["image_side"]), entry)


def _grid_and_means(model: DMMDModel, flow: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached grid and data means, or (another grid asked for) means recomputed from the training data."""
    levels = level_grid(int(flow["levels"]), float(flow["t_min"]))
    if levels.shape == model.levels.shape and torch.allclose(levels, model.levels):
        return model.levels, model.data_mean
    from pnp_imaging.dmmd.train import training_data

    return levels, data_mean_features(model.net, to_signed(training_data(model.entry).float()), levels)


def sample(model: DMMDModel, n: int, *, seed: int = 0, progress: bool = False, **flow_overrides) -> torch.Tensor:
    """``n`` images ``[n, side, side]`` in [0, 1] by the DMMD flow (``flow.mmd_flow``) with the
    model's flow defaults, any of ``levels``, ``steps_per_level``, ``step_size``, ``t_min``,
    ``batch`` overridden; seeded by ``seed`` (a ``torch.Generator``, no global state). Particles
    interact in batches of ``min(batch, n)``, so the images of one seed depend on ``n`` too."""
    from pnp_imaging.progress import progress_bar

    unknown = sorted(set(flow_overrides) - set(model.flow))
    if unknown:
        raise ValueError(f"sample: unknown flow setting(s) {unknown}; known: {sorted(model.flow)}")
    flow = {**model.flow, **{k: v for k, v in flow_overrides.items() if v is not None}}
    levels, means = _grid_and_means(model, flow)
    batch = min(int(flow["batch"]), n) if n >= 2 else int(flow["batch"])
    total = -(-n // batch) * len(levels) * int(flow["steps_per_level"])
    bar = progress_bar(total, f"dmmd sample ({model.name})", progress)
    try:
        z = mmd_flow(model.net, levels, means, n=n, dim=model.side ** 2, steps_per_level=int(flow["steps_per_level"]),
                     step_size=float(flow["step_size"]), batch=batch, generator=torch.Generator().manual_seed(seed),
                     bar=bar)
    finally:
        if bar is not None:
            bar.close()
    return to_unit(z, model.side)
