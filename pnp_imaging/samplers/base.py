"""The one sampling loop, the bound-kernel type, dispersed starts and per-iteration traces.

A sampler module (:mod:`~pnp_imaging.samplers.ula`, :mod:`~pnp_imaging.samplers.skrock`)
provides pure functions ``init(x0, problem, prior, params) -> state`` and ``step(state, problem,
prior, params, *, generator) -> (state, info)`` over an explicit NamedTuple state; its
``kernel(problem, prior, params)`` binds them into a :class:`Kernel`, and :func:`run_chain`
runs any kernel (blackjax ``run_inference_algorithm`` / numpyro ``MCMC`` style).

Iteration counting (reference pitfalls 1-2): the initial state is iteration 0 and is **never**
a sample. Iteration ``i = 1..n_steps`` is the state after ``i`` steps; it is kept iff
``i > n_burnin`` and ``(i - n_burnin) % thin == 0``, so exactly ``(n_steps - n_burnin) // thin``
samples are kept (iterations ``n_burnin + thin, n_burnin + 2 thin, ...``). Statistics are
updated on kept samples only.

Chains are the batch dimension ``B`` of ``state.x`` (``[B, C, H, W]``): one denoiser call
serves all chains.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from pnp_imaging import diagnostics
from pnp_imaging.stats import PosteriorStats

__all__ = [
    "Kernel",
    "TraceConfig",
    "ChainResult",
    "DivergenceError",
    "run_chain",
    "dispersed_init",
    "check_count",
    "kept_iterations",
]


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def check_count(name: str, value, minimum: int = 0) -> int:
    """``value`` must be a Python/numpy int (not bool, not float) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: must be an int, got {value!r} ({type(value).__name__}); e.g. {name}=1000")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def kept_iterations(n_steps: int, n_burnin: int, thin: int) -> range:
    """Iterations (1-based, after the step) whose state is kept as a sample."""
    return range(n_burnin + thin, n_steps + 1, thin)


