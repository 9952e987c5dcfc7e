"""``pnp_imaging.run(config)``: resolve config → build components → MAP → :func:`~pnp_imaging.sample`
→ write outputs → report.

The CLI's ``run`` and ``demo`` are thin wrappers around :func:`run`; :func:`run` is a thin
wrapper around :func:`pnp_imaging.map_estimate` and :func:`pnp_imaging.sample`. Output folder
layout (``out_dir``)::

    summary.json  report.html  estimates.npz  traces.npz  config.resolved.yaml
    checkpoint.pt  map_state.pt  map_trace.npz  *.png

(a distributed run, :func:`run` with ``distributed=True``, has one ``checkpoint.rank<r>.pt`` per
rank instead of ``checkpoint.pt``; rank 0 writes everything else.)

Nothing half-written is left behind: everything is written to ``<out_dir>.partial`` and the
folder is renamed to ``out_dir`` only when the run completed. An interrupted run (Ctrl-C)
keeps ``<out_dir>.partial`` with its checkpoint; ``run(..., resume=True)`` continues it and
gives the same estimates as an uninterrupted run with the same seed.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from pnp_imaging._io import atomic_torch_save, atomic_write_text
from pnp_imaging.config import ConfigError, RunConfig, resolve_config
from pnp_imaging.distributed import active as distributed_active, split_chains
from pnp_imaging.posterior import Posterior
from pnp_imaging.sampling import SamplingInterrupted

__all__ = ["run", "RunResult", "SamplingInterrupted", "Components", "build_components", "network_device"]

#: what :func:`run` returns (a :class:`~pnp_imaging.posterior.Posterior` with ``config`` and ``out_dir`` set)
RunResult = Posterior


@dataclass(frozen=True)
class Components:
    """What a run is made of: the problem, the denoiser (and its zoo name) and the score prior."""

    problem: Any
    denoiser: Any
    denoiser_name: str
    prior: Any


def network_device(name: str) -> torch.device:
    """Where the denoiser network runs: ``auto`` = the first CUDA GPU if torch sees one, else the
    CPU; ``cuda[:N]`` requires one (one-line error otherwise). Operators, chains and statistics
    stay on the CPU; on a GPU only the network moves (``denoisers_zoo.OffloadedDenoiser``). In a
    distributed run ``auto``/``cuda`` without an index mean the GPU ``LOCAL_RANK`` (modulo the
    GPUs torch sees), one per local rank."""
    if name in ("auto", "cpu"):
        device = torch.device("cuda" if name == "auto" and torch.cuda.is_available() else "cpu")
    elif not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for but torch sees no CUDA GPU; use device: cpu (or auto)")
    else:
        device = torch.device(name)
    ctx = distributed_active()
    if device.type == "cuda" and device.index is None and ctx is not None and ctx.world_size > 1:
        device = torch.device("cuda", ctx.local_rank % torch.cuda.device_count())
    return device


def _load_denoiser(cfg: RunConfig, channels: int, dtype: torch.dtype):
    import denoisers_zoo

    try:
        full_range = getattr(cfg.sampler.options, "needs_full_range_prior", False)  # diffusion samplers
        name = cfg.prior.denoiser or denoisers_zoo.default_prior(channels, full_range=full_range)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    denoiser = denoisers_zoo.load(name)
    if getattr(denoiser, "channels", None) not in (None, channels):
        good = denoisers_zoo.SAMPLING_PRIORS.get(channels)
        raise ConfigError(f"prior.denoiser: {name!r} takes {denoiser.channels}-channel images but the image has "
                          f"{channels}; use {good!r} (or leave prior.denoiser unset)")
    denoiser = denoiser.to(dtype=dtype)
    net_device = network_device(cfg.device)
    if net_device.type != "cpu":
        from denoisers_zoo.base import OffloadedDenoiser

        denoiser = OffloadedDenoiser(denoiser, net_device).eval()
    return name, denoiser


def build_components(cfg: RunConfig, *, generator: torch.Generator) -> Components:
    """Problem, denoiser and score prior from a resolved config (one-line errors)."""
    from pnp_imaging.priors import ScorePrior
    from pnp_imaging.problem import Problem

    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    section = {k: getattr(cfg, k) for k in ("image", "observation", "operator", "noise") if getattr(cfg, k) is not None}
    problem = Problem.from_config(section, generator=generator)
    if dtype != problem.y.dtype:
        x_true = problem.x_true.to(dtype) if problem.x_true is not None else None
        problem = dataclasses.replace(problem, y=problem.y.to(dtype), x_true=x_true)
    name, denoiser = _load_denoiser(cfg, problem.y.shape[1], dtype)
    p = cfg.prior
    prior = ScorePrior(denoiser, eps=p.eps, alpha=p.alpha, lipschitz=p.lipschitz, batch_chunk=p.batch_chunk,
                       precision=p.precision)
    return Components(problem, denoiser, name, prior)


# --------------------------------------------------------------------------------------------
# the output folder
# --------------------------------------------------------------------------------------------
def _open_folder(out_dir, resume: bool, ctx=None) -> Path:
    """The work folder: ``<out_dir>.partial`` (a temporary folder without ``out_dir``). With
    several ranks rank 0 prepares it and the others wait for it at a barrier."""
    if ctx is not None and ctx.world_size > 1:
        work = _prepare_folder(out_dir, resume, ctx) if ctx.is_main else None
        ctx.barrier("output folder barrier")
        work = work or Path(out_dir).with_name(Path(out_dir).name + ".partial")
        if resume and not (work / _checkpoint_name(ctx)).is_file():
            raise ConfigError(f"--resume: no checkpoint {_checkpoint_name(ctx)} in {work} for rank {ctx.rank}; "
                              "resume with the same number of ranks")
        return work
    return _prepare_folder(out_dir, resume, ctx)


def _checkpoint_name(ctx) -> str:
    """``checkpoint.pt``, or ``checkpoint.rank<r>.pt`` per rank in a distributed run."""
    return "checkpoint.pt" if ctx is None else f"checkpoint.rank{ctx.rank}.pt"


def _prepare_folder(out_dir, resume: bool, ctx) -> Path:
    name = _checkpoint_name(ctx)
    if out_dir is None:
        if resume:
            raise ConfigError("resume: needs an output folder (out_dir) holding the checkpoint")
        return Path(tempfile.mkdtemp(prefix="pnp_imaging_"))
    final = Path(out_dir)
    work = final.with_name(final.name + ".partial")
    if resume:
        _check_resume_kind(work, final, ctx)
        if not work.is_dir() and (final / name).is_file():
            final.rename(work)
        if not (work / name).is_file() and not (work / "map_state.pt").is_file():
            raise ConfigError(f"--resume: no checkpoint in {work} or {final}; run without --resume first")
    elif work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def _check_resume_kind(work: Path, final: Path, ctx) -> None:
    """A distributed run's folder is resumed with ``--distributed`` and a plain one without."""
    folder = work if work.is_dir() else final
    ranked, plain = (folder / "checkpoint.rank0.pt").is_file(), (folder / "checkpoint.pt").is_file()
    if ctx is None and ranked and not plain:
        raise ConfigError(f"--resume: {folder} holds a distributed run's checkpoints (checkpoint.rank<r>.pt); "
                          "resume it with --distributed, with the same number of ranks")
    if ctx is not None and plain and not ranked:
        raise ConfigError(f"--resume: {folder} holds a single-process checkpoint (checkpoint.pt); resume it "
                          "without --distributed")


