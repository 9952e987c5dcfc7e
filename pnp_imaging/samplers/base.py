"""The one sampling loop: :func:`run_chain` (and :func:`resume`), dispersed starts, results.

Any :class:`~pnp_imaging.samplers.kernel.Kernel` runs here (blackjax
``run_inference_algorithm`` / numpyro ``MCMC`` style); the loop never looks at which family it is.

Iteration counting (``docs/algorithms.md §kept-iterations``): the initial state is iteration 0
and is **never** a sample. Iteration ``i = 1..n_steps`` is the state after ``i`` steps; it is
kept iff ``i > n_burnin`` and ``(i - n_burnin) % thin == 0``, so exactly
``(n_steps - n_burnin) // thin`` samples are kept (iterations ``n_burnin + thin, n_burnin +
2 thin, ...``). Statistics are updated on kept samples only.

Chains are the batch dimension ``B`` of ``state.x`` (``[B, C, H, W]``): one denoiser call
serves all chains.
"""
from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pnp_imaging import checkpoint as ckpt_mod
from pnp_imaging import diagnostics
from pnp_imaging._checks import check_count, check_generator
from pnp_imaging.chain_rng import ChainGenerators
from pnp_imaging.samplers.kernel import Kernel
from pnp_imaging.traces import ChainRun, TraceConfig
from pnp_imaging.stats import PosteriorStats

__all__ = [
    "Kernel",
    "TraceConfig",
    "ChainResult",
    "DivergenceError",
    "run_chain",
    "resume",
    "dispersed_init",
    "kept_iterations",
]


def kept_iterations(n_steps: int, n_burnin: int, thin: int) -> range:
    """Iterations (1-based, after the step) whose state is kept as a sample."""
    return range(n_burnin + thin, n_steps + 1, thin)


def dispersed_init(x0: torch.Tensor, n_chains: int, *, spread: float, generator: torch.Generator) -> torch.Tensor:
    """Starting points for ``n_chains`` chains: ``x0 + spread * N(0, I)`` per chain.

    ``x0`` is ``[1, C, H, W]`` (e.g. ``problem.initial_guess()`` or a MAP estimate). Chain 0
    starts exactly at ``x0``; chains ``1..B-1`` are perturbed independently with std ``spread``
    (on the [0, 1] scale; 0.1-0.3 makes R-hat meaningful: starts that are over-dispersed
    relative to the posterior). ``spread=0`` gives ``B`` copies (a given start, e.g. the MAP).
    Returns ``[n_chains, C, H, W]`` with ``x0``'s dtype/device.
    """
    n_chains = check_count("n_chains", n_chains, 1)
    spread = float(spread)
    if not (math.isfinite(spread) and spread >= 0):
        raise ValueError(f"spread: must be a finite std >= 0, got {spread}")
    if x0.ndim != 4 or x0.shape[0] != 1:
        raise ValueError(f"x0: expected a [1, C, H, W] tensor, got shape {tuple(x0.shape)}")
    x = x0.expand(n_chains, *x0.shape[1:]).clone()
    if isinstance(generator, ChainGenerators):
        return _dispersed_per_chain(x, spread, generator)
    if spread > 0 and n_chains > 1:
        noise = torch.randn((n_chains - 1,) + tuple(x0.shape[1:]), generator=generator, dtype=x0.dtype, device=x0.device)
        x[1:] += spread * noise
    return x


def _dispersed_per_chain(x: torch.Tensor, spread: float, generator: ChainGenerators) -> torch.Tensor:
    """:func:`dispersed_init` with per-chain streams: global chain 0 starts at ``x0``, every other
    chain at ``x0 + spread · N(0, I)`` drawn from its own stream (whichever rank runs it)."""
    if len(generator) != x.shape[0]:
        raise ValueError(f"generator: {len(generator)} per-chain streams for {x.shape[0]} chains")
    if spread > 0:
        for k, (chain, g) in enumerate(zip(generator.chain_ids, generator.generators)):
            if chain != 0:
                x[k] += spread * torch.randn(tuple(x.shape[1:]), generator=g, dtype=x.dtype, device=x.device)
    return x


