"""Shared helpers of the benchmarks: CLI, machine info, provenance (git state and weights),
denoiser loading with fallback, problems (ours and deepinv's twin), interleaved timing, JSON output.

Every benchmark writes ``<out>/<name>.json`` with at least these keys::

    benchmark, status, mode, created_utc, command, machine, provenance, torch_threads, config,
    denoiser, raw, ratios, notes

``provenance`` (:func:`provenance`) records the git commit, whether the tree was clean
(``git status --porcelain`` empty) and the sha256 of every weights file the run used, so that
``python -m bench.stale`` can tell a result produced with other weights than the shipped ones.
``ratios`` are quotients of quantities measured **in the same run** (the project rule); raw
seconds are kept for inspection only and are not comparable across machines or runs.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIGMA_Y = 1.0 / 255.0
EPS = (5.0 / 255.0) ** 2  # denoiser noise VARIANCE (PnP-ULA epsilon), the project default

__all__ = [
    "ROOT", "RESULTS_DIR", "SIGMA_Y", "EPS", "base_parser", "add_int_options", "apply_overrides", "start", "setup",
    "machine_info", "git_state", "zoo_weights", "file_weights", "provenance", "default_denoiser", "load_denoiser",
    "resolve_lipschitz", "score_prior", "load_image", "blur_problem", "inpainting_problem", "deepinv_physics",
    "operator_mismatch", "interleaved", "median", "write_result", "write_json", "Stopwatch", "log", "settled",
    "thin_curve",
]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--quick", action="store_true", help="small sizes / budgets (a few minutes on a laptop CPU)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiniest settings, for tests only: checks the plumbing, numbers are meaningless")
    ap.add_argument("--out", default=str(RESULTS_DIR), help="output folder (default bench/results)")
    ap.add_argument("--denoiser", default=default_denoiser(),
                    help="zoo denoiser name (default: the library's gray prior, denoisers_zoo.default_prior(1))")
    ap.add_argument("--fallback", choices=("auto", "checkpoint", "untrained", "error"), default="auto",
                    help="if the zoo weights are missing: 'auto' = in-progress training checkpoint "
                         "training_scratch/<name>/ckpt.pt if present, else an untrained network of the "
                         "recipe's architecture; 'error' = stop")
    ap.add_argument("--lipschitz", default="card",
                    help="residual Lipschitz constant L of the denoiser: a number, 'card' (model card value, "
                         "measured if the card has none) or 'measure'")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: stable ratios on a shared machine; 0 = torch default)")
    ap.add_argument("--denoiser-device", dest="denoiser_device", default="cpu",
                    help="device of the denoiser network only (e.g. cuda): operators, chains and statistics stay "
                         "on the CPU (denoisers_zoo.OffloadedDenoiser); both contenders get the same wrapped network")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image", default=str(ROOT / "data" / "cameraman.png"))
    return ap


def default_denoiser() -> str:
    """The library's default prior for gray images (``denoisers_zoo.default_prior(1)``; its name
    even when its weights are missing, so that the fallback of :func:`load_denoiser` applies)."""
    import denoisers_zoo

    try:
        return denoisers_zoo.default_prior(1)
    except ValueError:
        return denoisers_zoo.SAMPLING_PRIORS[1]


def add_int_options(ap: argparse.ArgumentParser, helps: dict[str, str | None]) -> None:
    """``--a-b`` integer options (default None: the mode's setting) for ``{"a_b": help}``."""
    for key, text in helps.items():
        ap.add_argument("--" + key.replace("_", "-"), dest=key, type=int, default=None, help=text)


def choices(flag: str, value: str, allowed) -> list[str]:
    """The comma-separated names of ``value``, each checked against ``allowed`` (one-line exit)."""
    picked = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in picked if v not in allowed]
    if unknown or not picked:
        raise SystemExit(f"{flag}: unknown {unknown or value!r}; choose from {', '.join(allowed)}")
    return picked


