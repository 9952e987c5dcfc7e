"""``pnp_imaging.run(config)``: problem → MAP → sampling → diagnostics → report.

The CLI's ``run`` and ``demo`` are thin wrappers around :func:`run`. Output folder layout
(``out_dir``)::

    summary.json  report.html  estimates.npz  traces.npz  config.resolved.yaml
    checkpoint.pt  map_state.pt  *.png

Nothing half-written is left behind: everything is written to ``<out_dir>.partial`` and the
folder is renamed to ``out_dir`` only when the run completed. An interrupted run (Ctrl-C)
keeps ``<out_dir>.partial`` with its checkpoint; ``run(..., resume=True)`` continues it and
gives the same estimates as an uninterrupted run with the same seed.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from pnp_imaging.config import ConfigError, resolve_config

__all__ = ["run", "RunResult", "SamplingInterrupted", "build_components", "problem_section"]


class SamplingInterrupted(RuntimeError):
    """The run was stopped by Ctrl-C; a checkpoint was saved in ``<out_dir>.partial``."""


@dataclass
class RunResult:
    """What :func:`run` returns. Images are ``[1, C, H, W]`` float64 tensors on the CPU."""

    mmse: torch.Tensor
    std: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    map: torch.Tensor | None
    multiscale_std: dict[int, torch.Tensor]
    summary: dict[str, Any]
    diagnostics: dict[str, dict[str, float]]
    config: dict[str, Any]
    out_dir: str | None = None
    traces: dict[str, np.ndarray] = field(default_factory=dict)


def _device(name: str) -> torch.device:
    """Where the operators, chains and statistics live: always the CPU for now (the operators
    keep their kernels/masks there). See :func:`_network_device` for the denoiser."""
    return torch.device("cpu")


def _network_device(name: str) -> torch.device:
    """Where the denoiser network runs: ``auto`` = the first CUDA GPU if torch sees one, else the
    CPU; ``cuda[:N]`` requires one (one-line error otherwise). On a GPU only the network moves
    (``denoisers_zoo.OffloadedDenoiser``): it is where the time goes."""
    if name in ("auto", "cpu"):
        return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for but torch sees no CUDA GPU; use device: cpu (or auto)")
    return torch.device(name)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    mse = float(torch.mean((x.double().clamp(0, 1) - ref.double()) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    a = x.detach().double().clamp(0, 1).cpu().numpy()[0]
    b = ref.detach().double().cpu().numpy()[0]
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=0))


def problem_section(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a resolved config that :meth:`Problem.from_config` reads."""
    return {k: cfg[k] for k in ("image", "observation", "operator", "noise") if cfg.get(k) is not None}


def build_components(cfg: Mapping[str, Any], *, generator: torch.Generator, device: torch.device, dtype: torch.dtype):
    """Problem, denoiser and score prior from a resolved config (one-line errors)."""
    import denoisers_zoo
    from pnp_imaging.priors import ScorePrior
    from pnp_imaging.problem import Problem

    problem = Problem.from_config(problem_section(cfg), generator=generator)
    if dtype != problem.y.dtype:
        problem = dataclasses.replace(
            problem, y=problem.y.to(dtype),
            x_true=problem.x_true.to(dtype) if problem.x_true is not None else None)
    name = cfg["prior"]["denoiser"]
    if name not in denoisers_zoo.available():
        raise ConfigError(f"prior.denoiser: unknown denoiser {name!r}; valid: {', '.join(denoisers_zoo.available())}")
    denoiser = denoisers_zoo.load(name, device=device)
    channels = problem.y.shape[1]
    if getattr(denoiser, "channels", None) not in (None, channels):
        raise ConfigError(
            f"prior.denoiser: {name!r} takes {denoiser.channels}-channel images but the image has {channels}; "
            f"pick a {'gray' if channels == 1 else 'colour'} model (see `pnp-imaging zoo list`)"
        )
    denoiser = denoiser.to(device=device, dtype=dtype)
    net_device = _network_device(str(cfg.get("device", "auto")))
    if net_device != device:
        from denoisers_zoo.base import OffloadedDenoiser

        denoiser = OffloadedDenoiser(denoiser, net_device).eval()
    p = cfg["prior"]
    prior = ScorePrior(denoiser, eps=p["eps"], alpha=p["alpha"], lipschitz=p["lipschitz"])
    return problem, denoiser, prior


