"""Train a zoo denoiser from a YAML recipe (reproducible, checkpointed, resumable).

Usage::

    python -m denoisers_zoo.train denoisers_zoo/recipes/drunet_gray.yaml [--out DIR] [--resume] [--install]

The recipe describes the whole run: ``name``, ``arch``, ``data`` (skimage.data images listed
explicitly, ``held_out``, ``channels``, ``patch``; or ``source: sklearn.digits`` with ``split`` and
``split_seed``: whole 8x8 digit images, ``denoisers_zoo.data.load_digits_split``), ``sigma`` (distribution on the [0,1] scale),
``loss``, ``optim`` (Adam, cosine lr schedule), ``steps``, ``batch``, ``seed``, ``threads``,
``max_wall_minutes``, ``checkpoint_every``, ``sigma_range``, ``device`` (``cpu`` default, or
``cuda``; ``--device`` overrides it); optionally ``init_from``
(``{file: <weights .pt relative to the repo root>, sha256: <hex>}``) to fine-tune from the
output of an earlier recipe (a two-stage training: each stage is its own recipe file); with
``widen: true`` the earlier weights may come from the same architecture with smaller widths and
are loaded by function-preserving widening (``denoisers_zoo/widen.py``).

Optional ``param_ema: <decay>`` (e.g. 0.999) keeps an exponential moving average of the weights
(Polyak averaging, decay warmed up as ``min(decay, (1 + t) / (10 + t))``) and exports the averaged
weights instead of the last iterate; the average is checkpointed with the run.

Optional ``data.dead_leaves: {images, size, share, alpha, r_min, r_max, seed}`` adds ``images``
synthetic dead-leaves images (``denoisers_zoo/dead_leaves.py``; defaults 64, 256, -, 3.0, 1.0, size,
0) to the training set; a share ``share`` of the patches comes from them (the natural images keep
their sqrt(area) weights among themselves). They are regenerated from ``seed`` at every start.

Optional ``data.scale_aug: {prob, min}`` draws a share ``prob`` of the patches from larger crops
downscaled to the patch size, by a factor log-uniform in [``min``, 1] (``PatchSampler``).

Optional ``perturbation: {type: grating, prob, amp: [lo, hi], freq: [lo, hi], window: [lo, hi]}``
adds a windowed near-Nyquist grating to a share of the noisy inputs (clean target; see
``_grating_perturbation``); ``{type: excess_noise, prob, factor: [lo, hi]}`` adds white noise of
``k σ``, ``k ~ U[factor]``, beyond the σ the network is told (``_excess_noise_perturbation``); a
list applies each.

``sigma`` distributions: ``{dist: uniform, low, high}``, ``{dist: loguniform, low, high}``
(low > 0; puts more mass at small noise levels, where PnP priors are used), ``{dist: fixed,
value}``, and ``{dist: mixture, components: [<dist>, ...], weights: [w, ...]}``.

Budget: training stops after ``steps`` steps or ``max_wall_minutes`` of training wall time
(accumulated over resumes), whichever comes first. The cosine learning-rate schedule follows
``progress = max(step / steps, wall / max_wall)`` so the rate is annealed in both cases; the
number of steps actually done is recorded in ``train_info.json`` and in the model card.

Device: on ``cuda`` the patches and noise levels still come from the CPU generator (same
stream as on the CPU); the Gaussian noise is drawn on the GPU from its own generator seeded
``seed + 1`` (its state is checkpointed too), and TF32 is switched off so the float32 training
matches the CPU arithmetic up to rounding. A GPU run is therefore not bit-identical to a CPU run.

Outputs in ``--out`` (default ``training_scratch/<recipe file stem>``): ``ckpt.pt`` (atomic, periodic),
``log.jsonl``, and at the end ``<name>.pt`` (float32 state_dict) + ``train_info.json``.
``--install`` copies the weights into ``denoisers_zoo/weights/`` and updates ``manifest.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["main", "train", "load_recipe", "sha256_file", "write_manifest", "install"]

ROOT = Path(__file__).resolve().parent
WEIGHTS_DIR = ROOT / "weights"
REQUIRED = ("name", "arch", "data", "sigma", "optim", "steps", "batch", "seed")
#: ``data.source``: patches of named skimage.data photos, or whole 8x8 images of scikit-learn's digits
DATA_SOURCES = ("skimage.data", "sklearn.digits")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_recipe(path: str | os.PathLike) -> dict:
    import yaml

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"recipe: {p} not found; pass a file from denoisers_zoo/recipes/")
    with open(p) as f:
        r = yaml.safe_load(f)
    missing = [k for k in REQUIRED if k not in r]
    if missing:
        raise ValueError(f"recipe {p.name}: missing key(s) {missing}; see denoisers_zoo/recipes/drunet_gray.yaml")
    source = r["data"].setdefault("source", "skimage.data")
    if source not in DATA_SOURCES:
        raise ValueError(f"recipe {p.name}: data.source {source!r} is not one of {DATA_SOURCES}")
    train_names = list(r["data"].setdefault("train", []))
    held = set(r["data"].get("held_out", [])) | {"camera"}
    leak = sorted(held & set(train_names))
    if leak:
        raise ValueError(f"recipe {p.name}: data.train contains held-out image(s) {leak}; remove them")
    r.setdefault("threads", 1)
    r.setdefault("max_wall_minutes", None)
    r.setdefault("checkpoint_every", 200)
    r.setdefault("log_every", 50)
    r.setdefault("loss", "mse")
    r["_recipe_path"] = str(p)
    return r


def _dead_leaves_images(cfg: dict, channels: int) -> list[torch.Tensor]:
    """The recipe's ``data.dead_leaves`` images (``[C, size, size]`` tensors), regenerated from its seed."""
    import numpy as np

    from denoisers_zoo.dead_leaves import dead_leaves_image

    known = {"images", "size", "share", "alpha", "r_min", "r_max", "seed"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"data.dead_leaves: unknown key(s) {unknown}; use {sorted(known)}")
    if "share" not in cfg or not 0.0 < float(cfg["share"]) < 1.0:
        raise ValueError(f"data.dead_leaves.share: the share of patches from synthetic images must be in (0, 1), "
                         f"got {cfg.get('share')!r}")
    n, size = int(cfg.get("images", 64)), int(cfg.get("size", 256))
    if n < 1:
        raise ValueError(f"data.dead_leaves.images: need at least 1 image, got {n}")
    rng = np.random.default_rng(int(cfg.get("seed", 0)))
    kw = {"alpha": float(cfg.get("alpha", 3.0)), "r_min": float(cfg.get("r_min", 1.0)), "r_max": cfg.get("r_max")}
    return [torch.from_numpy(dead_leaves_image(size, rng, channels=channels, **kw)) for _ in range(n)]