def apply_overrides(settings: dict, args) -> dict:
    """Replace each setting by the CLI value of the same name when one was given; ``--full-image``
    clears ``crop``."""
    for key in list(settings):
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    if getattr(args, "full_image", False):
        settings["crop"] = None
    return settings


def start(parser: argparse.ArgumentParser, argv: list[str] | None, settings: Callable | None = None):
    """Parse ``argv`` (kept as ``args.argv`` for the result's command line), :func:`setup`, read
    the machine; returns ``(args, machine_info(), settings(args))``."""
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    setup(args)
    return args, machine_info(), (settings(args) if settings is not None else None)


_MALLOC_KEPT = None


def setup(args) -> None:
    global _MALLOC_KEPT
    from denoisers_zoo.cpu_alloc import keep_freed_memory

    _MALLOC_KEPT = keep_freed_memory()  # same allocator settings for our code and the anchors (see its doc)
    if args.threads and args.threads > 0:
        torch.set_num_threads(int(args.threads))
    # script, not library code: the global seed only makes deepinv's internal randn reproducible
    torch.manual_seed(int(args.seed))


# --------------------------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import deepinv

    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_bytes": _mem_total(),
        "loadavg_1_5_15": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "deepinv": deepinv.__version__,
        "numpy": np.__version__,
        "malloc_keep_freed_memory": _MALLOC_KEPT,
    }


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------------------------
# provenance: git state and weights files
# --------------------------------------------------------------------------------------------
def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def git_state() -> dict:
    """``commit`` (HEAD), ``clean`` (``git status --porcelain`` empty; None without git) and the
    first 40 ``changes`` (porcelain lines) when it is not."""
    status = _git("status", "--porcelain")
    changes = status.splitlines() if status else []
    return {"commit": _git("rev-parse", "HEAD"), "clean": None if status is None else not changes,
            "n_changes": len(changes), "changes": changes[:40]}


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def file_weights(model: str, path, source: str) -> dict:
    """Weights record of a file hashed here (``path`` None: a network without weights file)."""
    if path is None:
        return {"model": model, "file": None, "sha256": None, "source": source}
    from denoisers_zoo.train import sha256_file

    return {"model": model, "file": _relative(path), "sha256": sha256_file(path), "source": source}


def zoo_weights(name: str) -> dict:
    """Weights record of the zoo model ``name``: its file and sha256 from the manifest
    (``denoisers_zoo.load`` refuses a file whose sha256 differs from it)."""
    import denoisers_zoo

    manifest = Path(os.environ.get("DENOISERS_ZOO_MANIFEST") or denoisers_zoo.MANIFEST_PATH)  # as zoo.load
    entry = denoisers_zoo.read_manifest(manifest)["models"][name]
    return {"model": name, "file": _relative(manifest.parent / entry["file"]), "sha256": entry["sha256"],
            "source": "zoo manifest (checked by denoisers_zoo.load)"}


def provenance(weights: list[dict]) -> dict:
    """What a result was computed from: the git state (:func:`git_state`) and one record per
    weights file used (:func:`zoo_weights`, :func:`file_weights`)."""
    return {"git": git_state(), "weights": list(weights)}


# --------------------------------------------------------------------------------------------
# denoiser
# --------------------------------------------------------------------------------------------
def load_denoiser(name: str, fallback: str = "auto", device: str = "cpu"):
    """``(denoiser, info)``: the zoo model, or (weights missing) a fallback of the same
    architecture, announced on stderr and recorded in ``info`` (``source``, ``trained``).
    ``device`` other than cpu: the network runs there, wrapped in ``OffloadedDenoiser``."""
    den, info = _load_denoiser(name, fallback)
    if str(device) == "cpu":
        return den, info
    from denoisers_zoo.base import OffloadedDenoiser

    info["network_device"] = str(device)
    if torch.device(device).type == "cuda":
        info["network_device_name"] = torch.cuda.get_device_name(torch.device(device))
    return OffloadedDenoiser(den, device).eval(), info