class DivergenceError(RuntimeError):
    """A chain produced NaN/Inf or exploded; ``iteration`` and ``checkpoint_path`` are set."""

    def __init__(self, message: str, *, iteration: int, checkpoint_path: str | None):
        super().__init__(message)
        self.iteration = iteration
        self.checkpoint_path = checkpoint_path


@dataclass
class ChainResult:
    """What :func:`run_chain` returns.

    ``status``: ``"completed"`` or ``"interrupted"`` (Ctrl-C: the state, statistics and traces
    are those of the last completed iteration ``n_done``; a checkpoint was written if one was
    configured and ``checkpoint_saved``). ``traces``: ``{name: (chain, iteration)}`` float64
    arrays for iterations ``1..n_done``. ``timings``: ``sampling_s`` (steps + statistics +
    traces, callbacks and checkpoint I/O excluded), ``callbacks_s``, ``checkpoint_s``,
    ``s_per_step``. ``stop_reason``: ``"n_steps"`` (ran them all), ``"converged"`` or
    ``"max_minutes"`` (a :class:`~pnp_imaging.convergence.StopRule` stopped it early; ``status``
    is still ``"completed"``), or ``"interrupted"``; ``elapsed_s``: wall time of the loop summed
    over resumes.
    """

    status: str
    state: Any
    stats: PosteriorStats | None
    traces: dict[str, np.ndarray]
    n_steps: int
    n_burnin: int
    thin: int
    n_done: int
    n_kept: int
    kernel_config: dict
    timings: dict
    checkpoint_path: str | None = None
    checkpoint_saved: bool = False
    slow_direction: torch.Tensor | None = None
    stop_reason: str = "n_steps"
    elapsed_s: float = 0.0

    def kept_traces(self) -> dict[str, np.ndarray]:
        """Traces at the kept iterations only (post burn-in, thinned): ``(chain, draw)``."""
        idx = np.asarray(kept_iterations(self.n_done, self.n_burnin, self.thin), dtype=np.int64) - 1
        return {k: v[:, idx] for k, v in self.traces.items()}

    def summary(self) -> dict:
        """:func:`diagnostics.summarize` of :meth:`kept_traces`."""
        return diagnostics.summarize(self.kept_traces())

    def verdicts(self, **kw) -> list[str]:
        return diagnostics.verdicts(self.summary(), **kw)


# --------------------------------------------------------------------------------------------
# divergence guards
# --------------------------------------------------------------------------------------------
def _fix_hint(kernel) -> str:
    prior, params = kernel.prior, kernel.params
    if getattr(params, "step_size", None) is None:  # no step to shrink (pnp-dm): the denoiser let the chain go
        off = "" if getattr(params, "clip", True) else " (sampler.clip is off: set it to true, clamping D to [0, 1])"
        return ("Likely cause: the denoiser follows patterns the operator cannot see out of the image range"
                f"{off}; use a denoiser trained for these noise levels and this image range")
    return (f"Likely cause: step size {getattr(kernel.params, 'step_size', None)!r} too large for the denoiser "
            f"actually used (its residual may not be {getattr(prior, 'residual_lipschitz', None)}-Lipschitz there; "
            f"prior score Lipschitz alpha*L/eps with eps={getattr(prior, 'eps', None)!r}, "
            f"alpha={getattr(prior, 'alpha', None)!r}), or a hard projection at a large step. Fix: use "
            "step_size='auto' with a measured L, lower sampler.step_fraction, or increase eps; if the chain grew "
            "patterns the operator cannot see (stripes under blur), bound it to the image range (sampler.box: [0, 1])")


def _good_checkpoint(path: str | None) -> str | None:
    return path if path is not None and os.path.exists(path) else None


def _diverged(kernel, it: int, what: str, ckpt: str | None) -> DivergenceError:
    good = _good_checkpoint(ckpt)
    where = f"; last good checkpoint kept at {good}" if good else ""
    return DivergenceError(f"{kernel.name}: chain diverged at iteration {it} ({what}). {_fix_hint(kernel)}{where}",
                           iteration=it, checkpoint_path=good)