def _close_folder(work: Path, out_dir) -> str | None:
    """Rename the finished work folder to ``out_dir`` (or delete the temporary one)."""
    if out_dir is None:
        shutil.rmtree(work, ignore_errors=True)
        return None
    final = Path(out_dir)
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    return str(final)


# --------------------------------------------------------------------------------------------
# the steps of a run
# --------------------------------------------------------------------------------------------
def _map_step(cfg: RunConfig, parts: Components, work: Path, generator, progress: bool, resume: bool,
              write: bool = True):
    """MAP by ``map.type`` (or its saved result on resume); returns ``(x_map, info)``. ``write``:
    save its state and trace (rank 0 only in a distributed run)."""
    from pnp_imaging.optim import map_estimate, map_health
    from pnp_imaging.progress import progress_bar

    path = work / "map_state.pt"
    if resume and path.is_file():
        saved = torch.load(path, weights_only=True)
        generator.set_state(saved["rng"])
        return saved["x"].to(parts.problem.y.dtype), saved["info"]
    m, box = cfg.map, getattr(cfg.sampler.options, "box", (-1.0, 2.0))  # samplers without a box (pnp-dm): the default C
    total = m.n_steps if m.type == "pnp-sgd" else min(m.n_steps, m.levels + m.target_steps)
    bar = progress_bar(total, f"MAP ({m.type})", progress)
    t0 = time.perf_counter()
    try:
        res = map_estimate(parts.problem, parts.prior, generator=generator, n_steps=m.n_steps, splitting=m.splitting,
                           step_fraction=m.step_fraction, box=box, tol=m.tol, method=m.type, sigma_max=m.sigma_max,
                           levels=m.levels, target_steps=m.target_steps,
                           on_step=(lambda s, i: bar.update(1)) if bar else None)
    finally:
        if bar:
            bar.close()
    health = map_health(parts.problem, res.x)
    info = {"type": m.type, "n_iter": res.n_iter, "stop_reason": res.stop_reason, "step_size": res.params.step_size,
            "splitting": res.params.splitting, "perturbation": res.params.perturbation,
            "wall_s": time.perf_counter() - t0, "grad_norm_last": res.grad_norm[-1] if res.grad_norm else None,
            "misfit": health.misfit, "out_of_range": health.out_of_range, "warning": health.warning}
    if not write:
        return res.x, info
    atomic_torch_save({"x": res.x.detach().cpu(), "info": info, "rng": generator.get_state()}, path)
    np.savez(work / "map_trace.npz", data_nll=np.asarray(res.data_nll), grad_norm=np.asarray(res.grad_norm))
    return res.x, info


