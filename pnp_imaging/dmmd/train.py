"""Training of the DMMD feature network from a recipe: resumable, single-threaded by default.

``train(recipe, out, data=None, resume=False)`` runs ``objective.dmmd_loss`` with Adam and a
cosine learning rate, checkpoints ``out/checkpoint.pt`` (network, optimiser, step, generator state,
loss history) every ``checkpoint_every`` steps and at the end, stops at ``steps`` or
``max_wall_minutes`` of training time, and exports ``out/<name>.pt`` (weights + the flow's cached
data mean features, ``store.export_model``) with ``out/train_info.json``.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pnp_imaging._io import atomic_torch_save
from pnp_imaging.dmmd.features import FeatureNet, init_parameters
from pnp_imaging.dmmd.noising import to_signed
from pnp_imaging.dmmd.objective import dmmd_loss

__all__ = ["train", "training_data", "TrainResult"]


@dataclass
class TrainResult:
    """What a training run leaves: the network, its loss history and where the export lies."""

    net: FeatureNet
    losses: list = field(default_factory=list)
    steps_done: int = 0
    wall_minutes: float = 0.0
    stopped_by: str = "steps"
    weights: Path | None = None


def training_data(recipe: dict) -> torch.Tensor:
    """The recipe's training images ``[n, 1, h, w]`` in [0, 1] (``data.source: digits`` → the
    shared digits loader, ``data.split``/``data.seed``)."""
    data = recipe["data"]
    if data.get("source") != "digits":
        raise ValueError(f"data.source: {data.get('source')!r} is not supported; use digits")
    from pnp_imaging.analyses.digits import load_digits_images

    return load_digits_images(data.get("split", "train"), seed=int(data.get("seed", 0)))


def _learning_rate(optim: dict, progress: float) -> float:
    """Cosine decay from ``lr`` to ``lr_min`` over the planned steps."""
    lr, lr_min = float(optim["lr"]), float(optim["lr_min"])
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * min(1.0, progress)))


def _save_checkpoint(path: Path, net, opt, step: int, gen: torch.Generator, losses: list, wall_s: float) -> None:
    atomic_torch_save({"net": net.state_dict(), "optim": opt.state_dict(), "step": step, "rng": gen.get_state(),
                       "losses": torch.tensor(losses, dtype=torch.float64), "wall_s": wall_s}, path)


def _restore(path: Path, net, opt, gen: torch.Generator) -> tuple[int, list, float]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(ck["net"])
    opt.load_state_dict(ck["optim"])
    gen.set_state(ck["rng"])
    print(f"[dmmd train] resumed at step {int(ck['step'])} from {path}", file=sys.stderr, flush=True)
    return int(ck["step"]), ck["losses"].tolist(), float(ck["wall_s"])


def _setup(recipe: dict, x: torch.Tensor, out: Path, resume: bool):
    """Network, optimiser and generator, restored from ``out/checkpoint.pt`` with ``resume``."""
    gen = torch.Generator().manual_seed(int(recipe["seed"]))
    net = FeatureNet(dim=x.shape[1], **recipe["arch"])
    init_parameters(net, gen)
    opt = torch.optim.Adam(net.parameters(), lr=float(recipe["optim"]["lr"]))
    ck = out / "checkpoint.pt"
    if resume and not ck.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {ck}; run without --resume to start")
    step, losses, wall = _restore(ck, net, opt, gen) if resume else (0, [], 0.0)
    return net, opt, gen, step, losses, wall


def _loop(recipe: dict, x: torch.Tensor, out: Path, state, bar) -> tuple[int, list, float, str]:
    """The optimisation loop; returns steps done, losses, training seconds and the stop reason."""
    net, opt, gen, step, losses, wall = state
    obj, steps = recipe["objective"], int(recipe["steps"])
    limit = float(recipe["max_wall_minutes"]) * 60 if recipe.get("max_wall_minutes") else math.inf
    stopped_by, t0 = "steps", time.perf_counter() - wall
    while step < steps:
        if time.perf_counter() - t0 >= limit:
            stopped_by = "max_wall_minutes"
            break
        for g in opt.param_groups:
            g["lr"] = _learning_rate(recipe["optim"], step / steps)
        loss, parts = dmmd_loss(net, x, levels=int(obj["levels"]), batch=int(obj["batch"]), t_min=float(obj["t_min"]),
                                gp_weight=float(obj["gp_weight"]), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            if step % int(recipe["log_every"]) == 0:
                bar.set_postfix(loss=f"{loss:.4f}", mmd2=f"{parts['mmd2']:.4f}", gp=f"{parts['gp']:.4f}")
        if step % int(recipe["checkpoint_every"]) == 0:
            _save_checkpoint(out / "checkpoint.pt", net, opt, step, gen, losses, time.perf_counter() - t0)
    wall = time.perf_counter() - t0
    _save_checkpoint(out / "checkpoint.pt", net, opt, step, gen, losses, wall)
    return step, losses, wall, stopped_by


def train(recipe: dict, out: str | os.PathLike, *, data: torch.Tensor | None = None, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Train (or resume) the recipe's feature network; ``data`` ``[n, 1, h, w]`` in [0, 1] replaces
    the recipe's data source (tests). Exports the weights and ``train_info.json`` into ``out``."""
    from pnp_imaging.dmmd.store import export_model
    from pnp_imaging.progress import progress_bar

    images = training_data(recipe) if data is None else data
    x = to_signed(images.float())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(recipe.get("threads") or 1))
    state = _setup(recipe, x, out, resume)
    bar = progress_bar(int(recipe["steps"]), "dmmd train", progress)
    if bar is not None:
        bar.update(state[3])
    try:
        step, losses, wall, stopped_by = _loop(recipe, x, out, state, bar)
    finally:
        if bar is not None:
            bar.close()
    result = TrainResult(state[0], losses, step, wall / 60, stopped_by)
    result.weights = export_model(result, recipe, images, out)
    return result