def _check_bounded(kernel, it: int, x: torch.Tensor, max_abs: float, ckpt: str | None) -> None:
    """Stop on NaN/Inf or ``|x| > max_abs`` (``docs/algorithms.md §divergence-guards``)."""
    if bool(torch.linalg.vector_norm(x, float("inf")) <= max_abs):  # False for NaN too
        return
    what = "NaN/Inf values" if not bool(torch.isfinite(x).all()) else f"max|x| = {float(x.abs().max()):.3g} > {max_abs:g}"
    raise _diverged(kernel, it, what, ckpt)


class _NllGuard:
    """Stop when a chain's ``-log p(y|x)`` rises more than ``max_nll_rise · m + 25`` above the
    lowest value it reached in this run (``m`` = entries of ``y``; ``docs/algorithms.md
    §divergence-guards`` for why a healthy chain cannot trip it). Iterations up to ``start`` are
    not watched: a sampler that anneals its target (``params.anneal_sweeps``, pnp-dm) moves
    away from the data on purpose while it does. Resume-safe: the best value is recomputed from
    the traces already recorded."""

    def __init__(self, run: ChainRun, problem, max_nll_rise: float | None, start: int = 0):
        self.col = run.names.index("loglik") if (max_nll_rise is not None and "loglik" in run.names) else None
        if self.col is None:
            return
        self.m = max(1, int(problem.y[0].numel()))
        self.per_m = float(max_nll_rise)
        self.limit = self.per_m * self.m + 25.0
        self.start = int(start)
        done = run.traces[self.start: run.iteration, self.col, :]
        self.best = (-done).min(0).values if done.shape[0] else torch.full((run.n_chains,), math.inf, dtype=torch.float64)

    def check(self, kernel, run: ChainRun, i: int, ckpt: str | None) -> None:
        if self.col is None or i <= self.start:
            return
        nll = -run.traces[i - 1, self.col, :]
        self.best = torch.minimum(self.best, nll)
        rise = float((nll - self.best).max())
        if not rise <= self.limit:  # also catches a NaN log-likelihood
            what = (f"-log p(y|x) rose by {rise:.3g} = {rise / self.m:.3g} per measurement above its best value in "
                    f"this run; limit max_nll_rise = {self.per_m:g} per measurement + 25: the chain oscillates away "
                    "from the data inside the box")
            raise _diverged(kernel, i, what, ckpt)


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------
class _SigintStop:
    """Context manager: the first Ctrl-C (main thread) sets ``requested`` (the loop stops at the
    end of the iteration and checkpoints); a second one raises ``KeyboardInterrupt``."""

    def __enter__(self):
        self.requested = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class _Clock:
    """Splits wall time into buckets (sampling / callbacks / checkpoint): ``lap(bucket)`` charges
    the time since the previous lap to ``bucket``."""

    def __init__(self):
        self.totals = {"sampling_s": 0.0, "callbacks_s": 0.0, "checkpoint_s": 0.0}
        self._t = time.perf_counter()

    def lap(self, bucket: str) -> None:
        now = time.perf_counter()
        self.totals[bucket] += now - self._t
        self._t = now