def _load_denoiser(name: str, fallback: str = "auto"):
    import denoisers_zoo

    try:
        den = denoisers_zoo.load(name)
    except (ValueError, FileNotFoundError) as e:
        if fallback == "error":
            raise SystemExit(f"--denoiser {name}: {e}") from None
        return _fallback_denoiser(name, fallback, str(e))
    return den.eval(), _zoo_info(name, den)


def _zoo_info(name: str, den) -> dict:
    """Info of a zoo model: trained or a snapshot of an unfinished training (announced)."""
    import denoisers_zoo

    train = denoisers_zoo.read_manifest()["models"].get(name, {}).get("train") or {}
    done, planned = train.get("steps_done"), train.get("steps_planned")
    unfinished = "unfinished" in str(train.get("stopped_by", "")) or (
        done is not None and planned is not None and done < planned and train.get("stopped_by") != "max_wall_minutes")
    info: dict[str, Any] = {"requested": name, "source": "zoo", "trained": "partial" if unfinished else True,
                            "name": getattr(den, "name", name), "lipschitz_card": getattr(den, "lipschitz", None),
                            "train": train, "weights": zoo_weights(name)}
    if unfinished:
        info["message"] = (f"zoo model {name!r} is a snapshot of an unfinished training ({done}/{planned} steps): "
                           "TIMINGS are representative, PSNR/MMSE numbers are provisional")
        log("WARNING: " + info["message"])
    return info


def _fallback_denoiser(name: str, fallback: str, err: str):
    """The recipe's architecture with the training checkpoint's weights, or untrained (seeded)."""
    import yaml

    from denoisers_zoo.nets import NetDenoiser, build_net

    recipe = ROOT / "denoisers_zoo" / "recipes" / f"{name}.yaml"
    if not recipe.is_file():
        raise SystemExit(f"--denoiser {name}: {err}; and no recipe {recipe} to build a fallback network")
    r = yaml.safe_load(recipe.read_text())
    with torch.random.fork_rng():
        torch.manual_seed(0)  # deterministic untrained weights
        net = build_net(r["arch"])
    info: dict[str, Any] = {"requested": name}
    ck = ROOT / "training_scratch" / name / "ckpt.pt"
    if fallback in ("auto", "checkpoint") and ck.is_file():
        state = torch.load(ck, map_location="cpu", weights_only=True)
        net.load_state_dict(state["model"])
        info.update(source="training_checkpoint", trained="partial", checkpoint=str(ck),
                    checkpoint_step=int(state["step"]), steps_planned=int(r["steps"]),
                    weights=file_weights(name, ck, "training checkpoint (hashed)"))
        tag = f"ckpt@{int(state['step'])}"
    elif fallback == "checkpoint":
        raise SystemExit(f"--denoiser {name}: {err}; and no training checkpoint {ck}")
    else:
        info.update(source="untrained", trained=False,
                    weights=file_weights(name, None, "untrained network, seed 0 (no weights file)"))
        tag = "untrained"
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    den = NetDenoiser(net, name=f"{name}[{tag}]", channels=int(r["arch"]["channels"]),
                      sigma_range=tuple(r["sigma_range"]), blind=bool(r.get("blind", False)),
                      lipschitz=None, arch=r["arch"]).eval()
    info.update(name=den.name, lipschitz_card=None, zoo_error=err,
                message=(f"zoo weights for {name!r} unavailable ({err.split(';')[0]}); using {tag} network of the "
                         "same architecture: TIMINGS are representative, PSNR/MMSE numbers are NOT"))
    log("WARNING: " + info["message"])
    return den, info