def _training_sampler(data: dict, channels: int):
    """Patch sampler over the recipe's ``data.train`` images, plus ``data.dead_leaves`` if set; for
    ``data.source: sklearn.digits``, whole digit images of the ``data.split`` split (``data.split_seed``)."""
    from denoisers_zoo.data import DigitsSampler, PatchSampler, load_skimage, sqrt_area_weights

    if data.get("source") == "sklearn.digits":
        if channels != 1:
            raise ValueError(f"data.source sklearn.digits: the digits are gray; set arch.channels to 1, not {channels}")
        return DigitsSampler(str(data.get("split", "train")), seed=int(data.get("split_seed", 0)))

    images = [load_skimage(n, channels) for n in data["train"]]
    weights = sqrt_area_weights(images)
    if data.get("dead_leaves"):
        synthetic = _dead_leaves_images(data["dead_leaves"], channels)
        share = float(data["dead_leaves"]["share"])
        weights = [w * (1.0 - share) / sum(weights) for w in weights] + [share / len(synthetic)] * len(synthetic)
        images += synthetic
    return PatchSampler(images, int(data["patch"]), weights, scale_aug=data.get("scale_aug"))


def _sample_sigma(cfg: dict, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``batch`` noise levels from the recipe's ``sigma`` distribution (see module doc)."""
    dist = cfg.get("dist", "uniform")
    if dist == "uniform":
        lo, hi = float(cfg["low"]), float(cfg["high"])
        return lo + (hi - lo) * torch.rand(batch, generator=generator)
    if dist == "loguniform":
        lo, hi = float(cfg["low"]), float(cfg["high"])
        if not 0.0 < lo < hi:
            raise ValueError(f"sigma: loguniform needs 0 < low < high, got low={lo}, high={hi}")
        return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(batch, generator=generator))
    if dist == "fixed":
        return torch.full((batch,), float(cfg["value"]))
    if dist == "mixture":
        comps, w = list(cfg["components"]), torch.tensor(cfg["weights"], dtype=torch.float64)
        if len(comps) != len(w) or len(comps) == 0 or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("sigma: mixture needs as many non-negative weights as components (and at least one)")
        pick = torch.multinomial(w / w.sum(), batch, replacement=True, generator=generator)
        draws = torch.stack([_sample_sigma(c, batch, generator) for c in comps])  # [K, batch]
        return draws.gather(0, pick.view(1, -1)).view(-1)
    raise ValueError(f"sigma.dist: unknown {dist!r}; use uniform, loguniform, fixed or mixture")