def run_chain(kernel: Kernel, state, *, n_steps: int, n_burnin: int, thin: int, generator: torch.Generator,
              on_sample: Callable[[int, Any], None] | None = None, on_step: Callable[[int, Any, Any], None] | None = None,
              checkpoint=None, stats: PosteriorStats | None = None, trace: TraceConfig | None = None,
              max_abs: float = 1e3, max_nll_rise: float | None = 2.0, monitor=None) -> ChainResult:
    """Run ``kernel`` from ``state`` for ``n_steps`` steps; the only sampling loop.

    Args:
        kernel: a bound sampler (``build_kernel(name, problem, prior)`` or ``ula.kernel(...)``).
        state: its initial state (``kernel.init(x0)``, ``x0`` of shape ``[B, C, H, W]``); not a sample.
        n_steps, n_burnin, thin: keyword-only ints, ``0 <= n_burnin <= n_steps``, ``thin >= 1``;
            ``(n_steps - n_burnin) // thin`` samples are kept (module docstring).
        generator: the only source of randomness (a ``torch.Generator`` on ``x``'s device).
        on_sample: ``on_sample(sample_index, state)`` for each kept sample, index 0-based.
        on_step: ``on_step(iteration, state, info)`` after every step (iteration 1-based).
        checkpoint: a :class:`pnp_imaging.checkpoint.CheckpointConfig` (atomic save every
            ``every`` iterations, at the end, and on Ctrl-C), or None.
        stats: a :class:`PosteriorStats` for ``x``'s shape; default: quantiles (0.05, 0.95) and
            scales (1, 2, 4, 8). Updated on kept samples only.
        trace: :class:`TraceConfig` (default ``TraceConfig()``).
        max_abs, max_nll_rise: the divergence guards (``docs/algorithms.md §divergence-guards``):
            NaN/Inf or ``|x| > max_abs``; a rise of ``-log p(y|x)`` by more than ``max_nll_rise``
            per measurement (+25) above the chain's best value (``None`` disables it). Either
            stops the run with :class:`DivergenceError`; the checkpoint on disk stays the last
            good one.
        monitor: a :class:`~pnp_imaging.convergence.ConvergenceMonitor`, consulted after every
            iteration; with a stop rule it may end the run before ``n_steps`` (run until
            converged, ``docs/algorithms.md §run-until-converged``; a checkpoint is written then).

    Returns:
        :class:`ChainResult`. Ctrl-C (SIGINT, main thread) stops at the end of the current
        iteration, writes a checkpoint if configured, and returns ``status="interrupted"``; a
        second Ctrl-C interrupts immediately (the last periodic checkpoint stays valid).
    """
    n_steps = check_count("n_steps", n_steps, 1)
    n_burnin = check_count("n_burnin", n_burnin, 0)
    thin = check_count("thin", thin, 1)
    if n_burnin > n_steps:
        raise ValueError(f"n_burnin: {n_burnin} exceeds n_steps = {n_steps}; use n_burnin < n_steps")
    check_generator(generator)
    x = state.x
    if x.ndim != 4:
        raise ValueError(f"state.x: expected [B, C, H, W] (B = chains), got shape {tuple(x.shape)}")
    if stats is None:
        stats = PosteriorStats(tuple(x.shape), device=x.device)
    elif tuple(stats.shape) != tuple(x.shape):
        raise ValueError(f"stats: built for shape {stats.shape}, but state.x has shape {tuple(x.shape)}")
    if max_nll_rise is not None and not float(max_nll_rise) > 0:
        raise ValueError(f"max_nll_rise: must be > 0 (or None to disable), got {max_nll_rise!r}")
    run = ChainRun(state, n_steps, n_burnin, thin, stats, trace or TraceConfig())
    return _drive(kernel, run, generator=generator, on_sample=on_sample, on_step=on_step,
                  checkpoint=checkpoint, max_abs=float(max_abs), max_nll_rise=max_nll_rise, monitor=monitor)


def resume(path: str | Path, kernel: Kernel, *, generator: torch.Generator, on_sample: Callable | None = None,
           on_step: Callable | None = None, checkpoint="same", stats: PosteriorStats | None = None,
           n_steps: int | None = None, max_abs: float = 1e3, max_nll_rise: float | None = 2.0,
           monitor=None) -> ChainResult:
    """Continue the run saved at ``path`` with ``kernel`` (same sampler, params and prior).

    Bitwise identical to an uninterrupted run with the same seed. ``generator``'s state is
    overwritten with the saved one. ``checkpoint="same"`` keeps checkpointing to ``path`` with
    the saved ``every``; pass another :class:`~pnp_imaging.checkpoint.CheckpointConfig` or None.
    ``stats`` / ``n_steps``: see :func:`pnp_imaging.checkpoint.load_run`. Returns the
    :class:`ChainResult` of the whole run. Callbacks are not checkpointed. With a ``monitor``
    whose rule the saved run already meets (or whose time budget it has spent), no step is taken.
    """
    run, payload = ckpt_mod.load_run(path, kernel, generator=generator, stats=stats, n_steps=n_steps)
    if checkpoint == "same":
        checkpoint = ckpt_mod.CheckpointConfig(path, payload["every"], payload["user_config"])
    elif isinstance(checkpoint, str):
        raise ValueError(f"checkpoint: pass 'same', None or a CheckpointConfig, got {checkpoint!r}")
    return _drive(kernel, run, generator=generator, on_sample=on_sample, on_step=on_step,
                  checkpoint=checkpoint, max_abs=float(max_abs), max_nll_rise=max_nll_rise, monitor=monitor)