def _chains_start(cfg: RunConfig, parts: Components, x_map, map_info, generator, ctx=None):
    """The chains' start and its record (``docs/algorithms.md §initialisation``): for
    ``sampler.init: map`` the MAP unless it has a warning; for ``pnp-sgd`` a PnP-SGD run of
    ``sampler.init_steps`` iterations of their own (the ``map`` section's settings); else None
    (``Problem.initial_guess()``). Families with independent draws start from noise: None."""
    from pnp_imaging.samplers import get_sampler

    s = cfg.sampler
    if s.init == "pnp-sgd" and not get_sampler(s.type).independent:
        from pnp_imaging.optim import map_estimate

        t0, m = time.perf_counter(), cfg.map
        res = map_estimate(parts.problem, parts.prior, generator=generator, n_steps=s.init_steps, tol=m.tol,
                           splitting=m.splitting, step_fraction=m.step_fraction,
                           box=getattr(s.options, "box", (-1.0, 2.0)))
        return _same_map(res.x, ctx), {"init": "pnp-sgd", "n_iter": res.n_iter, "wall_s": time.perf_counter() - t0}
    map_ok = x_map is not None and not (map_info or {}).get("warning")
    return (x_map, {"init": "map"}) if (s.init == "map" and map_ok) else (None, {"init": "initial_guess"})


def _sampling_step(cfg: RunConfig, parts: Components, kernel, x0, work: Path, generator, progress: bool,
                   resume: bool, on_sample, ctx=None) -> Posterior:
    """Sample from ``x0`` (None: the initial guess); with ``ctx`` (a distributed run) this rank's
    block of chains with per-chain streams, its own checkpoint file, and the merge on rank 0."""
    from pnp_imaging.sampling import sample

    s, e = cfg.sampler, cfg.estimates
    chains, user = s.chains, cfg.to_dict()
    if ctx is not None:
        from pnp_imaging.chain_rng import ChainGenerators

        ids = ctx.chain_ids(s.chains)
        generator, chains = ChainGenerators(cfg.seed, ids), len(ids)
        user["distributed"] = {"rank": ctx.rank, "world_size": ctx.world_size, "chains": [ids.start, ids.stop]}
        _check_rank_checkpoint(work / _checkpoint_name(ctx), user["distributed"], resume)
    return sample(parts.problem, parts.prior, kernel, generator=generator, n_steps=s.n_steps, n_burnin=s.n_burnin,
                  thin=s.thin, chains=chains, x0=x0, init_spread=s.init_spread,
                  credible_level=e.credible_level, scales=e.scales, n_projections=e.n_projections,
                  checkpoint=work / _checkpoint_name(ctx), checkpoint_every=cfg.checkpoint_every,
                  checkpoint_config=user, resume=resume, max_nll_rise=s.max_nll_rise, on_sample=on_sample,
                  progress=progress and (ctx is None or ctx.is_main), until=s.until, distributed=ctx)


def _check_rank_checkpoint(path: Path, layout: dict, resume: bool) -> None:
    """On resume, this rank's checkpoint must hold the same chains of the same world."""
    if not (resume and path.is_file()):
        return
    saved = (torch.load(path, map_location="cpu", weights_only=True).get("user_config") or {}).get("distributed")
    if saved != layout:
        raise ConfigError(f"--resume: {path.name} was written by rank layout {saved}, this process is {layout}; "
                          "resume with the same number of ranks and sampler.chains")


