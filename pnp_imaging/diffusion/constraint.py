r"""Keeping a Markov chain in the box ``[low, high]^d``: Metropolis rejection (Fishman, Klarner,
Mathieu, Hutchinson, De Bortoli, NeurIPS 2023, arXiv 2307.05439, §3), reflection and clipping
(``docs/algorithms.md §diffusion``).

Metropolis: a move ``x → y`` is accepted iff ``y`` is in the set, else the chain stays at ``x``; a
random walk ``y = x + √γ ξ`` with this rule is a valid discretisation of reflected Brownian motion
(RBM), whose long-run law is uniform on the set. Only a membership test is needed. For a box the
RBM is a product of 1-D RBMs, so the rule is applied **per coordinate (pixel)**: rejecting the
whole vector when one of d coordinates leaves would freeze all of them (acceptance ~0.45 at
d = 100, γ = 1e-4 from a uniform start, versus 0.99 per coordinate). Reflection folds a proposal
back into the box (the exact RBM map for a Gaussian step); clipping piles mass on the faces and
is biased.
"""
from __future__ import annotations

import torch

__all__ = ["metropolis_box", "reflect_box", "clip_box", "BOX_RULES"]


def _check(low: float, high: float) -> None:
    if not float(low) < float(high):
        raise ValueError(f"box: needs low < high, got [{low}, {high}]")


def metropolis_box(x: torch.Tensor, proposal: torch.Tensor, low: float = 0.0, high: float = 1.0):
    """Per-coordinate Metropolis rule: ``proposal`` where it lies in ``[low, high]``, else ``x``.
    Returns ``(new, acceptance)`` with ``acceptance`` the accepted fraction per batch element ``[B]``."""
    _check(low, high)
    inside = (proposal >= low) & (proposal <= high)
    return torch.where(inside, proposal, x), inside.flatten(1).double().mean(1)


def reflect_box(y: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Fold ``y`` into ``[low, high]`` by reflections at the faces (period ``2(high − low)``)."""
    _check(low, high)
    w = high - low
    u = torch.remainder(y - low, 2.0 * w)
    return low + torch.where(u > w, 2.0 * w - u, u)


def clip_box(y: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Clamp ``y`` to ``[low, high]`` (biased: mass collects on the faces)."""
    _check(low, high)
    return y.clamp(low, high)


#: the three rules by name, ``rule(x, proposal, low, high) -> new``
BOX_RULES = {
    "metropolis": lambda x, y, lo, hi: metropolis_box(x, y, lo, hi)[0],
    "reflect": lambda x, y, lo, hi: reflect_box(y, lo, hi),
    "clip": lambda x, y, lo, hi: clip_box(y, lo, hi),
}