def _step(kernel, run: ChainRun, generator, nll_guard: _NllGuard, max_abs: float, ckpt: str | None):
    """One iteration: step, guards, traces, statistics. Returns ``(iteration, state, info, kept)``."""
    i = run.iteration + 1
    new_state, info = kernel.step(run.state, generator=generator)
    _check_bounded(kernel, i, new_state.x, max_abs, ckpt)
    run.record(i, new_state.x, kernel.problem)
    nll_guard.check(kernel, run, i, ckpt)
    keep = run.is_kept(i)
    if keep:
        run.stats.update(new_state.x)
        run.n_kept += 1
    run.state, run.iteration = new_state, i
    return i, new_state, info, keep


def _stop_reason(monitor, run: ChainRun, clock: _Clock, n_done_now: int, start: bool) -> str | None:
    """Ask the monitor whether to stop; ``start``: before the first step of a resumed run (it
    stops there when the saved iteration is a check the run passes, or the budget is spent)."""
    if monitor is None or (start and run.iteration == 0):
        return None
    per_step = clock.totals["sampling_s"] / max(n_done_now, 1)
    return monitor.after_step(run, run.elapsed_s, per_step)


def _drive(kernel, run: ChainRun, *, generator, on_sample, on_step, checkpoint, max_abs, max_nll_rise,
           monitor=None) -> ChainResult:
    ckpt_path = None if checkpoint is None else str(checkpoint.path)
    nll_guard = _NllGuard(run, kernel.problem, max_nll_rise, start=getattr(kernel.params, "anneal_sweeps", 0))
    start_iter, saved_at, status, base_s = run.iteration, -1, "completed", run.elapsed_s
    clock = _Clock()
    reason = _stop_reason(monitor, run, clock, 0, start=start_iter > 0)
    with _SigintStop() as stop:
        try:
            while reason is None and run.iteration < run.n_steps:
                i, state, info, keep = _step(kernel, run, generator, nll_guard, max_abs, ckpt_path)
                clock.lap("sampling_s")
                if on_step is not None:
                    on_step(i, state, info)
                if keep and on_sample is not None:
                    on_sample(run.n_kept - 1, state)
                clock.lap("callbacks_s")
                run.elapsed_s = base_s + sum(clock.totals.values())
                reason = _stop_reason(monitor, run, clock, i - start_iter, start=False)
                clock.lap("callbacks_s")
                if checkpoint is not None and (i % checkpoint.every == 0 or stop.requested or i == run.n_steps
                                               or reason is not None):
                    ckpt_mod.save_run(checkpoint, kernel, run, generator)
                    saved_at = i
                    clock.lap("checkpoint_s")
                if stop.requested:
                    status = "interrupted"
                    break
        except KeyboardInterrupt:  # second Ctrl-C or not the main thread: no checkpoint written
            status = "interrupted"
    run.elapsed_s = base_s + sum(clock.totals.values())
    reason = "interrupted" if status == "interrupted" else (reason or "n_steps")
    return _result(kernel, run, status, clock, run.iteration - start_iter, ckpt_path, saved_at == run.iteration,
                   reason)


def _result(kernel, run: ChainRun, status: str, clock: _Clock, n_done_now: int, ckpt_path, saved: bool,
            reason: str) -> ChainResult:
    timings = {**clock.totals, "s_per_step": clock.totals["sampling_s"] / max(n_done_now, 1),
               "steps_this_call": n_done_now}
    return ChainResult(
        status=status, state=run.state, stats=run.stats, traces=run.traces_dict(), n_steps=run.n_steps,
        n_burnin=run.n_burnin, thin=run.thin, n_done=run.iteration, n_kept=run.n_kept,
        kernel_config=kernel.config(), timings=timings, checkpoint_path=ckpt_path, checkpoint_saved=saved,
        slow_direction=run.slow_vector(), stop_reason=reason, elapsed_s=run.elapsed_s,
    )
