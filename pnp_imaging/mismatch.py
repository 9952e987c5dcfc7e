r"""Ingredients of the PnP-ULA mismatch bound (Renaud et al., ICLR 2024).

Equations, sources and what could not be checked: ``docs/algorithms.md §mismatch``.

Two PnP-ULA chains that differ in the denoiser and/or the operator have drifts
:math:`b^i(x) = \nabla\log p^i(y|x) + (\alpha/\varepsilon)(D^i_\varepsilon(x) - x) + (\Pi_C(x)-x)/\lambda`.
The paper's Theorem 1 bounds the distance between their invariant laws by a quantity driven by

- the **posterior-L2 pseudometric** between denoisers (as computed in the authors' code):
  :math:`d(D^1, D^2) = (\mathbb E_{x\sim\pi^1}\|D^1(x) - D^2(x)\|^2)^{1/2}`, estimated on states
  of the chain driven by :math:`D^1`;
- for an operator mismatch, :math:`\|A^1 - A^2\|_2` (a corollary of the paper).

The exact inequality and its constants could not be checked in the paper's text, so this
module computes and reports the *ingredients*, never a made-up numeric bound. On top of the
paper's quantities it reports the drift difference actually felt by the chain,
:math:`(\mathbb E_{x\sim\pi^1}\|b^1(x)-b^2(x)\|^2)^{1/2}`, split into its prior part
:math:`(\alpha/\varepsilon) d(D^1,D^2)` and its data part — whether the paper puts α/ε inside
its definition could not be checked (the authors' code omits it), so both scalings are given.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["denoiser_distance", "operator_distance", "data_drift_distance", "StateReservoir", "run_analysis"]


class StateReservoir:
    """Keeps up to ``capacity`` chain states (evenly thinned kept samples) for the estimates.

    ``every``: keep one kept sample out of ``every`` (all chains of it). Memory is
    ``capacity × chains × d`` floats, set by the caller (default 64 states).
    """

    def __init__(self, n_kept: int, chains: int, capacity: int = 64):
        if capacity < 1:
            raise ValueError(f"mismatch.n_states: must be >= 1, got {capacity}")
        per = max(1, capacity // max(chains, 1))
        self.every = max(1, n_kept // per)
        self.states: list[torch.Tensor] = []
        self.capacity = capacity

    def __call__(self, sample_index: int, state) -> None:
        if sample_index % self.every == 0 and sum(s.shape[0] for s in self.states) < self.capacity:
            self.states.append(state.x.detach().clone())

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


def run_analysis(cfg, problem, denoiser, prior, states: torch.Tensor) -> dict:
    """The mismatch ingredients a run reports (``cfg.mismatch``: a second zoo denoiser and/or a
    second operator config) on the kept chain ``states``.

    After a resume only the states kept since the resume are used (callbacks are not
    checkpointed); ``n_states`` in the output says how many.
    """
    import dataclasses

    import denoisers_zoo
    from operators.registry import build_operator

    mm = cfg.mismatch
    out: dict = {}
    if mm.denoiser:
        other = denoisers_zoo.load(mm.denoiser).to(dtype=states.dtype)
        d = denoiser_distance(denoiser, other, states, prior.sigma)
        out.update({"reference_denoiser": getattr(denoiser, "name", None), "other_denoiser": mm.denoiser, **d,
                    "prior_drift_difference": prior.alpha / prior.eps * d["d_posterior_l2"]})
    if mm.operator:
        shape = tuple(problem.y.shape)
        op2 = build_operator(mm.operator, shape, generator=torch.Generator().manual_seed(int(cfg.seed)))
        out["operator_norm_difference"] = operator_distance(problem.operator, op2, shape)
        out["data_drift_difference"] = data_drift_distance(problem, dataclasses.replace(problem, operator=op2), states)
        out["n_states"] = int(states.shape[0])
    out["note"] = ("ingredients of the Renaud et al. (2024) bound; its constants could not be checked, "
                   "so no numeric bound is claimed")
    return out