def resolve_lipschitz(arg: str, denoiser, x: torch.Tensor, sigma: float, *, seed: int = 0,
                      crop: int = 64, n_iter: int = 15) -> tuple[float, dict]:
    """Residual Lipschitz constant ``L`` for the step-size rules, with its provenance.

    ``'card'``: the denoiser's model-card value, else measured; ``'measure'``: power iteration on
    the Jacobian of ``x - D(x)`` at one noisy image (a ``crop``×``crop`` centre crop of ``x``;
    a lower bound of the global constant), floored at 1 (``docs/algorithms.md §residual-lipschitz``)."""
    if arg not in ("card", "measure"):
        return float(arg), {"value": float(arg), "source": "given"}
    card = getattr(denoiser, "lipschitz", None)
    if arg == "card" and card is not None:
        return float(card), {"value": float(card), "source": "model card"}
    from denoisers_zoo.lipschitz import residual_lipschitz

    g = torch.Generator().manual_seed(seed)
    h, w = x.shape[-2:]
    c = min(crop, h, w)
    top, left = (h - c) // 2, (w - c) // 2
    xc = x[..., top:top + c, left:left + c]
    xn = xc + sigma * torch.randn(xc.shape, generator=g, dtype=xc.dtype)
    est = float(residual_lipschitz(denoiser, xn, sigma, n_iter=n_iter, generator=g))
    val = max(est, 1.0)
    return val, {"value": val, "measured": est, "source": "measured",
                 "how": f"power iteration ({n_iter} it.) on J(x - D(x)) at one noisy {c}x{c} crop, floored at 1"}


def score_prior(args, den, x: torch.Tensor, *, network=None):
    """``(prior, lipschitz_info)``: ``ScorePrior`` at ε = ``EPS``, α = 1, with ``L`` from
    ``--lipschitz`` (:func:`resolve_lipschitz` on ``den``); ``network``: what the prior calls
    (default ``den``; e.g. a timing wrapper around it)."""
    from pnp_imaging.priors import ScorePrior

    lip, info = resolve_lipschitz(args.lipschitz, den, x, math.sqrt(EPS), seed=args.seed)
    return ScorePrior(den if network is None else network, eps=EPS, lipschitz=lip), info


# --------------------------------------------------------------------------------------------
# problems
# --------------------------------------------------------------------------------------------
def load_image(path, crop: int | None) -> torch.Tensor:
    """Gray ``[1, 1, H, W]`` float32 in [0, 1]; ``crop``: centre ``crop × crop`` (None = full)."""
    from pnp_imaging.imageio import read_image

    x = read_image(path, channels=1)
    if crop:
        h, w = x.shape[-2:]
        c = min(int(crop), h, w)
        top, left = (h - c) // 2, (w - c) // 2
        x = x[..., top:top + c, left:left + c].contiguous()
    return x


def blur_problem(x: torch.Tensor, *, size: int = 9, sigma_y: float = SIGMA_Y, seed: int = 0):
    """Circular ``size × size`` uniform blur + Gaussian noise ``sigma_y`` (ours)."""
    from operators.blur import Blur
    from operators.kernels import uniform_kernel
    from operators.noise import GaussianNoise
    from pnp_imaging.problem import Problem

    op = Blur(uniform_kernel(size), boundary="circular", image_shape=tuple(x.shape[1:]))
    return Problem.simulate(x, op, GaussianNoise(sigma_y), generator=torch.Generator().manual_seed(seed))


def inpainting_problem(x: torch.Tensor, *, missing: float = 0.8, sigma_y: float = SIGMA_Y, seed: int = 0):
    from operators.inpainting import Inpainting, random_mask
    from operators.noise import GaussianNoise
    from pnp_imaging.problem import Problem

    g = torch.Generator().manual_seed(seed)
    mask = random_mask(tuple(x.shape[1:]), missing, generator=g)
    return Problem.simulate(x, Inpainting(mask), GaussianNoise(sigma_y), generator=g)


def deepinv_physics(problem):
    """deepinv twin of ``problem.operator`` (``BlurFFT`` with the same kernel, or ``Inpainting``
    with the same mask). Noise is not attached: ``y`` is shared."""
    import deepinv as dinv

    from operators.blur import Blur
    from operators.inpainting import Inpainting

    op = problem.operator
    shape = tuple(problem.x_shape[1:])
    if isinstance(op, Blur):
        k = op.kernel if op.kernel.ndim == 3 else op.kernel[None]
        return dinv.physics.BlurFFT(img_size=shape, filter=k[None].to(problem.y.dtype))
    if isinstance(op, Inpainting):
        return dinv.physics.Inpainting(img_size=shape, mask=op.mask.to(problem.y.dtype))
    raise ValueError(f"operator: no deepinv twin for {type(op).__name__}")