def _sampler_kernel(cfg, problem, prior):
    s = cfg["sampler"]
    box = tuple(s["box"]) if s["box"] is not None else None
    if s["type"] == "pnp-ula":
        from pnp_imaging.samplers import ula

        params = ula.make_params(problem, prior, step_size=s["step_size"], clip=box, projected=s["projected"],
                                 fraction=s["step_fraction"])
        return ula.kernel(problem, prior, params)
    from pnp_imaging.samplers import skrock

    params = skrock.make_params(problem, prior, n_stages=s["stages"], eta=s["eta"], fraction=s["step_fraction"],
                                step_size=s["step_size"], clip=box, projected=s["projected"])
    return skrock.kernel(problem, prior, params)


def _versions() -> dict[str, str]:
    import deepinv

    from pnp_imaging import __version__

    return {"pnp_imaging": __version__, "torch": torch.__version__, "deepinv": deepinv.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _run_map(cfg, problem, prior, x0, work: Path, generator, progress: bool, resume: bool):
    """PnP-SGD MAP; its final state is saved so that a resumed run skips it."""
    from pnp_imaging.samplers import pnp_sgd

    path = work / "map_state.pt"
    if resume and path.is_file():
        saved = torch.load(path, weights_only=True)
        generator.set_state(saved["rng"])
        return saved["x"].to(x0), saved["info"], 0.0
    m = cfg["map"]
    box = tuple(cfg["sampler"]["box"]) if cfg["sampler"]["box"] is not None else None
    try:
        params = pnp_sgd.auto_params(problem, prior, box=box, splitting=m["splitting"], step_fraction=m["step_fraction"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    bar = _bar(m["n_steps"], "MAP (PnP-SGD)", progress)
    t0 = time.perf_counter()
    res = pnp_sgd.run_map(problem, prior, x0, n_steps=m["n_steps"], params=params, generator=generator,
                          tol=m["tol"], on_step=(lambda s, i: bar.update(1)) if bar else None)
    wall = time.perf_counter() - t0
    if bar:
        bar.close()
    if res.stop_reason == "divergence":
        raise ValueError(
            f"map: PnP-SGD diverged at iteration {res.n_iter}; lower map.step_fraction or raise prior.eps "
            "(the denoiser's residual Lipschitz constant may exceed its model-card value)"
        )
    info = {"n_iter": res.n_iter, "stop_reason": res.stop_reason, "step_size": params.step_size,
            "splitting": params.splitting,
            "perturbation": params.perturbation, "wall_s": wall,
            "grad_norm_last": res.grad_norm[-1] if res.grad_norm else None}
    _atomic_torch_save({"x": res.x.detach().cpu(), "info": info, "rng": generator.get_state()}, path)
    np.savez(work / "map_trace.npz", data_nll=np.asarray(res.data_nll), grad_norm=np.asarray(res.grad_norm))
    return res.x, info, wall


class _SamplingProgress:
    """``on_step`` callback: advances the tqdm bar (rate, ETA) and shows a running bulk-ESS
    estimate of the image mean, recomputed every ``every`` steps from the post-burn-in draws seen
    by this process (after a resume: the draws since the resume)."""

    def __init__(self, bar, n_burnin: int, every: int = 25):
        self.bar, self.n_burnin, self.every = bar, n_burnin, every
        self.draws: list[np.ndarray] = []

    def __call__(self, iteration: int, state, info) -> None:
        self.bar.update(1)
        if iteration <= self.n_burnin:
            return
        self.draws.append(state.x.detach().mean(dim=(1, 2, 3)).double().cpu().numpy())
        if len(self.draws) >= 8 and iteration % self.every == 0:
            from pnp_imaging.diagnostics import ess

            value = ess(np.stack(self.draws, axis=1))
            self.bar.set_postfix(ess_mean=f"{value:.0f}" if np.isfinite(value) else "nan", refresh=False)


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, leave=False)


def run(config: Mapping[str, Any] | str | os.PathLike, *, out_dir: str | os.PathLike | None = None,
        resume: bool = False, progress: bool = True, base_dir: str | os.PathLike | None = None) -> RunResult:
    """Run the whole pipeline for a config (dict or YAML path; schema in :mod:`pnp_imaging.config`).

    With ``out_dir`` the outputs listed in the module docstring are written there (atomically);
    without it nothing is written. Returns a :class:`RunResult` whose ``summary`` has at least
    psnr_mmse, ssim_mmse, coverage (when ground truth is known), ess_min, rhat_max, n_kept,
    step_size and wall_s.
    """
    from pnp_imaging import checkpoint as ckpt
    from pnp_imaging import diagnostics
    from pnp_imaging.samplers.base import TraceConfig, dispersed_init, run_chain
    from pnp_imaging.stats import PosteriorStats

    t_start = time.perf_counter()
    cfg = resolve_config(config, base_dir=base_dir)
    device = _device(cfg["device"])
    dtype = torch.float64 if cfg["dtype"] == "float64" else torch.float32

    # everything that can be wrong with the input fails here, before any folder is made
    generator = torch.Generator(device=device).manual_seed(int(cfg["seed"]))
    problem, denoiser, prior = build_components(cfg, generator=generator, device=device, dtype=dtype)
    kernel = _sampler_kernel(cfg, problem, prior)

    final = Path(out_dir) if out_dir is not None else None
    if final is not None:
        work = final.with_name(final.name + ".partial")
        if resume:
            if not work.is_dir() and (final / "checkpoint.pt").is_file():
                final.rename(work)
            if not (work / "checkpoint.pt").is_file() and not (work / "map_state.pt").is_file():
                raise ConfigError(f"--resume: no checkpoint in {work} or {final}; run without --resume first")
        else:
            if work.exists():
                shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        import yaml

        (work / "config.resolved.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    else:
        if resume:
            raise ConfigError("resume: needs an output folder (out_dir) holding the checkpoint")
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="pnp_imaging_"))

    timings: dict[str, float] = {}

    x_back = problem.initial_guess().to(dtype)  # A^T y; inpainting: holes filled (Problem.initial_guess)
    x_map, map_info = None, None
    if cfg["map"]["enabled"]:
        x_map, map_info, timings["map_s"] = _run_map(cfg, problem, prior, x_back, work, generator, progress, resume)
    s = cfg["sampler"]
    start = x_map if (s["init"] == "map" and x_map is not None) else x_back
    level = cfg["estimates"]["credible_level"]
    probs = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
    scales = tuple(cfg["estimates"]["scales"])
    trace_cfg = TraceConfig(n_random=cfg["estimates"]["n_projections"], seed=int(cfg["seed"]))
    ck = ckpt.CheckpointConfig(path=str(work / "checkpoint.pt"), every=cfg["checkpoint_every"],
                               config=cfg) if out_dir is not None else None

    reservoir = None
    if cfg["mismatch"]:
        from pnp_imaging.mismatch import StateReservoir

        n_kept = (s["n_steps"] - s["n_burnin"]) // s["thin"]
        reservoir = StateReservoir(n_kept, s["chains"], capacity=int(cfg["mismatch"].get("n_states") or 64))
    bar = _bar(s["n_steps"], f"sampling ({s['type']})", progress)
    t0 = time.perf_counter()
    if resume and out_dir is not None and (work / "checkpoint.pt").is_file():
        done = int(ckpt.load_checkpoint(work / "checkpoint.pt")["run"]["iteration"])
        if bar:
            bar.update(done)
        result = ckpt.resume(work / "checkpoint.pt", kernel, generator=generator, checkpoint=ck, on_sample=reservoir,
                             on_step=_SamplingProgress(bar, s["n_burnin"]) if bar else None,
                             max_nll_rise=s["max_nll_rise"])
    else:
        x0 = dispersed_init(start.reshape(1, *start.shape[1:]), s["chains"], spread=s["init_spread"], generator=generator)
        state = kernel.init(x0)
        stats = PosteriorStats(tuple(x0.shape), probs=probs, scales=scales, device=x0.device)
        result = run_chain(kernel, state, n_steps=s["n_steps"], n_burnin=s["n_burnin"], thin=s["thin"],
                           generator=generator, stats=stats, trace=trace_cfg, checkpoint=ck, on_sample=reservoir,
                           on_step=_SamplingProgress(bar, s["n_burnin"]) if bar else None,
                           max_nll_rise=s["max_nll_rise"])
    if bar:
        bar.close()
    timings["sampling_s"] = time.perf_counter() - t0
    if result.status != "completed":
        raise SamplingInterrupted(
            f"interrupted at iteration {result.n_done}; checkpoint saved in {work}. Continue with --resume"
        )

    stats = result.stats
    mmse = stats.mmse().detach().double().cpu()
    std = stats.std().detach().double().cpu()
    lower, upper = (t.detach().double().cpu() for t in stats.credible_interval())
    multiscale = {k: v.detach().double().cpu() for k, v in stats.multiscale_std().items()}
    diag = result.summary()
    warnings = diagnostics.verdicts(diag)
    image_range = diagnostics.image_range(result.state.x)
    if image_range["warning"]:
        warnings.insert(0, image_range["warning"])
    x_true = problem.x_true.detach().double().cpu() if problem.x_true is not None else None

    summary: dict[str, Any] = {
        "sampler": kernel.name,
        "denoiser": cfg["prior"]["denoiser"],
        "chains": s["chains"],
        "n_steps": s["n_steps"],
        "n_burnin": s["n_burnin"],
        "thin": s["thin"],
        "n_kept": result.n_kept,
        "step_size": float(kernel.params.step_size),
        "step_rule": getattr(kernel.params, "rule", "manual"),
        "lam": getattr(kernel.params, "lam", None),
        "credible_level": level,
        "seed": cfg["seed"],
        "ess_min": _finite_min([d.get("ess_bulk") for d in diag.values()]),
        "ess_tail_min": _finite_min([d.get("ess_tail") for d in diag.values()]),
        "rhat_max": _finite_max([d.get("rhat") for d in diag.values()]),
        "image_range": image_range,
        "mcse_mmse_max": float((std / math.sqrt(max(result.n_kept * s["chains"], 1))).max()),
        "diagnostics": {k: {**v, "verdict": _verdict(v)} for k, v in diag.items()},
        "warnings": warnings,
        "map": map_info,
        "versions": _versions(),
        "timings": {**timings, **{k: float(v) for k, v in result.timings.items() if isinstance(v, (int, float))}},
        "device": str(device),
        "denoiser_device": str(getattr(denoiser, "device", device)),
    }
    if reservoir is not None:
        summary["mismatch"] = _mismatch(cfg, problem, denoiser, prior, reservoir.stacked(), dtype)
    import denoisers_zoo

    card = Path(denoisers_zoo.__file__).parent / "weights" / f"{cfg['prior']['denoiser']}.md"
    if card.is_file():
        summary["denoiser_card"] = card.as_uri()
    if x_true is not None:
        summary["psnr_y"] = psnr(problem.y.detach().cpu(), x_true) if problem.y.shape == x_true.shape else None
        summary["psnr_mmse"] = psnr(mmse, x_true)
        summary["ssim_mmse"] = ssim(mmse, x_true)
        inside = ((x_true >= lower) & (x_true <= upper)).double().mean()
        summary["coverage"] = float(inside)
        summary["coverage_90" if abs(level - 0.9) < 1e-9 else f"coverage_{int(round(100 * level))}"] = float(inside)
        if x_map is not None:
            summary["psnr_map"] = psnr(x_map.detach().cpu(), x_true)
            summary["ssim_map"] = ssim(x_map.detach().cpu(), x_true)
    summary["wall_s"] = time.perf_counter() - t_start

    out = RunResult(mmse=mmse, std=std, lower=lower, upper=upper,
                    map=x_map.detach().double().cpu() if x_map is not None else None,
                    multiscale_std=multiscale, summary=summary, diagnostics=diag, config=cfg,
                    traces=result.traces)
    if out_dir is None:
        shutil.rmtree(work, ignore_errors=True)
        return out
    _write_outputs(work, out, problem, x_true, result)
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    out.out_dir = str(final)
    return out


def _mismatch(cfg, problem, denoiser, prior, states, dtype) -> dict[str, Any]:
    """Mismatch-bound ingredients (:mod:`pnp_imaging.mismatch`) on the kept chain states.

    After a resume only the states kept since the resume are used (callbacks are not
    checkpointed); ``n_states`` in the output says how many.
    """
    import denoisers_zoo
    from operators.registry import build_operator
    from pnp_imaging import mismatch

    mm = cfg["mismatch"]
    out: dict[str, Any] = {}
    if mm.get("denoiser"):
        name = mm["denoiser"]
        if name not in denoisers_zoo.available():
            raise ConfigError(f"mismatch.denoiser: unknown denoiser {name!r}; valid: {', '.join(denoisers_zoo.available())}")
        other = denoisers_zoo.load(name).to(dtype=dtype)
        d = mismatch.denoiser_distance(denoiser, other, states, prior.sigma)
        out.update({"reference_denoiser": cfg["prior"]["denoiser"], "other_denoiser": name, **d,
                    "prior_drift_difference": prior.alpha / prior.eps * d["d_posterior_l2"]})
    if mm.get("operator"):
        shape = tuple(problem.y.shape)
        op2 = build_operator(dict(mm["operator"]), shape, generator=torch.Generator().manual_seed(int(cfg["seed"])))
        other = dataclasses.replace(problem, operator=op2)
        out["operator_norm_difference"] = mismatch.operator_distance(problem.operator, op2, shape)
        out["data_drift_difference"] = mismatch.data_drift_distance(problem, other, states)
        out["n_states"] = int(states.shape[0])
    out["note"] = ("ingredients of the Renaud et al. (2024) bound; its constants are [NOT FOUND] offline, "
                   "so no numeric bound is claimed")
    return out


def _verdict(d: Mapping[str, float]) -> str:
    ess, rhat = d.get("ess_bulk"), d.get("rhat")
    bad = []
    if ess is None or not np.isfinite(ess) or ess < 100:
        bad.append("ESS < 100: too few effective samples")
    if rhat is not None and np.isfinite(rhat) and rhat > 1.01:
        bad.append("R̂ > 1.01: chains disagree")
    return "; ".join(bad) if bad else "ok"


def _finite_min(values) -> float | None:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return min(v) if v else None


def _finite_max(values) -> float | None:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    return max(v) if v else None


def _write_outputs(work: Path, out: RunResult, problem, x_true, result) -> None:
    from pnp_imaging.imageio import write_image
    from pnp_imaging.report import render_report

    arrays = {"mmse": out.mmse, "std": out.std, "lower": out.lower, "upper": out.upper,
              "y": problem.y.detach().double().cpu()}
    if out.map is not None:
        arrays["map"] = out.map
    if x_true is not None:
        arrays["x_true"] = x_true
    for k, v in out.multiscale_std.items():
        arrays[f"multiscale_std_{k}"] = v
    np.savez_compressed(work / "estimates.npz", **{k: v.numpy() for k, v in arrays.items()})
    names = list(result.traces)
    values = np.stack([result.traces[n] for n in names], axis=-1) if names else np.zeros((0, 0, 0))
    np.savez_compressed(work / "traces.npz", names=np.asarray(names), values=values)
    (work / "summary.json").write_text(json.dumps(out.summary, indent=2, default=_json_default))
    write_image(work / "observation.png", problem.y.detach().cpu().clamp(0, 1).float())
    write_image(work / "mmse.png", out.mmse.clamp(0, 1).float())
    if out.map is not None:
        write_image(work / "map.png", out.map.clamp(0, 1).float())
    render_report(work)


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return str(obj)
