r"""Maximum mean discrepancy, its witness function and the witness gradient that drives the flow.

For a kernel k, target P (data) and particles Q (Gretton et al. 2012; Arbel et al. 2019):

    MMD²(P, Q) = E k(x, x') + E k(y, y') − 2 E k(x, y),      x, x' ~ P,  y, y' ~ Q,
    f_{Q,P}(z) = E_{y~Q} k(y, z) − E_{x~P} k(x, z)            (witness, up to normalisation).

The Wasserstein gradient flow of ``½ MMD²(P, ·)`` moves each particle along ``−∇f_{Q,P}(z)``
(Arbel et al. 2019); with the empirical (V-statistic) MMD² of N particles,
``∂ MMD² / ∂z_i = (2/N) ∇f_{Q,P}(z_i)``. With a feature map and the linear base kernel
``k(x, y) = φ(x)ᵀφ(y)`` (DMMD, Galashov et al. 2025) everything goes through the mean features
``m_P = E_P φ``, ``m_Q = E_Q φ``: ``MMD² = ‖m_P − m_Q‖²`` and ``∇f_{Q,P}(z) = J_φ(z)ᵀ(m_Q − m_P)``.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["rbf_kernel", "linear_kernel", "mmd2", "witness", "witness_gradient", "mean_feature_witness_gradient",
           "median_bandwidth"]

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rbf_kernel(bandwidth: float) -> Kernel:
    """Gaussian kernel ``k(x, y) = exp(−‖x − y‖² / (2 h²))`` as a Gram-matrix function ``[n, d], [m, d] → [n, m]``."""
    if not bandwidth > 0:
        raise ValueError(f"bandwidth: must be > 0, got {bandwidth}")

    def gram(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        sq = (x * x).sum(1, keepdim=True) - 2 * x @ y.T + (y * y).sum(1)
        return torch.exp(-sq.clamp_min(0) / (2 * bandwidth ** 2))

    return gram


def linear_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear kernel Gram matrix ``x yᵀ``."""
    return x @ y.T


def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    """The median heuristic: median pairwise distance within ``x ∪ y`` (Gretton et al. 2012)."""
    z = torch.cat([x, y]).reshape(len(x) + len(y), -1)
    d = torch.cdist(z, z)
    return float(d[torch.triu(torch.ones_like(d, dtype=torch.bool), 1)].median())


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, *, unbiased: bool = False) -> torch.Tensor:
    """Empirical MMD² between samples ``x`` ``[n, d]`` and ``y`` ``[m, d]``: the V-statistic (all
    pairs), or with ``unbiased`` the U-statistic (diagonals of the within-sample Gram matrices dropped)."""
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"mmd2: need at least 2 points in each sample, got {len(x)} and {len(y)}")
    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    if unbiased:
        n, m = len(x), len(y)
        return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
                - 2 * kxy.mean())
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


def witness(z: torch.Tensor, target: torch.Tensor, particles: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """``f_{Q,P}(z) = mean_j k(y_j, z) − mean_m k(x_m, z)`` at each row of ``z`` (Q = ``particles``, P = ``target``)."""
    return kernel(z, particles).mean(1) - kernel(z, target).mean(1)


def witness_gradient(z: torch.Tensor, target: torch.Tensor, particles: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """``∇_z f_{Q,P}(z)`` at each row of ``z`` by autograd (``particles`` held fixed); the flow's
    velocity is its negative."""
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(witness(zz, target.detach(), particles.detach(), kernel).sum(), zz)
    return grad


def mean_feature_witness_gradient(z: torch.Tensor, features: Callable[[torch.Tensor], torch.Tensor],
                                  target_mean: torch.Tensor, particle_mean: torch.Tensor | None = None) -> torch.Tensor:
    """``∇_z f_{Q,P}(z) = J_φ(z)ᵀ(m_Q − m_P)`` for the linear base kernel ``k = φᵀφ``: ``target_mean``
    is the (cached) data mean feature m_P; ``particle_mean`` m_Q defaults to the mean feature of ``z``
    itself (the particles are the points where the gradient is taken). One vector–Jacobian product."""
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        phi = features(zz)
        m_q = phi.mean(0).detach() if particle_mean is None else particle_mean.detach()
        (grad,) = torch.autograd.grad((phi @ (m_q - target_mean.detach())).sum(), zz)
    return grad