def operator_mismatch(problem, physics, *, seed: int = 0) -> float:
    """``max |A_ours x - A_deepinv x|`` and same for the adjoint, on a random image."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(problem.x_shape, generator=g, dtype=problem.y.dtype)
    a = float((problem.operator.A(x) - physics.A(x)).abs().max())
    b = float((problem.operator.A_adjoint(x) - physics.A_adjoint(x)).abs().max())
    return max(a, b)


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
class Stopwatch:
    """Wall clock that can be paused (evaluation code inside callbacks is excluded)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.paused = 0.0
        self._p = None

    def pause(self):
        self._p = time.perf_counter()

    def resume(self):
        self.paused += time.perf_counter() - self._p
        self._p = None

    def elapsed(self) -> float:
        now = self._p if self._p is not None else time.perf_counter()
        return now - self.t0 - self.paused


def interleaved(measures: dict[str, Callable[[], float]], *, reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run ``measures`` (each returns seconds per unit of work) round-robin ``reps`` times
    (A B C A B C ...; the start of the round rotates each rep so no method is always first),
    after ``warmup`` untimed rounds. Returns ``{name: [seconds, ...]}`` in rep order."""
    names = list(measures)
    for _ in range(warmup):
        for n in names:
            measures[n]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            out[n].append(float(measures[n]()))
    return out


def settled(evals: list[dict], ok: Callable[[dict], bool]) -> dict | None:
    """The first record of ``evals`` (in run order) from which ``ok`` holds for every later one
    ("enters and stays until the end"); None when it fails at the last record."""
    hit = None
    for e in reversed(evals):
        if not ok(e):
            break
        hit = e
    return hit


def thin_curve(evals: list[dict], n: int = 300) -> list[dict]:
    """At most about ``n`` records of ``evals``, evenly spaced, the last one kept."""
    if len(evals) <= n:
        return evals
    step = len(evals) / n
    idx = sorted({int(i * step) for i in range(n)} | {len(evals) - 1})
    return [evals[i] for i in idx]


def median(v) -> float | None:
    v = [float(a) for a in v if a is not None and math.isfinite(float(a))]
    return float(np.median(v)) if v else None


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------
def _clean(obj):
    """JSON-safe: numpy/torch scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _clean(obj.tolist())
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating,)):
        obj = float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path, doc: dict) -> Path:
    """``doc`` made JSON-safe (:func:`_clean`) and written atomically (``pnp_imaging._io``)."""
    from pnp_imaging._io import atomic_write_json

    path = atomic_write_json(path, _clean(doc))
    log(f"wrote {path}")
    return path


def write_result(name: str, args, *, config: dict, denoiser: dict | None, raw: dict, ratios: dict,
                 notes: str, status: str = "ok", extra: dict | None = None, machine_start: dict | None = None,
                 weights: list[dict] | None = None, module: str | None = None) -> Path:
    """Write ``<args.out>/<name>.json`` atomically and return its path. ``weights``: the weights
    files used (default: the one of ``denoiser``, as :func:`load_denoiser` recorded it);
    ``module``: the benchmark's module when it is not ``bench.<name>``."""
    mode = "smoke" if getattr(args, "smoke", False) else ("quick" if getattr(args, "quick", False) else "full")
    machine = machine_start or machine_info()
    try:
        machine["loadavg_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    if weights is None:
        weights = [denoiser["weights"]] if denoiser and denoiser.get("weights") else []
    doc = {
        "benchmark": name,
        "status": status,
        "mode": mode,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([f"python -m {module or 'bench.' + name}", *map(str, getattr(args, "argv", None) or [])]),
        "machine": machine,
        "provenance": provenance(weights),
        "torch_threads": torch.get_num_threads(),
        "config": config,
        "denoiser": denoiser,
        "raw": raw,
        "ratios": ratios,
        "notes": notes,
    }
    if extra:
        doc.update(extra)
    return write_json(Path(args.out) / f"{name}.json", doc)
