r"""Particle guidance: a repulsive joint potential across the batch (Corso, Xu, De Bortoli, Barzilay,
Jaakkola, ICLR 2024, arXiv 2310.13102, §3-4; ``docs/algorithms.md §diffusion``).

The n particles of a batch follow a joint reverse process whose drift adds, to each particle's own
score, the gradient of ``log Φ_t = −(α_t/2) Σ_{i,j} k_t(x_i, x_j)`` with the RBF kernel
``k(x, x') = exp(−‖x − x'‖²/h)``:

    ∇_{x_i} log Φ_t = α_t Σ_j (2/h)(x_i − x_j) k(x_i, x_j)        (a repulsion).

Bandwidth by the median heuristic of the authors' code: ``h = med_i(med_{j≠i} ‖x_i − x_j‖)² /
log(n − 1)`` — the row-wise median without the diagonal (the ``svgd`` branch keeps the diagonal
and uses log n). Guided particles are **not** independent posterior draws: use them for
diversity, not for intervals or coverage.
"""
from __future__ import annotations

import math

import torch

__all__ = ["median_bandwidth", "rbf_repulsion"]


def median_bandwidth(x: torch.Tensor) -> float:
    """``h = median_i(median_{j≠i} ‖x_i − x_j‖)² / log(n − 1)`` for ``x`` of shape ``[n, ...]``, n ≥ 3."""
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"particle guidance: needs a batch of at least 3 particles, got {n}")
    d = torch.cdist(x.flatten(1), x.flatten(1))
    off = d[~torch.eye(n, dtype=torch.bool, device=x.device)].view(n, n - 1)
    med = off.median(dim=1).values.median()
    return float(med) ** 2 / math.log(n - 1)


def rbf_repulsion(x: torch.Tensor, h: float | None = None) -> torch.Tensor:
    """``R_i = Σ_j (2/h)(x_i − x_j) exp(−‖x_i − x_j‖²/h) = −∇_{x_i} ½ Σ_{k,l} k(x_k, x_l)``, shape of
    ``x`` (``h=None``: :func:`median_bandwidth`)."""
    h = median_bandwidth(x) if h is None else float(h)
    flat = x.flatten(1)
    diff = flat[:, None, :] - flat[None, :, :]  # [n, n, d]
    k = torch.exp(-(diff * diff).sum(-1) / h)  # [n, n]
    return ((2.0 / h) * (k[:, :, None] * diff).sum(1)).view_as(x)