def _grating_perturbation(cfg: dict, shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """Structured input perturbation for a share ``prob`` of the batch (the target stays clean).

    Each picked patch gets one windowed sinusoidal grating ``a·cos(2π f (u·cosθ + v·sinθ) + φ)
    · exp(−((u−u0)² + (v−v0)²)/(2 w²))`` with ``a ~ U[amp]``, radial frequency ``f ~ U[freq]``
    (cycles/pixel), ``θ, φ, (u0, v0)`` uniform and window std ``w ~ U[window]`` pixels.
    Why [CHOICE]: a denoiser trained on Gaussian noise alone treats a large near-Nyquist stripe
    as texture (lipdncnn_gray_s5 stage 2 removes 75-89 % of a 0.02-amplitude grating but ~0 % or
    less of a 0.3-amplitude one), so under a blur that cannot see such stripes PnP chains let them
    grow until the box (cameraman 256², the tripod legs). Showing the network such stripes with the
    clean target gives the prior a restoring force there.
    """
    b, c, h, w = shape
    rnd = lambda lo_hi, n=b: float(lo_hi[0]) + (float(lo_hi[1]) - float(lo_hi[0])) * torch.rand(n, generator=generator)
    pick = (torch.rand(b, generator=generator) < float(cfg["prob"])).float()
    amp, freq, win = rnd(cfg["amp"]), rnd(cfg["freq"]), rnd(cfg["window"])
    theta, phase = rnd((0.0, math.pi)), rnd((0.0, 2 * math.pi))
    u0, v0 = rnd((0.0, h - 1.0)), rnd((0.0, w - 1.0))
    uu = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    vv = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    arg = 2 * math.pi * freq.view(-1, 1, 1) * (uu * torch.cos(theta).view(-1, 1, 1) + vv * torch.sin(theta).view(-1, 1, 1))
    window = torch.exp(-((uu - u0.view(-1, 1, 1)) ** 2 + (vv - v0.view(-1, 1, 1)) ** 2) / (2 * win.view(-1, 1, 1) ** 2))
    g = (pick * amp).view(-1, 1, 1) * torch.cos(arg + phase.view(-1, 1, 1)) * window
    return g.unsqueeze(1).expand(b, c, h, w)


def _excess_noise_perturbation(cfg: dict, sigma: torch.Tensor, shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """More white noise than the network is told, for a share ``prob`` of the batch: ``k σ n`` with
    ``k ~ U[factor]`` (the target stays clean). Why [CHOICE]: in a PnP-DM chain at a small coupling
    ρ the texture a prior step leaves behind is, at the next sweep, extra noise in an input said to
    hold noise ρ; a network that never saw such inputs keeps it as image, and the chain fills what
    the blur cannot see with noise (docs/algorithms.md §diffusion). Measured: it holds the chain only
    where it also makes the network over-smooth (recipe ``drunet_gray_pnpdm.yaml``)."""
    b = shape[0]
    pick = (torch.rand(b, generator=generator) < float(cfg["prob"])).float()
    lo, hi = (float(v) for v in cfg["factor"])
    k = lo + (hi - lo) * torch.rand(b, generator=generator)
    return (pick * k * sigma.cpu()).view(-1, 1, 1, 1) * torch.randn(shape, generator=generator)


_PERTURBATIONS = {"grating": lambda cfg, sigma, shape, gen: _grating_perturbation(cfg, shape, gen),
                  "excess_noise": _excess_noise_perturbation}


def _perturbation(cfg: dict | list, sigma: torch.Tensor, shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """The sum of the recipe's input perturbations (one dict or a list of them, each with a ``type``)."""
    out = torch.zeros(shape)
    for one in cfg if isinstance(cfg, list) else [cfg]:
        kind = one.get("type", "grating")
        if kind not in _PERTURBATIONS:
            raise ValueError(f"recipe perturbation.type: {kind!r} is not one of {sorted(_PERTURBATIONS)}")
        out = out + _PERTURBATIONS[kind](one, sigma, shape, generator)
    return out


def _load_init(net, init: dict) -> None:
    """Fine-tuning start: load ``init['file']`` (repo-relative) after checking its sha256."""
    path = Path(init["file"])
    if not path.is_absolute():
        path = ROOT.parent / path
    if not path.exists():
        raise FileNotFoundError(f"init_from.file: {path} not found; train the earlier stage's recipe first")
    want = str(init.get("sha256", ""))
    got = sha256_file(path)
    if want and got != want:
        raise ValueError(f"init_from.sha256: {path} has sha256 {got}, recipe expects {want}; retrain the earlier stage")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if init.get("widen", False):
        from denoisers_zoo.widen import widen_state_into

        widen_state_into(net, state)
        print(f"[train] initialised by function-preserving widening of {path} (sha256 {got[:12]}...)", flush=True)
    else:
        net.load_state_dict(state)
        print(f"[train] initialised from {path} (sha256 {got[:12]}...)", flush=True)


def _lr(optim: dict, progress: float) -> float:
    """Learning rate at ``progress`` in [0, 1]: linear warm-up, then cosine to ``lr_min`` (or constant)."""
    lr0 = float(optim.get("lr", 1e-3))
    lr_min = float(optim.get("lr_min", lr0 * 0.01))
    warm = float(optim.get("warmup", 0.0))
    if progress < warm:
        return lr0 * (0.1 + 0.9 * progress / warm)
    if optim.get("schedule", "cosine") == "constant":
        return lr0
    t = min(1.0, (progress - warm) / max(1e-12, 1 - warm))
    return lr_min + 0.5 * (lr0 - lr_min) * (1 + math.cos(math.pi * t))


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` all or nothing: ``write(tmp)`` fills ``<path>.tmp``, which then replaces ``path``
    in one rename, so a reader (or a crash) never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _atomic_save(obj, path: Path) -> None:
    """``torch.save(obj, path)``, atomically (checkpoints, exported weights)."""
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_manifest(data: dict, path: Path) -> None:
    """Write the weights manifest atomically, in its one format (sorted keys, indent 2, final newline)."""
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def _psnr_of_mse(mse: float) -> float:
    """PSNR (dB, peak 1) of a mean squared error, floored at 1e-12 so a zero error stays finite."""
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def _hardware(device: torch.device | None = None) -> str:
    """One line naming the machine: the GPU on CUDA, else the CPU model and logical CPU count; torch version."""
    if device is not None and device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}; {os.cpu_count()} logical CPU(s); torch {torch.__version__}"


def _export_state(net) -> dict:
    """The float32 state_dict to ship (LipDnCNN: norms refined and folded onto the frequency grid first)."""
    from denoisers_zoo.nets import LipDnCNN

    if isinstance(net, LipDnCNN):
        net.refine_norms(200)  # converge the 32x32 circular power iteration
        net.fold_grid_norms(128)  # then make each conv <= 1 on a 128x128 grid of Z^2 frequencies
    return {k: v.detach().to(torch.float32).clone().contiguous() for k, v in net.state_dict().items()}


def _float_state(net) -> dict:
    """Copy of the floating-point entries of ``net.state_dict()`` (start of the weight average)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items() if v.dtype.is_floating_point}


@torch.no_grad()
def _update_average(avg: dict, net, decay: float) -> None:
    """Polyak/EMA weight average, in place: ``avg <- decay * avg + (1 - decay) * theta``."""
    state = net.state_dict()
    for k, v in avg.items():
        v.mul_(decay).add_(state[k].detach(), alpha=1.0 - decay)


def _training_device(name: str) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device: {name!r} asked for but torch sees no CUDA GPU; use --device cpu")
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        return torch.device(name)
    raise ValueError(f"device: {name!r} is not a training device; use cpu or cuda")


@dataclass
class _Run:
    """The state of one training run: what is built from the recipe, and what each step advances
    (and the checkpoint saves): ``step``, ``wall`` (training seconds), ``ema`` (smoothed batch MSE),
    ``avg`` (the ``param_ema`` weight average, or None)."""

    net: torch.nn.Module
    opt: torch.optim.Optimizer
    gen: torch.Generator  # patches, noise levels, perturbations (and the noise on the CPU)
    noise_gen: torch.Generator  # the Gaussian noise: ``gen`` on the CPU, its own generator on a GPU
    sampler: object
    dev: torch.device
    ckpt_path: Path
    steps: int
    batch: int
    max_wall_s: float | None
    step: int = 0
    wall: float = 0.0
    ema: float | None = None
    avg: dict | None = None

    def progress(self) -> float:
        """Share of the budget used: the larger of steps done / ``steps`` and wall / ``max_wall_minutes``."""
        p = self.step / self.steps
        if self.max_wall_s:
            p = max(p, self.wall / self.max_wall_s)
        return p


def _check_param_ema(recipe: dict) -> float | None:
    """The recipe's ``param_ema`` decay (None if unset); refuses one outside (0, 1)."""
    ema_decay = recipe.get("param_ema")
    if ema_decay is not None and not 0.0 < float(ema_decay) < 1.0:
        raise ValueError(f"recipe {recipe['name']}: param_ema must be a decay in (0, 1), e.g. 0.999; got {ema_decay!r}")
    return ema_decay


def _build_run(recipe: dict, out: Path | None, device: str | None) -> tuple[_Run, Path]:
    """Build a fresh run from the recipe: threads, device, patch sampler, output folder, then the
    seeded network, its Adam optimiser and the random generators. Returns the run and the folder.
    The data is checked before the folder is made, so a bad recipe writes nothing."""
    from denoisers_zoo.nets import build_net

    torch.set_num_threads(int(recipe["threads"]))
    dev = _training_device(device or str(recipe.get("device", "cpu")))
    sampler = _training_sampler(recipe["data"], int(recipe["arch"]["channels"]))
    out = Path(out) if out is not None else Path.cwd() / "training_scratch" / recipe["name"]
    out.mkdir(parents=True, exist_ok=True)
    max_wall = recipe.get("max_wall_minutes")

    torch.manual_seed(int(recipe["seed"]))  # only for parameter init (script, not library code)
    net = build_net(recipe["arch"]).to(dev)
    net.train()
    opt = torch.optim.Adam(
        net.parameters(),
        lr=float(recipe["optim"].get("lr", 1e-3)),
        betas=tuple(recipe["optim"].get("betas", (0.9, 0.999))),
        weight_decay=float(recipe["optim"].get("weight_decay", 0.0)),
    )
    gen = torch.Generator().manual_seed(int(recipe["seed"]))
    noise_gen = gen if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(int(recipe["seed"]) + 1)
    run = _Run(net=net, opt=opt, gen=gen, noise_gen=noise_gen, sampler=sampler, dev=dev, ckpt_path=out / "ckpt.pt",
               steps=int(recipe["steps"]), batch=int(recipe["batch"]),
               max_wall_s=None if max_wall is None else float(max_wall) * 60.0)
    return run, out


def _restore_checkpoint(run: _Run) -> None:
    """Load ``run.ckpt_path`` into the run: weights, optimiser, generators, counters, weight average."""
    ck = torch.load(run.ckpt_path, map_location="cpu", weights_only=True)
    run.net.load_state_dict(ck["model"])
    run.opt.load_state_dict(ck["optim"])
    run.gen.set_state(ck["generator"])
    if run.noise_gen is not run.gen and "noise_generator" in ck:
        run.noise_gen.set_state(ck["noise_generator"].cpu())
    run.step, run.wall, run.ema = int(ck["step"]), float(ck["wall"]), ck.get("ema")
    avg = ck.get("param_ema")
    run.avg = None if avg is None else {k: v.to(run.dev) for k, v in avg.items()}


def _restore_or_init(run: _Run, recipe: dict, ema_decay: float | None, *, resume: bool, snapshot: bool) -> None:
    """Continue from the checkpoint (``resume``/``snapshot``, when there is one), else start from the
    seeded initialisation or ``init_from``; then set up the weight average the recipe asks for."""
    if snapshot and not run.ckpt_path.exists():
        raise FileNotFoundError(f"--snapshot: no checkpoint {run.ckpt_path}; start the training first")
    if (resume or snapshot) and run.ckpt_path.exists():
        _restore_checkpoint(run)
        print(f"[train] resumed {recipe['name']} at step {run.step} (wall {run.wall / 60:.1f} min)", flush=True)
    else:
        if run.ckpt_path.exists() and not resume:
            print(f"[train] {run.ckpt_path} exists; starting from scratch (pass --resume to continue)", flush=True)
        if recipe.get("init_from"):
            _load_init(run.net, recipe["init_from"])

    if ema_decay is None:
        run.avg = None  # a checkpoint's average is ignored when the recipe no longer asks for one
    elif run.avg is None:  # fresh run (or a checkpoint from before param_ema was set)
        run.avg = _float_state(run.net)


def _save_checkpoint(run: _Run) -> None:
    """Write the run's full state to ``run.ckpt_path`` (atomically), enough for a bit-exact resume."""
    _atomic_save(
        {"model": run.net.state_dict(), "optim": run.opt.state_dict(), "generator": run.gen.get_state(),
         "step": run.step, "wall": run.wall, "ema": run.ema, **({"param_ema": run.avg} if run.avg is not None else {}),
         **({"noise_generator": run.noise_gen.get_state()} if run.noise_gen is not run.gen else {})},
        run.ckpt_path,
    )


def _train_step(run: _Run, recipe: dict, ema_decay: float | None) -> float:
    """One optimisation step on a fresh noisy batch; advances ``step``, ``wall``, ``ema`` and the
    weight average. Returns the learning rate used."""
    t0 = time.perf_counter()
    lr = _lr(recipe["optim"], run.progress())
    for g in run.opt.param_groups:
        g["lr"] = lr
    x = run.sampler.sample(run.batch, run.gen).to(run.dev, non_blocking=True)
    s = _sample_sigma(recipe["sigma"], run.batch, run.gen).to(run.dev)
    y = x + s.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=run.noise_gen, device=run.dev)
    if recipe.get("perturbation"):
        y = y + _perturbation(recipe["perturbation"], s, tuple(x.shape), run.gen).to(run.dev)
    err = run.net(y, s) - x
    mse = err.pow(2).mean()
    if recipe.get("loss", "mse") == "edm":  # Karras et al. 2022 eq. (8): weight 1/c_out(sigma)^2 per sample
        from denoisers_zoo.edm import edm_loss_weight

        loss = (err.pow(2).mean(dim=(1, 2, 3)) * edm_loss_weight(s, float(recipe["arch"].get("sigma_data", 0.25)))).mean()
    else:
        loss = mse if recipe.get("loss", "mse") == "mse" else err.abs().mean()
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.step += 1
    if run.avg is not None:
        _update_average(run.avg, run.net, min(float(ema_decay), (1.0 + run.step) / (10.0 + run.step)))
    mse_v = float(mse.detach())  # waits for the step to finish (a GPU runs asynchronously)
    run.wall += time.perf_counter() - t0
    run.ema = mse_v if run.ema is None else 0.98 * run.ema + 0.02 * mse_v
    return lr


def _training_loop(run: _Run, recipe: dict, ema_decay: float | None, log_f, bar) -> None:
    """Step until the budget is used, logging every ``log_every`` steps to the bar and ``log_f``
    and checkpointing every ``checkpoint_every`` steps."""
    last_ck = run.step
    while run.progress() < 1.0:
        lr = _train_step(run, recipe, ema_decay)
        bar.update(1)
        if run.step % int(recipe["log_every"]) == 0:
            psnr = _psnr_of_mse(run.ema)
            bar.set_postfix(loss=f"{run.ema:.2e}", psnr=f"{psnr:.2f}", lr=f"{lr:.1e}")
            log_f.write(json.dumps({"step": run.step, "wall_s": round(run.wall, 1), "mse_ema": run.ema,
                                    "psnr_ema": psnr, "lr": lr}) + "\n")
            log_f.flush()
        if run.step - last_ck >= int(recipe["checkpoint_every"]):
            _save_checkpoint(run)
            last_ck = run.step


def _export_weights(run: _Run, path: Path) -> None:
    """Save the weights to export (the weight average if kept, else the last iterate; LipDnCNN norms
    folded) as a float32 CPU state_dict at ``path``. Leaves the network in eval mode."""
    run.net.eval()
    if run.avg is not None:
        run.net.load_state_dict({**run.net.state_dict(), **run.avg})
    state = {k: v.cpu() for k, v in _export_state(run.net).items()}
    _atomic_save(state, path)


def _train_info(run: _Run, recipe: dict, weights: Path) -> dict:
    """The ``train_info.json`` record of a finished (or snapshot) run whose weights are ``weights``."""
    from denoisers_zoo.nets import count_parameters

    if run.progress() < 1.0:
        stopped_by = "snapshot (training unfinished)"
    else:
        stopped_by = "steps" if run.step >= run.steps else "max_wall_minutes"
    return {
        "name": recipe["name"],
        "recipe": recipe["_recipe_path"],
        "steps_done": run.step,
        "steps_planned": run.steps,
        "stopped_by": stopped_by,
        "train_wall_minutes": round(run.wall / 60.0, 2),
        "final_mse_ema": run.ema,
        "final_train_psnr_ema": _psnr_of_mse(run.ema),
        "threads": int(recipe["threads"]),
        "hardware": _hardware(run.dev),
        "device": str(run.dev),
        "parameters": count_parameters(run.net),
        "sha256": sha256_file(weights),
        "file": weights.name,
        "size_bytes": weights.stat().st_size,
    }


def train(recipe: dict, out: str | os.PathLike | None = None, *, resume: bool = False, progress_bar: bool = True,
          snapshot: bool = False, device: str | None = None) -> dict:
    """Run (or resume) the training described by ``recipe``; returns the train_info dict.

    ``snapshot=True`` exports the weights of ``out/ckpt.pt`` as they are (no training step; safe
    while the training is still running, the checkpoint being replaced atomically)."""
    from tqdm import tqdm

    ema_decay = _check_param_ema(recipe)
    run, out = _build_run(recipe, out, device)
    _restore_or_init(run, recipe, ema_decay, resume=resume, snapshot=snapshot)
    with open(out / "log.jsonl", "a") as log_f:
        if not snapshot:
            bar = tqdm(total=run.steps, initial=run.step, disable=not progress_bar, mininterval=20,
                       dynamic_ncols=False, ncols=100, file=sys.stdout)
            _training_loop(run, recipe, ema_decay, log_f, bar)
            bar.close()
            _save_checkpoint(run)

    weights = out / f"{recipe['name']}.pt"
    _export_weights(run, weights)
    info = _train_info(run, recipe, weights)
    with open(out / "train_info.json", "w") as f:
        json.dump(info, f, indent=2)
    print(f"[train] wrote {weights} ({info['size_bytes'] / 1e6:.2f} MB) after {run.step} steps, "
          f"{info['train_wall_minutes']:.1f} min; sha256 {info['sha256']}", flush=True)
    return info


def install(recipe: dict, out: str | os.PathLike, *, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Copy ``out/<name>.pt`` into ``weights_dir`` and record it in ``manifest.json``."""
    out = Path(out)
    info = json.loads((out / "train_info.json").read_text())
    name = recipe["name"]
    weights_dir.mkdir(parents=True, exist_ok=True)
    dst = weights_dir / f"{name}.pt"
    shutil.copyfile(out / f"{name}.pt", dst)
    manifest_path = weights_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    old = manifest["models"].get(name, {})
    try:
        recipe_rel = str(Path(recipe["_recipe_path"]).resolve().relative_to(ROOT.parent))
    except ValueError:
        recipe_rel = recipe["_recipe_path"]
    manifest["models"][name] = {
        "file": dst.name,
        "sha256": sha256_file(dst),
        "arch": recipe["arch"],
        "channels": int(recipe["arch"]["channels"]),
        "sigma_range": [float(v) for v in recipe["sigma_range"]],
        "blind": bool(recipe.get("blind", False)),
        "lipschitz": old.get("lipschitz") if old.get("sha256") == info["sha256"] else None,
        "recipe": recipe_rel,
        **({"data_source": recipe["data"]["source"]} if recipe["data"].get("source", "skimage.data") != "skimage.data" else {}),
        "train": {k: info[k] for k in ("steps_done", "steps_planned", "stopped_by", "train_wall_minutes",
                                         "final_train_psnr_ema", "threads", "hardware", "parameters")}
                  | {"device": info.get("device", "cpu")},
    }
    write_manifest(manifest, manifest_path)
    print(f"[train] installed {dst} in {manifest_path}", flush=True)
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m denoisers_zoo.train", description="Train a zoo denoiser from a YAML recipe.")
    ap.add_argument("recipe", help="path to a recipe YAML (denoisers_zoo/recipes/*.yaml)")
    ap.add_argument("--out", default=None, help="output folder (default training_scratch/<name>)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt if present")
    ap.add_argument("--install", action="store_true", help="copy weights into denoisers_zoo/weights and update manifest.json")
    ap.add_argument("--install-only", action="store_true", help="skip training; install an existing OUT/<name>.pt")
    ap.add_argument("--snapshot", action="store_true", help="export the current OUT/ckpt.pt without training (fallback)")
    ap.add_argument("--max-wall-minutes", dest="max_wall_minutes", type=float, default=None,
                    help="override the recipe's training wall-time budget (e.g. a smoke run of a GPU recipe)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: the recipe's device key, else cpu)")
    ap.add_argument("--no-progress", action="store_true", help="disable the tqdm progress bar")
    a = ap.parse_args(argv)
    recipe = load_recipe(a.recipe)
    if a.max_wall_minutes is not None:
        recipe["max_wall_minutes"] = a.max_wall_minutes
    out = a.out or str(ROOT.parent / "training_scratch" / Path(a.recipe).stem)
    if not a.install_only:
        train(recipe, out, resume=a.resume, progress_bar=not a.no_progress, snapshot=a.snapshot, device=a.device)
    if a.install or a.install_only:
        install(recipe, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