def dispersed_init(
    x0: torch.Tensor,
    n_chains: int,
    *,
    spread: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Starting points for ``n_chains`` chains: ``x0 + spread * N(0, I)`` per chain.

    ``x0`` is ``[1, C, H, W]`` (e.g. ``problem.back_projection()`` or a MAP estimate). Chain 0
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
    if spread > 0 and n_chains > 1:
        noise = torch.randn(
            (n_chains - 1,) + tuple(x0.shape[1:]), generator=generator, dtype=x0.dtype, device=x0.device
        )
        x[1:] += spread * noise
    return x


def initial_position(x0: torch.Tensor, clip: tuple[float, float] | None, projected: bool) -> torch.Tensor:
    """Copy of the chains' start ``x0`` ``[B, C, H, W]``, projected onto C for projected samplers."""
    if x0.ndim != 4:
        raise ValueError(f"x0: expected [B, C, H, W] (B = chains), got shape {tuple(x0.shape)}")
    x = x0.detach().clone()
    if projected:
        x.clamp_(*clip)
    return x


def apply_box(x_new: torch.Tensor, clip: tuple[float, float] | None, projected: bool) -> torch.Tensor:
    """End of a step: clamp ``x_new`` onto C in place if ``projected``; return the fraction of
    pixels outside C per chain (``[B]``; 0 when projected, NaN without a box)."""
    b = x_new.shape[0]
    if clip is None:
        return torch.full((b,), float("nan"), dtype=x_new.dtype, device=x_new.device)
    lo, hi = clip
    if projected:
        x_new.clamp_(lo, hi)
        return torch.zeros(b, dtype=x_new.dtype, device=x_new.device)
    return ((x_new < lo) | (x_new > hi)).flatten(1).to(x_new.dtype).mean(1)


class DivergenceError(RuntimeError):
    """A chain produced NaN/Inf or exploded; ``iteration`` and ``checkpoint_path`` are set."""

    def __init__(self, message: str, *, iteration: int, checkpoint_path: str | None):
        super().__init__(message)
        self.iteration = iteration
        self.checkpoint_path = checkpoint_path


# --------------------------------------------------------------------------------------------
# bound kernels
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Kernel:
    """A sampler bound to a problem, a prior and its parameters.

    ``init(x0)`` builds the state (one drift evaluation); ``step(state, *, generator)`` is the
    module's pure step. ``state_type`` rebuilds a state from a checkpoint; ``config()`` is the
    JSON-able description stored in checkpoints and reports.
    """

    name: str
    problem: Any
    prior: Any
    params: Any
    init_fn: Callable
    step_fn: Callable
    state_type: type
    grad_evals_per_step: int = 1

    def init(self, x0: torch.Tensor):
        return self.init_fn(x0, self.problem, self.prior, self.params)

    def step(self, state, *, generator: torch.Generator):
        return self.step_fn(state, self.problem, self.prior, self.params, generator=generator)

    def config(self) -> dict:
        params = dataclasses.asdict(self.params) if dataclasses.is_dataclass(self.params) else dict(self.params)
        return {
            "sampler": self.name,
            "params": params,
            "prior": {
                "eps": getattr(self.prior, "eps", None),
                "alpha": getattr(self.prior, "alpha", None),
                "residual_lipschitz": getattr(self.prior, "residual_lipschitz", None),
                "denoiser": getattr(getattr(self.prior, "denoiser", None), "name", None),
            },
        }


# --------------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceConfig:
    """Scalar traces recorded by :func:`run_chain` at every iteration, per chain.

    - ``proj{k}`` for ``k < n_random``: ``<x, r_k>`` with fixed unit random directions ``r_k``
      (Gaussian, drawn from ``torch.Generator().manual_seed(seed)``, never from the chain's
      generator, so traces do not perturb the chain).
    - ``loglik``: ``log p(y | x)`` up to a constant (``-problem.data_nll(x)``), if ``loglik``.
    - ``slow``: ``<x, v>`` with ``v`` an estimate of the **slowest direction**, if ``slow``.
      Choice (documented): for overdamped Langevin with a Gaussian target the relaxation rate
      along an eigenvector of the posterior precision is its eigenvalue, so the slowest mode is
      the leading principal component of the posterior covariance (the max-variance direction;
      reference §2.6 uses the max-variance *pixel*, we use the max-variance *direction*). ``v``
      is estimated during the second half of the burn-in by block power iteration on the
      pooled (all chains) sample covariance of the iterates, 10 windows, starting from a fixed
      random direction, and frozen at iteration ``n_burnin``; before that the trace is NaN.
      With ``n_burnin < 20`` there is no estimate and no ``slow`` trace, unless an explicit
      unit direction ``slow_direction`` (shape of one image) is given, which is then used from
      iteration 1.
    """

    n_random: int = 4
    seed: int = 0
    loglik: bool = True
    slow: bool = True
    slow_direction: torch.Tensor | None = None

    def names(self, n_burnin: int) -> list[str]:
        names = [f"proj{k}" for k in range(self.n_random)]
        if self.loglik:
            names.append("loglik")
        if self.slow and (self.slow_direction is not None or n_burnin >= _SLOW_MIN_BURNIN):
            names.append("slow")
        return names


_SLOW_MIN_BURNIN = 20
_SLOW_WINDOWS = 10


class _SlowDirection:
    """Block power iteration on windowed sample covariances of the burn-in iterates."""

    def __init__(self, d: int, start: int, stop: int, v0: torch.Tensor):
        self.start, self.stop = start, stop  # iterations start < i <= stop feed the estimate
        self.window = max(1, (stop - start) // _SLOW_WINDOWS)
        self.v = v0.to(torch.float64)
        self._reset(d)

    def _reset(self, d: int):
        self.n = 0
        self.sx = torch.zeros(d, dtype=torch.float64, device=self.v.device)
        self.sxv = torch.zeros(d, dtype=torch.float64, device=self.v.device)
        self.sv = 0.0

    def update(self, i: int, x_flat: torch.Tensor) -> None:
        if not (self.start < i <= self.stop):
            return
        x = x_flat.to(torch.float64)
        p = x @ self.v  # [B]
        self.sx += x.sum(0)
        self.sxv += p @ x
        self.sv += float(p.sum())
        self.n += x.shape[0]
        if (i - self.start) % self.window == 0 or i == self.stop:
            u = self.sxv - self.sx * (self.sv / self.n)  # n * windowed covariance @ v
            nrm = torch.linalg.vector_norm(u)
            if torch.isfinite(nrm) and nrm > 0:
                self.v = u / nrm
            self._reset(x.shape[1])

    def state_dict(self) -> dict:
        return {"v": self.v.clone(), "n": self.n, "sx": self.sx.clone(), "sxv": self.sxv.clone(), "sv": self.sv}

    def load_state_dict(self, s: dict) -> None:
        self.v, self.n, self.sx, self.sxv, self.sv = s["v"].clone(), s["n"], s["sx"].clone(), s["sxv"].clone(), s["sv"]


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass
class ChainResult:
    """What :func:`run_chain` returns.

    ``status``: ``"completed"`` or ``"interrupted"`` (Ctrl-C: the state, statistics and traces
    are those of the last completed iteration ``n_done``; a checkpoint was written if one was
    configured and ``checkpoint_saved``). ``traces``: ``{name: (chain, iteration)}`` float64
    arrays for iterations ``1..n_done``. ``timings``: ``sampling_s`` (steps + statistics +
    traces, callbacks and checkpoint I/O excluded), ``callbacks_s``, ``checkpoint_s``,
    ``s_per_step``.
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
# the driver
# --------------------------------------------------------------------------------------------
class _Run:
    """Everything that changes during a run (what a checkpoint stores)."""

    def __init__(self, kernel, state, n_steps, n_burnin, thin, stats, trace: TraceConfig):
        self.state = state
        self.iteration = 0
        self.n_kept = 0
        self.n_steps, self.n_burnin, self.thin = n_steps, n_burnin, thin
        x = state.x
        self.n_chains = x.shape[0]
        d = x[0].numel()
        self.stats = stats
        self.trace = trace
        self.names = trace.names(n_burnin)
        self.traces = torch.full((n_steps, len(self.names), self.n_chains), float("nan"), dtype=torch.float64)
        g = torch.Generator().manual_seed(int(trace.seed))
        r = torch.randn(trace.n_random + 1, d, generator=g, dtype=torch.float64)
        r = r / torch.linalg.vector_norm(r, dim=1, keepdim=True)
        self.directions = r[: trace.n_random].to(dtype=x.dtype, device=x.device)
        self.slow_fixed = None
        self.slow_est = None
        if "slow" in self.names:
            if trace.slow_direction is not None:
                v = trace.slow_direction.reshape(-1).to(torch.float64)
                if v.numel() != d:
                    raise ValueError(f"slow_direction: has {v.numel()} entries, one image has {d}")
                self.slow_fixed = (v / torch.linalg.vector_norm(v)).to(dtype=x.dtype, device=x.device)
            else:
                self.slow_est = _SlowDirection(d, n_burnin // 2, n_burnin, r[-1].to(x.device))

    def slow_vector(self) -> torch.Tensor | None:
        if self.slow_fixed is not None:
            return self.slow_fixed
        if self.slow_est is not None and self.iteration >= self.n_burnin:
            return self.slow_est.v.to(dtype=self.state.x.dtype)
        return None

    def record(self, i: int, x: torch.Tensor, problem) -> None:
        xf = x.reshape(self.n_chains, -1)
        row = self.traces[i - 1]
        col = 0
        if self.trace.n_random:
            row[: self.trace.n_random] = (self.directions @ xf.T).to("cpu", torch.float64)
            col = self.trace.n_random
        if self.trace.loglik:
            row[col] = (-problem.data_nll(x)).detach().to("cpu", torch.float64)
            col += 1
        if self.slow_est is not None:
            self.slow_est.update(i, xf)
            if i == self.n_burnin:
                self.slow_fixed = self.slow_est.v.to(dtype=x.dtype)
        if self.slow_fixed is not None:
            row[col] = (xf @ self.slow_fixed).to("cpu", torch.float64)


def _divergence_message(kernel, it: int, x: torch.Tensor, max_abs: float, ckpt: str | None) -> str:
    finite = bool(torch.isfinite(x).all())
    what = "NaN/Inf values" if not finite else f"max|x| = {float(x.abs().max()):.3g} > max_abs = {max_abs:g}"
    p = kernel.params
    prior = kernel.prior
    step = getattr(p, "step_size", None)
    eps, alpha = getattr(prior, "eps", None), getattr(prior, "alpha", None)
    where = f"; last good checkpoint kept at {ckpt}" if ckpt else ""
    return (
        f"{kernel.name}: chain diverged at iteration {it} ({what}). Likely cause: step size "
        f"{step!r} too large for the actual Lipschitz constant of the drift (the denoiser "
        f"residual L may exceed the assumed {getattr(prior, 'residual_lipschitz', None)}), or "
        f"eps={eps!r} too small / alpha={alpha!r} too large (prior score Lipschitz alpha*L/eps). "
        f"Fix: use step_size='auto' with a measured L, reduce step_size, or increase eps{where}"
    )


def run_chain(
    kernel: Kernel,
    state,
    *,
    n_steps: int,
    n_burnin: int,
    thin: int,
    generator: torch.Generator,
    on_sample: Callable[[int, Any], None] | None = None,
    on_step: Callable[[int, Any, Any], None] | None = None,
    checkpoint=None,
    stats: PosteriorStats | None = None,
    trace: TraceConfig | None = None,
    max_abs: float = 1e3,
    max_nll_rise: float | None = 2.0,
) -> ChainResult:
    """Run ``kernel`` from ``state`` for ``n_steps`` steps; the only sampling loop.

    Args:
        kernel: a bound sampler (e.g. ``ula.kernel(problem, prior, params)``).
        state: its initial state (``kernel.init(x0)``, ``x0`` of shape ``[B, C, H, W]``); not a
            sample (reference pitfall 1).
        n_steps, n_burnin, thin: keyword-only ints, ``0 <= n_burnin <= n_steps``, ``thin >= 1``;
            ``(n_steps - n_burnin) // thin`` samples are kept (module docstring).
        generator: the only source of randomness (a ``torch.Generator`` on ``x``'s device).
        on_sample: ``on_sample(sample_index, state)`` for each kept sample, index 0-based.
        on_step: ``on_step(iteration, state, info)`` after every step (iteration 1-based).
        checkpoint: a :class:`pnp_imaging.checkpoint.CheckpointConfig` (atomic save every
            ``every`` iterations, at the end, and on Ctrl-C), or None.
        stats: a :class:`PosteriorStats` for ``x``'s shape; default: one with quantiles
            (0.05, 0.95) and scales (1, 2, 4, 8). Updated on kept samples only.
        trace: :class:`TraceConfig` (default ``TraceConfig()``).
        max_abs: divergence guard: if any ``|x|`` exceeds it, or is NaN/Inf, the run stops at
            that iteration with :class:`DivergenceError` (message names the likely cause); the
            last checkpoint on disk is the last good one (nothing is written after a
            divergence). Images live in [0, 1], so 1e3 is far outside any sane posterior.
        max_nll_rise: second guard, for blow-ups that stay inside the box (a hard projection
            keeps ``|x| <= 1`` while the chain oscillates away from the data): stop with
            :class:`DivergenceError` when a chain's ``-log p(y|x)`` rises more than
            ``max_nll_rise * m + 25`` above the lowest value it reached in this run (``m`` =
            number of entries of ``y``). Why this cannot fire on a healthy chain: the
            posterior density is ``exp(-nll) * prior``, so states whose nll is far above the
            best one visited carry mass only where the prior compensates; in the Laplace
            picture the data misfit of posterior samples exceeds the mode's by about
            ``d_eff / 2 <= m / 2`` with fluctuations ``O(sqrt(m))`` (Gaussian noise:
            ``chi^2_m / 2``, std ``sqrt(m/2)``), and the ``+25`` keeps the false-alarm rate
            below ``e^-25`` per iteration for tiny ``m``. The default 2 is a 4x margin over
            ``m/2``. Measured: the unstable hard-projection SK-ROCK run on cameraman (256²)
            started drifting near iteration 35 and rose by 2 m at iteration ~78 (10 m at 116).
            Uses the traced log-likelihood (``trace.loglik``; no guard without it); ``None``
            disables it. The reference minimum is recomputed from the traces on resume.

    Returns:
        :class:`ChainResult`. Ctrl-C (SIGINT, main thread) stops at the end of the current
        iteration, writes a checkpoint if configured, and returns ``status="interrupted"``; a
        second Ctrl-C interrupts immediately (no checkpoint written; the last periodic one
        stays valid).

    Per iteration the loop does: one ``kernel.step`` (ULA: one denoiser call), ``K+1`` dot
    products for the traces written into a preallocated ``[n_steps, K, B]`` float64 tensor, one
    max-reduction for the guard; kept iterations add the statistics update.
    """
    n_steps = check_count("n_steps", n_steps, 1)
    n_burnin = check_count("n_burnin", n_burnin, 0)
    thin = check_count("thin", thin, 1)
    if n_burnin > n_steps:
        raise ValueError(f"n_burnin: {n_burnin} exceeds n_steps = {n_steps}; use n_burnin < n_steps")
    if not isinstance(generator, torch.Generator):
        raise ValueError("generator: pass a torch.Generator, e.g. torch.Generator().manual_seed(0)")
    x = state.x
    if x.ndim != 4:
        raise ValueError(f"state.x: expected [B, C, H, W] (B = chains), got shape {tuple(x.shape)}")
    if stats is None:
        stats = PosteriorStats(tuple(x.shape), device=x.device)
    elif tuple(stats.shape) != tuple(x.shape):
        raise ValueError(f"stats: built for shape {stats.shape}, but state.x has shape {tuple(x.shape)}")
    run = _Run(kernel, state, n_steps, n_burnin, thin, stats, trace or TraceConfig())
    if max_nll_rise is not None and not float(max_nll_rise) > 0:
        raise ValueError(f"max_nll_rise: must be > 0 (or None to disable), got {max_nll_rise!r}")
    return _drive(kernel, run, generator=generator, on_sample=on_sample, on_step=on_step,
                  checkpoint=checkpoint, max_abs=float(max_abs), max_nll_rise=max_nll_rise)


def _nll_guard_message(kernel, it: int, rise: float, m: int, limit: float, ckpt: str | None) -> str:
    p = kernel.params
    step = getattr(p, "step_size", None)
    where = f"; last good checkpoint kept at {ckpt}" if ckpt else ""
    return (
        f"{kernel.name}: chain diverged at iteration {it} (-log p(y|x) rose by {rise:.3g} = "
        f"{rise / m:.3g} per measurement above its best value in this run; limit max_nll_rise = {limit:g} "
        f"per measurement + 25): the chain oscillates away from the data inside the box. Likely cause: step size "
        f"{step!r} too large for the denoiser actually used (its residual is not {getattr(kernel.prior, 'residual_lipschitz', None)}-"
        f"Lipschitz there), or a hard projection at a large step. Fix: reduce step_size (the "
        f"'auto' rule, or a smaller sampler.step_fraction), use the soft-tail variant, or increase eps{where}"
    )


def _drive(kernel, run: _Run, *, generator, on_sample, on_step, checkpoint, max_abs, max_nll_rise=None) -> ChainResult:
    from pnp_imaging import checkpoint as ckpt_mod

    problem = kernel.problem
    stop = {"requested": False}
    installed = False
    old_handler = None
    if threading.current_thread() is threading.main_thread():

        def _handler(signum, frame):
            if stop["requested"]:
                raise KeyboardInterrupt
            stop["requested"] = True

        old_handler = signal.signal(signal.SIGINT, _handler)
        installed = True

    t_sampling = t_callbacks = t_ckpt = 0.0
    status = "completed"
    ckpt_path = None if checkpoint is None else str(checkpoint.path)
    saved_at = -1  # iteration of the last checkpoint written by this call
    start_iter = run.iteration
    nll_col = run.names.index("loglik") if (max_nll_rise is not None and "loglik" in run.names) else None
    nll_best = nll_limit = None
    if nll_col is not None:
        m = max(1, int(problem.y[0].numel()))
        nll_limit = float(max_nll_rise) * m + 25.0
        done = run.traces[: run.iteration, nll_col, :]  # [iterations so far, B]; resume-safe
        nll_best = (-done).min(0).values if run.iteration else torch.full((run.n_chains,), math.inf, dtype=torch.float64)
    try:
        t0 = time.perf_counter()
        while run.iteration < run.n_steps:
            i = run.iteration + 1
            new_state, info = kernel.step(run.state, generator=generator)
            x = new_state.x
            if not bool(torch.linalg.vector_norm(x, float("inf")) <= max_abs):  # False for NaN too
                good = ckpt_path if ckpt_path is not None and os.path.exists(ckpt_path) else None
                raise DivergenceError(
                    _divergence_message(kernel, i, x, max_abs, good), iteration=i, checkpoint_path=good
                )
            run.record(i, x, problem)
            if nll_col is not None:
                nll = -run.traces[i - 1, nll_col, :]
                nll_best = torch.minimum(nll_best, nll)
                rise = float((nll - nll_best).max())
                if not rise <= nll_limit:  # also catches a NaN log-likelihood
                    good = ckpt_path if ckpt_path is not None and os.path.exists(ckpt_path) else None
                    raise DivergenceError(
                        _nll_guard_message(kernel, i, rise, m, float(max_nll_rise), good), iteration=i, checkpoint_path=good
                    )
            keep = i > run.n_burnin and (i - run.n_burnin) % run.thin == 0
            if keep:
                run.stats.update(x)
            run.state = new_state
            run.iteration = i
            if keep:
                run.n_kept += 1
            if on_step is not None or (keep and on_sample is not None):
                t1 = time.perf_counter()
                t_sampling += t1 - t0
                if on_step is not None:
                    on_step(i, new_state, info)
                if keep and on_sample is not None:
                    on_sample(run.n_kept - 1, new_state)
                t0 = time.perf_counter()
                t_callbacks += t0 - t1
            if checkpoint is not None and (i % checkpoint.every == 0 or stop["requested"] or i == run.n_steps):
                t1 = time.perf_counter()
                t_sampling += t1 - t0
                ckpt_mod.save_run(checkpoint, kernel, run, generator)
                saved_at = i
                t0 = time.perf_counter()
                t_ckpt += t0 - t1
            if stop["requested"]:
                status = "interrupted"
                break
        t_sampling += time.perf_counter() - t0
    except KeyboardInterrupt:  # second Ctrl-C or not the main thread: no checkpoint written
        status = "interrupted"
    finally:
        if installed:
            signal.signal(signal.SIGINT, old_handler)
    n_done_now = run.iteration - start_iter
    timings = {
        "sampling_s": t_sampling,
        "callbacks_s": t_callbacks,
        "checkpoint_s": t_ckpt,
        "s_per_step": t_sampling / max(n_done_now, 1),
        "steps_this_call": n_done_now,
    }
    names = run.names
    tr = run.traces[: run.iteration]
    traces = {name: tr[:, k, :].T.numpy().copy() for k, name in enumerate(names)}
    return ChainResult(
        status=status,
        state=run.state,
        stats=run.stats,
        traces=traces,
        n_steps=run.n_steps,
        n_burnin=run.n_burnin,
        thin=run.thin,
        n_done=run.iteration,
        n_kept=run.n_kept,
        kernel_config=kernel.config(),
        timings=timings,
        checkpoint_path=ckpt_path,
        checkpoint_saved=saved_at == run.iteration,
        slow_direction=run.slow_vector(),
    )

