r"""Distances between two models on chain states (``docs/algorithms.md §mismatch``).

- :func:`denoiser_distance`: the posterior-L2 pseudometric of Renaud et al. (2024),
  :math:`d(D^1, D^2) = (\mathbb E_{x\sim\pi^1}\|D^1(x) - D^2(x)\|^2)^{1/2}` (as computed in the
  authors' code: on states of the chain driven by :math:`D^1`).
- :func:`drift_differences`: per state, :math:`\|b^1(x) - b^2(x)\|^2` with
  :math:`b^1 - b^2 = -(\nabla f^1_y - \nabla f^2_y) + (\alpha/\varepsilon)(D^1 - D^2)` (the box
  term is common to both chains and cancels), and per-pixel maps; what the bounds of
  :mod:`pnp_imaging.mismatch.bounds` need.
- :func:`operator_distance`: :math:`\|A^1 - A^2\|_2` by power iteration.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["StateReservoir", "denoiser_distance", "operator_distance", "data_drift_distance", "drift_differences"]


class StateReservoir:
    """Keeps up to ``capacity`` chain states (evenly thinned kept samples, all chains of each).

    An ``on_sample(index, state)`` callback. It keeps every ``every``-th draw, starting with every
    draw; when more than ``capacity // chains`` draws are kept, every other one is dropped and
    ``every`` doubles. So the states stay evenly spread over the whole run, however long it turns
    out to be (a run-until-converged run stops before ``n_kept``), between half and all of the
    capacity. ``stacked()`` is ``[draws·chains, C, H, W]`` in draw-major order (draw 0 of chains
    0..B−1, draw 1, ...), so per-state values reshape to ``(draw, chain)``. Memory is
    ``capacity × d`` floats (default 64 states). ``n_kept`` (the planned number of kept draws) is
    not needed any more and kept for the callers.
    """

    def __init__(self, n_kept: int, chains: int, capacity: int = 64):
        if capacity < 1:
            raise ValueError(f"mismatch.n_states: must be >= 1, got {capacity}")
        self.per = max(1, capacity // max(chains, 1))
        self.every = 1
        self.states: list[torch.Tensor] = []
        self.capacity = capacity
        self.chains = chains

    def __call__(self, sample_index: int, state) -> None:
        if sample_index % self.every:
            return
        self.states.append(state.x.detach().clone())
        if len(self.states) > self.per:
            self.states = self.states[::2]
            self.every *= 2

    def stacked(self) -> torch.Tensor:
        if not self.states:
            raise ValueError("mismatch: no chain states were kept; increase sampler.n_steps")
        return torch.cat(self.states, dim=0)


def _batches(x: torch.Tensor, size: int):
    for i in range(0, x.shape[0], size):
        yield x[i:i + size]


@torch.no_grad()
def denoiser_distance(d1, d2, states: torch.Tensor, sigma: float, *, batch: int = 8) -> dict[str, float]:
    """Posterior-L2 pseudometric ``sqrt(mean_x ||D1(x, σ) - D2(x, σ)||²)`` over ``states``.

    Returns ``{"d_posterior_l2": ..., "rms_per_pixel": ..., "n_states": ...}``; ``rms_per_pixel``
    divides by the number of pixels (easier to read on the [0, 1] scale).
    """
    total, n = 0.0, 0
    for x in _batches(states, batch):
        diff = d1(x, sigma) - d2(x, sigma)
        total += float((diff.double() ** 2).flatten(1).sum(1).sum())
        n += x.shape[0]
    mean_sq = total / n
    d = states[0].numel()
    return {"d_posterior_l2": math.sqrt(mean_sq), "rms_per_pixel": math.sqrt(mean_sq / d), "n_states": n}


class _Difference:
    def __init__(self, op1, op2):
        self.op1, self.op2 = op1, op2

    def AtA(self, x):  # noqa: N802
        r = self.op1.A(x) - self.op2.A(x)
        return self.op1.A_adjoint(r) - self.op2.A_adjoint(r)


def operator_distance(op1, op2, shape: Sequence[int], *, n_iter: int = 200,
                      generator: torch.Generator | None = None) -> float:
    """``||A1 - A2||_2`` by power iteration on ``(A1 - A2)^T (A1 - A2)`` (float64, seeded)."""
    from operators.base import power_norm_squared

    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    return math.sqrt(max(power_norm_squared(_Difference(op1, op2), shape, n_iter=n_iter, generator=gen), 0.0))


@torch.no_grad()
def data_drift_distance(problem1, problem2, states: torch.Tensor, *, batch: int = 8) -> float:
    """``sqrt(mean_x ||∇f¹_y(x) − ∇f²_y(x)||²)`` over ``states`` (the data part of b¹ − b²)."""
    total, n = 0.0, 0
    for x in _batches(states, batch):
        diff = problem1.data_grad(x) - problem2.data_grad(x)
        total += float((diff.double() ** 2).flatten(1).sum(1).sum())
        n += x.shape[0]
    return math.sqrt(total / n)


@torch.no_grad()
def drift_differences(states: torch.Tensor, prior1, prior2, problem1, problem2, *, batch: int = 8) -> dict:
    """Per-state squared norms and per-pixel mean squares of the two models' differences.

    Returns ``{"drift_sq": [N], "drift_map": [H, W], "denoiser_sq": [N] | None,
    "denoiser_map": [H, W] | None}`` (float64 CPU; maps: mean over states of the squared
    difference summed over channels, so ``map.sum() == sq.mean()``). ``prior2`` None: same prior;
    ``problem2`` None: same operator. ``prior2`` must have the same ``α`` and ``ε`` as ``prior1``.
    """
    drift_sq, den_sq, drift_map, den_map = [], [], 0.0, 0.0
    for x in _batches(states, batch):
        db = torch.zeros_like(x, dtype=torch.float64)
        if prior2 is not None:
            dd = (prior1.denoise(x) - prior2.denoise(x)).double()
            den_sq.append((dd ** 2).flatten(1).sum(1))
            den_map = den_map + (dd ** 2).sum(1).sum(0)
            db += (prior1.alpha / prior1.eps) * dd
        if problem2 is not None:
            db -= (problem1.data_grad(x) - problem2.data_grad(x)).double()
        drift_sq.append((db ** 2).flatten(1).sum(1))
        drift_map = drift_map + (db ** 2).sum(1).sum(0)
    n = states.shape[0]
    return {"drift_sq": torch.cat(drift_sq).cpu(), "drift_map": (drift_map / n).cpu(),
            "denoiser_sq": torch.cat(den_sq).cpu() if den_sq else None,
            "denoiser_map": (den_map / n).cpu() if den_sq else None}
