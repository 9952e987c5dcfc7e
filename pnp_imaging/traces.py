"""What a chain records besides the statistics: per-iteration scalar traces, and the run state
that a checkpoint stores (:class:`ChainRun`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pnp_imaging.stats import PosteriorStats, SlowDirection

__all__ = ["TraceConfig", "ChainRun", "SLOW_MIN_BURNIN"]

#: below this burn-in there is no slow-direction estimate (and no ``slow`` trace)
SLOW_MIN_BURNIN = 20


@dataclass(frozen=True)
class TraceConfig:
    """Scalar traces recorded by :func:`~pnp_imaging.samplers.base.run_chain` at every
    iteration, per chain (``docs/algorithms.md §traces``).

    - ``proj{k}`` for ``k < n_random``: ``<x, r_k>`` with fixed unit random directions ``r_k``
      (Gaussian, drawn from ``torch.Generator().manual_seed(seed)``, never from the chain's
      generator, so traces do not perturb the chain).
    - ``loglik``: ``log p(y | x)`` up to a constant (``-problem.data_nll(x)``), if ``loglik``.
    - ``slow``: ``<x, v>`` with ``v`` the estimated slowest direction, if ``slow``: for
      overdamped Langevin with a Gaussian target the relaxation rate along an eigenvector of
      the posterior precision is its eigenvalue, so the slowest mode is the leading principal
      component of the posterior covariance. ``v`` is estimated during the second half of the
      burn-in (:class:`pnp_imaging.stats.SlowDirection`) and frozen at iteration ``n_burnin``;
      before that the trace is NaN. With ``n_burnin < 20`` there is no estimate and no ``slow``
      trace, unless an explicit unit direction ``slow_direction`` (one image's shape) is given,
      which is then used from iteration 1.
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
        if self.slow and (self.slow_direction is not None or n_burnin >= SLOW_MIN_BURNIN):
            names.append("slow")
        return names

    def to_dict(self) -> dict:
        return {"n_random": self.n_random, "seed": self.seed, "loglik": self.loglik, "slow": self.slow,
                "slow_direction": self.slow_direction}


def _random_directions(n: int, d: int, seed: int) -> torch.Tensor:
    """``n`` fixed unit Gaussian directions in R^d (float64), from their own seeded generator."""
    r = torch.randn(n, d, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return r / torch.linalg.vector_norm(r, dim=1, keepdim=True)


class ChainRun:
    """Everything that changes during a run — the state, the counters, the statistics, the
    traces and the slow-direction estimate — i.e. what a checkpoint stores."""

    def __init__(self, state, n_steps: int, n_burnin: int, thin: int, stats: PosteriorStats, trace: TraceConfig):
        self.state = state
        self.iteration = 0
        self.n_kept = 0
        self.elapsed_s = 0.0  # wall time of the sampling loop, summed over resumes
        self.n_steps, self.n_burnin, self.thin = n_steps, n_burnin, thin
        x = state.x
        self.n_chains = x.shape[0]
        d = x[0].numel()
        self.stats = stats
        self.trace = trace
        self.names = trace.names(n_burnin)
        self.traces = torch.full((n_steps, len(self.names), self.n_chains), float("nan"), dtype=torch.float64)
        r = _random_directions(trace.n_random + 1, d, trace.seed)
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
                self.slow_est = SlowDirection(d, n_burnin // 2, n_burnin, r[-1].to(x.device))

    def is_kept(self, i: int) -> bool:
        """Iteration ``i`` (1-based) is kept iff ``i > n_burnin`` and ``(i - n_burnin) % thin == 0``."""
        return i > self.n_burnin and (i - self.n_burnin) % self.thin == 0

    def slow_vector(self) -> torch.Tensor | None:
        if self.slow_fixed is not None:
            return self.slow_fixed
        if self.slow_est is not None and self.iteration >= self.n_burnin:
            return self.slow_est.v.to(dtype=self.state.x.dtype)
        return None

    def record(self, i: int, x: torch.Tensor, problem) -> None:
        """Write iteration ``i``'s traces of the chains ``x`` and feed the slow-direction estimate."""
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

    def traces_dict(self) -> dict:
        """``{name: (chain, iteration)}`` float64 numpy arrays for iterations ``1..iteration``."""
        tr = self.traces[: self.iteration]
        return {name: tr[:, k, :].T.numpy().copy() for k, name in enumerate(self.names)}