def _join(distributed: bool, timeout_s: float):
    """The run's :class:`~pnp_imaging.distributed.DistContext` (None without ``distributed``)."""
    if not distributed:
        return None
    from pnp_imaging import distributed as dist_mod

    try:
        return dist_mod.init(timeout_s)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_distributed(cfg: RunConfig, ctx, out_dir) -> None:
    """What a distributed run needs, checked before any work (one-line errors)."""
    if ctx.world_size == 1:
        return
    if out_dir is None:
        raise ConfigError("--distributed: needs an output folder (--out) that every rank can reach")
    if cfg.sampler.until is not None:
        raise ConfigError("sampler.until: run-until-converged is not available with several ranks; remove it")
    if cfg.mismatch is not None:
        raise ConfigError("mismatch: not available with --distributed; run it in one process")
    if cfg.sampler.chains < ctx.world_size:
        raise ConfigError(f"sampler.chains: {cfg.sampler.chains} chains for {ctx.world_size} ranks; "
                          "use at least one chain per rank")


def _same_map(x_map, ctx):
    """Every rank computed the same deterministic MAP (or start); rank 0's is broadcast so that all ranks
    start from identical bits even on different hardware."""
    if x_map is None or ctx is None or ctx.world_size == 1:
        return x_map
    import torch.distributed as dist

    ctx.barrier("MAP barrier")
    t = x_map.detach().cpu().clone()
    dist.broadcast(t, src=0)
    return t.to(device=x_map.device, dtype=x_map.dtype)


