"""``pnp_imaging.sample(problem, prior, sampler=..., ...)``: the public sampling API.

Problem + prior + a registered sampler family → chains (:func:`~pnp_imaging.samplers.base.run_chain`)
→ streaming statistics → diagnostics → :class:`~pnp_imaging.posterior.Posterior`. No config is
needed; :func:`pnp_imaging.run` builds the same call from one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pnp_imaging import diagnostics
from pnp_imaging._checks import check_count, check_generator
from pnp_imaging.chain_rng import ChainGenerators
from pnp_imaging.convergence import ConvergenceMonitor, StopRule
from pnp_imaging.posterior import Posterior
from pnp_imaging.samplers.kernel import Kernel, get_sampler

__all__ = ["sample", "auto_sampler", "SamplingInterrupted", "truth_metrics"]


class SamplingInterrupted(RuntimeError):
    """Sampling was stopped by Ctrl-C; the checkpoint (if any) can be resumed."""


def sample(problem, prior, sampler: str | Kernel = "auto", *, generator: torch.Generator, n_steps: int = 1000,
           n_burnin: int | None = None, thin: int = 1, chains: int = 2, x0: torch.Tensor | None = None,
           init_spread: float = 0.05, credible_level: float = 0.9, scales: tuple[int, ...] = (1, 2, 4, 8),
           n_projections: int = 4, checkpoint: str | Path | None = None, checkpoint_every: int = 500,
           checkpoint_config: dict | None = None, resume: bool = False, max_nll_rise: float | None = 2.0,
           on_sample: Callable | None = None, progress: bool = False, until: Any = None, distributed=None, **options):
    """Sample the posterior of ``problem`` under ``prior`` and summarise it.

    Args:
        problem: a :class:`~pnp_imaging.problem.Problem`.
        prior: a :class:`~pnp_imaging.priors.ScorePrior` (or anything with ``score``,
            ``lipschitz``, ``eps``, ``alpha``).
        sampler: ``"auto"`` (:func:`auto_sampler`) or a registered family
            (``pnp_imaging.samplers.sampler_names()``); ``**options`` are its options (e.g. ``stages=15``,
            ``step_size=1e-5``, ``box=None``), checked against the family's Options dataclass.
            Or a :class:`~pnp_imaging.samplers.kernel.Kernel` already bound to ``problem`` and
            ``prior`` (then no ``**options``).
        generator: the only source of randomness.
        n_steps, n_burnin, thin: chain length, discarded warm-up (default ``n_steps // 10``;
            0 for families with independent draws) and thinning; ``(n_steps - n_burnin) // thin``
            draws per chain are kept.
        chains: number of chains (the batch dimension; one denoiser call serves all).
        x0: start ``[1, C, H, W]`` (default ``problem.initial_guess()``, or pass a MAP);
            chains 1.. start at ``x0 + init_spread · N(0, I)``.
        credible_level, scales, n_projections: equal-tailed interval level, block sizes of the
            multi-scale std, number of random projections traced for the diagnostics.
        checkpoint, checkpoint_every, checkpoint_config: a checkpoint file written atomically
            every ``checkpoint_every`` steps, at the end and on Ctrl-C (``checkpoint_config`` is
            stored in it); ``resume=True`` continues it bit-exactly, up to ``n_steps``.
        max_nll_rise: divergence guard (``docs/algorithms.md §divergence-guards``; None: off).
        on_sample: ``on_sample(index, state)`` for each kept draw.
        progress: show a progress bar (iterations, running min ESS / max R̂ of the traced
            quantities — the verdict's figures — and the time to the ESS target).
        until: run until converged (``docs/algorithms.md §run-until-converged``): a
            :class:`~pnp_imaging.convergence.StopRule` or a mapping of its fields, e.g.
            ``{"ess": 100, "rhat": 1.01, "max_minutes": 30}``: stop when every traced quantity
            passes the verdict at those thresholds or ``max_minutes`` is spent; ``n_steps`` stays
            the hard cap. ``summary["stop"]`` says why it stopped.
        distributed: a DistContext: this rank's chains, merged on rank 0 (``docs/algorithms.md §distributed``).

    Returns:
        :class:`~pnp_imaging.posterior.Posterior` (MMSE, std, intervals, multi-scale std,
        diagnostics per traced quantity, verdict; ``save``/``load``). Raises
        :class:`SamplingInterrupted` after Ctrl-C and
        :class:`~pnp_imaging.samplers.base.DivergenceError` when a chain diverges.

    >>> post = pnp_imaging.sample(problem, prior, n_steps=500, generator=g)  # doctest: +SKIP
    """
    sampler = auto_sampler(problem) if sampler == "auto" else sampler
    spec = get_sampler(sampler.name if isinstance(sampler, Kernel) else sampler)
    n_burnin = (0 if spec.independent else n_steps // 10) if n_burnin is None else n_burnin
    _check_arguments(n_steps, n_burnin, thin, chains, credible_level, generator, until, distributed)
    max_nll_rise, rule = (max_nll_rise if spec.nll_guard and not spec.independent else None), StopRule.from_value(until)
    kernel = _bind(spec, sampler, problem, prior, options)
    result = _run_chains(kernel, problem, generator=generator, n_steps=n_steps, n_burnin=n_burnin, thin=thin,
                         chains=chains, x0=x0, init_spread=init_spread, credible_level=credible_level,
                         scales=tuple(scales), n_projections=n_projections, checkpoint=checkpoint,
                         checkpoint_every=checkpoint_every, checkpoint_config=checkpoint_config, resume=resume,
                         max_nll_rise=max_nll_rise, on_sample=on_sample, progress=progress, rule=rule, sync=distributed)
    return summarise(result, kernel, problem, credible_level=credible_level, rule=rule)


def auto_sampler(problem) -> str:
    """What ``sampler="auto"`` picks for ``problem``: the likelihood-exact
    ``config.AUTO_SAMPLERS["exact"]`` (``pnp-kinetic-exp``) when its data term has an exact flow
    (:attr:`Problem.has_data_prox`: Gaussian noise with circular blur, inpainting or identity),
    else ``AUTO_SAMPLERS["explicit"]`` (``skrock``)."""
    from pnp_imaging.config import AUTO_SAMPLERS

    return AUTO_SAMPLERS["exact" if problem.has_data_prox else "explicit"]


def _bind(spec, sampler, problem, prior, options: dict) -> Kernel:
    """The kernel: ``sampler`` itself when already bound (then no options), else built by ``spec``."""
    if isinstance(sampler, Kernel):
        if options:
            raise ValueError(f"options {sorted(options)}: give them when building the kernel, not with a bound Kernel")
        return sampler
    return spec.build(problem, prior, spec.make_options(options))


def _check_burnin_covers_annealing(kernel: Kernel, n_burnin: int) -> None:
    """A sampler that anneals its target (pnp-dm's coupling ρ) only samples the posterior once
    the annealing is over: those sweeps must be burn-in, not kept draws."""
    anneal = int(getattr(kernel.params, "anneal_sweeps", 0) or 0)
    if n_burnin < anneal:
        raise ValueError(f"sampler.n_burnin: {kernel.name} anneals its coupling over {anneal} sweeps, which must "
                         f"be burn-in; set n_burnin >= {anneal} (got {n_burnin})")


def _check_arguments(n_steps, n_burnin, thin, chains, credible_level, generator, until=None, distributed=None) -> None:
    check_count("n_steps", n_steps, 1)
    check_count("n_burnin", n_burnin, 0)
    check_count("thin", thin, 1)
    check_count("chains", chains, 1)
    check_generator(generator)
    if (n_steps - n_burnin) // thin < 2:
        raise ValueError(f"n_steps: {n_steps} steps with n_burnin={n_burnin}, thin={thin} keep fewer than 2 draws")
    if not 0.0 < float(credible_level) < 1.0:
        raise ValueError(f"credible_level: must be in (0, 1), e.g. 0.9; got {credible_level!r}")
    if until is not None and distributed is not None and distributed.world_size > 1:
        raise ValueError("until: run-until-converged is not available with several ranks; give n_steps")
    if distributed is not None and not isinstance(generator, ChainGenerators):
        raise ValueError("generator: a distributed run needs per-chain streams, "
                         "ChainGenerators(seed, distributed.chain_ids(total_chains))")


def _run_chains(kernel: Kernel, problem, *, generator, n_steps, n_burnin, thin, chains, x0, init_spread,
                credible_level, scales, n_projections, checkpoint, checkpoint_every, checkpoint_config, resume,
                max_nll_rise, on_sample, progress, rule=None, sync=None):
    """Start (or resume) the chains and run them to the end (or until ``rule`` stops them);
    returns the ChainResult. ``sync``: a DistContext whose ranks meet every ``checkpoint_every`` steps."""
    _check_burnin_covers_annealing(kernel, n_burnin)
    from pnp_imaging.checkpoint import CheckpointConfig
    from pnp_imaging.progress import SamplingProgress, progress_bar
    from pnp_imaging.samplers.base import dispersed_init, resume as resume_chain, run_chain
    from pnp_imaging.traces import TraceConfig
    from pnp_imaging.stats import PosteriorStats

    ck = CheckpointConfig(checkpoint, checkpoint_every, checkpoint_config) if checkpoint is not None else None
    bar = progress_bar(n_steps, f"sampling ({kernel.name})", progress)
    shown = bar is not None and not getattr(bar, "disable", False)  # no checks for a bar nobody sees
    monitor = ConvergenceMonitor(rule) if (rule is not None or shown) else None
    on_step = _with_barrier(SamplingProgress(bar, monitor) if bar else None, sync, checkpoint_every)
    hooks = {"on_sample": on_sample, "on_step": on_step, "max_nll_rise": max_nll_rise, "monitor": monitor}
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        # n_steps may exceed the saved cap: a run stopped on budget continues with a larger one
        result = resume_chain(checkpoint, kernel, generator=generator, checkpoint=ck, n_steps=n_steps, **hooks)
    else:
        start = (problem.initial_guess() if x0 is None else x0).to(problem.y.dtype)
        x = dispersed_init(start.reshape(1, *start.shape[1:]), chains, spread=init_spread, generator=generator)
        probs = ((1.0 - credible_level) / 2.0, (1.0 + credible_level) / 2.0)
        stats = PosteriorStats(tuple(x.shape), probs=probs, scales=scales, device=x.device,
                               quantile_every=_quantile_every(kernel, thin),
                               quantiles="reservoir" if isinstance(generator, ChainGenerators) else "p2")
        result = run_chain(kernel, kernel.init(x), n_steps=n_steps, n_burnin=n_burnin, thin=thin,
                           generator=generator, stats=stats, checkpoint=ck,
                           trace=TraceConfig(n_random=n_projections), **hooks)
    if bar:
        bar.close()
    if result.status != "completed":
        where = f"; checkpoint saved in {Path(checkpoint).parent}. Continue with --resume" if checkpoint else ""
        raise SamplingInterrupted(f"interrupted at iteration {result.n_done}{where}")
    if sync is not None:
        from pnp_imaging.distributed import gather_result

        result = gather_result(result, sync)
    return result


def _with_barrier(on_step, ctx, every: int):
    """``on_step``, followed every ``every`` steps by the ranks' monitored barrier (several ranks)."""
    if ctx is None or ctx.world_size == 1:
        return on_step

    def hook(i, state, info):
        if on_step is not None:
            on_step(i, state, info)
        if i % every == 0:
            ctx.barrier(f"checkpoint barrier at iteration {i}")

    return hook


def _quantile_every(kernel: Kernel, thin: int) -> int:
    """Feed P² every 4th iteration (``docs/algorithms.md §streaming-stats``: on correlated draws
    cheaper and more accurate than every draw), i.e. every ``max(1, 4 // thin)``-th kept draw;
    every draw for families with independent draws."""
    return 1 if get_sampler(kernel.name).independent else max(1, 4 // thin)


def _float_or_none(value):
    return None if value is None else float(value)


def _finite(values, pick):
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    return pick(v) if v else None


def mcse_summary(stats) -> dict[str, float | None]:
    """Monte Carlo standard error of the MMSE over pixels: its maximum, 99th percentile and root
    mean square, from the per-pixel ``sd/√ESS`` on the batch means of every kept draw
    (:meth:`~pnp_imaging.stats.PosteriorStats.mcse_mean`); None with fewer than 4 batches.
    (``sd/√n`` would treat correlated draws as independent: 4.4x too small on an AR(1) with
    φ = 0.9.) The maximum over 10⁵ noisy per-pixel estimates is dominated by the ESS estimate's
    own noise; the RMS is the Monte Carlo part of the MMSE's root-mean-square error (its PSNR),
    the 99th percentile the error of all but the worst 1 % of pixels."""
    mcse = stats.mcse_mean()
    finite = mcse[torch.isfinite(mcse)].double()
    if not finite.numel():
        return {"mcse_mmse_max": None, "mcse_mmse_p99": None, "mcse_mmse_rms": None}
    return {"mcse_mmse_max": float(finite.max()), "mcse_mmse_p99": float(np.quantile(finite.numpy(), 0.99)),
            "mcse_mmse_rms": float(finite.square().mean().sqrt())}


#: Draws kept for the report's sample grid (the last state of the first chains).
GRID_DRAWS = 8


def draws_summary(x: torch.Tensor, kernel: Kernel) -> dict[str, Any]:
    """How the final chain states relate: ``sample_diversity``, the mean over pairs of chains of
    the RMS distance between their last states (the diversity measure of particle guidance,
    Corso et al. 2024), and ``guidance``, the particle-guidance weight (0: independent chains).
    Guided draws are coupled on purpose: they are not i.i.d. posterior draws."""
    flat = x.detach().double().reshape(x.shape[0], -1)
    n = flat.shape[0]
    diversity = None
    if n > 1:
        d2 = torch.cdist(flat, flat).square() / flat.shape[1]
        diversity = float(d2.sqrt().sum() / (n * (n - 1)))
    return {"sample_diversity": diversity, "guidance": float(getattr(kernel.params, "guidance", 0.0) or 0.0)}


def _stop_summary(result, rule: StopRule | None) -> dict:
    """Why and when the run stopped (``summary["stop"]``)."""
    return {"reason": result.stop_reason, "iterations": result.n_done, "n_steps_max": result.n_steps,
            "elapsed_s": float(result.elapsed_s), "until": None if rule is None else rule.to_dict()}


def summarise(result, kernel: Kernel, problem, *, credible_level: float, rule: StopRule | None = None) -> Posterior:
    """:class:`Posterior` from a completed ChainResult: estimates, diagnostics, warnings."""
    stats = result.stats
    cpu = lambda t: t.detach().double().cpu()  # noqa: E731
    mmse, std = cpu(stats.mmse()), cpu(stats.std())
    lower, upper = (cpu(t) for t in stats.credible_interval())
    diag = result.summary()
    warnings = diagnostics.verdicts(diag)
    image_range = diagnostics.image_range(result.state.x)
    if image_range["warning"]:
        warnings.insert(0, image_range["warning"])
    chains = int(result.state.x.shape[0])
    summary: dict[str, Any] = {
        "sampler": kernel.name, "chains": chains, "n_steps": result.n_done, "n_burnin": result.n_burnin,
        "thin": result.thin, "n_kept": result.n_kept, "step_size": _float_or_none(getattr(kernel.params, "step_size", None)),
        "step_rule": getattr(kernel.params, "rule", "manual"), "lam": getattr(kernel.params, "lam", None),
        "credible_level": credible_level, "denoiser_calls": getattr(kernel.params, "denoiser_calls", None),
        "ess_min": _finite([d.get("ess_bulk") for d in diag.values()], min),
        "ess_tail_min": _finite([d.get("ess_tail") for d in diag.values()], min),
        "rhat_max": _finite([d.get("rhat") for d in diag.values()], max),
        "image_range": image_range,
        **mcse_summary(stats), **draws_summary(result.state.x, kernel),
        "warnings": warnings, "stop": _stop_summary(result, rule),
        "timings": {k: float(v) for k, v in result.timings.items() if isinstance(v, (int, float))},
    }
    post = Posterior(mmse=mmse, std=std, lower=lower, upper=upper,
                     multiscale_std={k: cpu(v) for k, v in stats.multiscale_std().items()},
                     diagnostics={k: {**v, "verdict": diagnostics.quantity_verdict(v)} for k, v in diag.items()},
                     summary=summary, traces=result.traces, samples=cpu(result.state.x[:GRID_DRAWS]))
    if problem.x_true is not None:
        summary.update(truth_metrics(post, problem))
    return post


def truth_metrics(post: Posterior, problem) -> dict[str, float]:
    """PSNR/SSIM of the observation and the MMSE, and the coverage of the credible intervals,
    against ``problem.x_true`` (:mod:`pnp_imaging.metrics`)."""
    from pnp_imaging.metrics import psnr, ssim

    x_true = problem.x_true.detach().double().cpu()
    y = problem.y.detach().cpu()
    level = post.summary["credible_level"]
    inside = float(((x_true >= post.lower) & (x_true <= post.upper)).double().mean())
    if post.summary.get("guidance"):  # coupled draws: their spread is no credible interval
        inside = None
    out = {"psnr_y": psnr(y, x_true) if y.shape == x_true.shape else None,
           "psnr_mmse": psnr(post.mmse, x_true), "ssim_mmse": ssim(post.mmse, x_true), "coverage": inside,
           f"coverage_{int(round(100 * level))}": inside}
    return out