def _versions() -> dict[str, str]:
    import deepinv

    from pnp_imaging import __version__

    return {"pnp_imaging": __version__, "torch": torch.__version__, "deepinv": deepinv.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _run_summary(cfg: RunConfig, parts: Components, post: Posterior, x_map, map_info, ctx=None) -> dict[str, Any]:
    """The run-level keys added to the sampler's summary: prior, MAP, metrics, provenance, and
    for a distributed run its layout (``distributed``)."""
    import denoisers_zoo
    from pnp_imaging.metrics import psnr, ssim

    out: dict[str, Any] = {"denoiser": parts.denoiser_name, "seed": cfg.seed, "map": map_info,
                           "versions": _versions(), "device": "cpu",
                           "denoiser_device": str(getattr(parts.denoiser, "device", "cpu"))}
    if map_info and map_info.get("warning"):
        out["warnings"] = [map_info["warning"], *post.summary["warnings"]]
    if ctx is not None:
        out["distributed"] = {"world_size": ctx.world_size, "rank": ctx.rank, "backend": ctx.backend,
                              "chains_per_rank": [len(r) for r in split_chains(cfg.sampler.chains, ctx.world_size)],
                              "seed_rule": "chain c draws from chain_seed(seed, c) (pnp_imaging.chain_rng)",
                              "merged": ctx.is_main}
    card = Path(denoisers_zoo.__file__).parent / "weights" / f"{parts.denoiser_name}.md"
    if card.is_file():
        out["denoiser_card"] = card.as_uri()
    if parts.problem.x_true is not None and x_map is not None:
        x_true, x_map = parts.problem.x_true.detach().double().cpu(), x_map.detach().cpu()
        out.update(psnr_map=psnr(x_map, x_true), ssim_map=ssim(x_map, x_true))
    return out


def run(config: Mapping[str, Any] | RunConfig | str | os.PathLike, *, out_dir: str | os.PathLike | None = None,
        resume: bool = False, progress: bool = True, base_dir: str | os.PathLike | None = None,
        distributed: bool = False, dist_timeout_s: float = 300.0) -> Posterior:
    """Run the whole pipeline for a config (dict, YAML path or :class:`RunConfig`; schema in
    :mod:`pnp_imaging.config`).

    With ``out_dir`` the outputs listed in the module docstring are written there (atomically);
    without it nothing is kept. Returns the :class:`~pnp_imaging.posterior.Posterior` whose
    ``summary`` has at least psnr_mmse, ssim_mmse, coverage (when ground truth is known),
    ess_min, rhat_max, n_kept, step_size and wall_s.

    ``distributed``: this process is one rank of a ``torchrun`` job (or, without torchrun's
    environment, a world of one with the same per-chain streams); rank 0 writes the outputs of
    all chains, the other ranks return their own chains' posterior (``docs/algorithms.md
    §distributed``). ``dist_timeout_s`` bounds every wait for another rank.
    """
    ctx = _join(distributed, dist_timeout_s)
    try:
        return _run(config, out_dir=out_dir, resume=resume, progress=progress, base_dir=base_dir, ctx=ctx)
    finally:
        if ctx is not None:
            from pnp_imaging.distributed import shutdown

            shutdown()


def _run(config, *, out_dir, resume: bool, progress: bool, base_dir, ctx) -> Posterior:
    from pnp_imaging.samplers import get_sampler

    t_start = time.perf_counter()
    cfg = resolve_config(config, base_dir=base_dir)
    if ctx is not None:
        _check_distributed(cfg, ctx, out_dir)
    generator = torch.Generator().manual_seed(cfg.seed)
    parts = build_components(cfg, generator=generator)  # every input error is raised before any folder exists
    mismatch = _mismatch_setup(cfg, parts)
    try:
        kernel = get_sampler(cfg.sampler.type).build(parts.problem, parts.prior, cfg.sampler.options)
    except ValueError as exc:
        raise ConfigError(f"sampler: {str(exc).splitlines()[0]}") from None
    work, main = _open_folder(out_dir, resume, ctx), ctx is None or ctx.is_main
    if main:
        atomic_write_text(work / "config.resolved.yaml", _yaml(cfg))
    run_map = cfg.map.enabled and not get_sampler(cfg.sampler.type).independent  # diffusion samplers start from noise
    x_map, map_info = (_map_step(cfg, parts, work, generator, progress and main, resume, main) if run_map
                       else (None, None))
    x_map = _same_map(x_map, ctx)
    x0, start_info = _chains_start(cfg, parts, x_map, map_info, generator, ctx)
    reservoir, gen_state = (_reservoir(cfg) if mismatch else None), generator.get_state()
    post = _sampling_step(cfg, parts, kernel, x0, work, generator, progress, resume, reservoir, ctx)
    post.summary.update(_run_summary(cfg, parts, post, x_map, map_info, ctx), start=start_info)
    post.map = x_map.detach().double().cpu() if x_map is not None else None
    post.config = cfg.to_dict()
    if not main:
        post.out_dir = str(out_dir)
        return post
    if mismatch is not None:
        _mismatch_step(cfg, parts, kernel, post, mismatch, reservoir.stacked(), work,
                       x0=x0, generator_state=gen_state, progress=progress)
    post.summary["wall_s"] = time.perf_counter() - t_start
    if out_dir is not None:
        _write_outputs(work, post, parts.problem)
    post.out_dir = _close_folder(work, out_dir)
    return post


def _yaml(cfg: RunConfig) -> str:
    import yaml

    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def _reservoir(cfg: RunConfig):
    from pnp_imaging.mismatch.analysis import reservoir

    return reservoir(cfg)


def _mismatch_setup(cfg: RunConfig, parts: Components):
    """The second model of ``cfg.mismatch``, built and checked before sampling (None without one)."""
    if cfg.mismatch is None:
        return None
    from pnp_imaging.mismatch.analysis import prepare

    return prepare(cfg, parts)


def _mismatch_step(cfg: RunConfig, parts: Components, kernel, post: Posterior, setup, states, work: Path, *,
                   x0, generator_state, progress: bool) -> None:
    """Pseudometric, bounds and maps (``docs/algorithms.md §mismatch``); with ``run_other`` the
    second chain and the measured MMSE distance. Adds ``summary["mismatch"]`` and the
    ``mismatch_*`` keys."""
    from pnp_imaging.mismatch import analysis

    section = analysis.analyse(setup, parts, post, kernel, states, work)
    if setup.run_other:
        other = analysis.run_other_chain(setup, parts, kernel, cfg, x0=x0, generator_state=generator_state,
                                         progress=progress)
        section.update(analysis.measured_distance(post, other))
    post.summary["mismatch"] = section
    post.summary.update(analysis.summary_keys(section))


def _write_outputs(work: Path, post: Posterior, problem) -> None:
    from pnp_imaging.imageio import write_image
    from pnp_imaging.report import render_report

    extra = {"y": problem.y}
    if problem.x_true is not None:
        extra["x_true"] = problem.x_true
    post.save(work, extra_arrays=extra)
    write_image(work / "observation.png", problem.y.detach().cpu().clamp(0, 1).float())
    write_image(work / "mmse.png", post.mmse.clamp(0, 1).float())
    if post.map is not None:
        write_image(work / "map.png", post.map.clamp(0, 1).float())
    render_report(work)
