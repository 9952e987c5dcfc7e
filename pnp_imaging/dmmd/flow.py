r"""Sampling by the noise-adaptive MMD gradient flow (DMMD, Galashov et al. 2025).

Particles start from N(0, I) (the forward diffusion's end point, ``noising.py``). For a
decreasing grid of noise levels ``t_1 = 1 > … > t_L = t_min`` the flow takes ``N_s`` explicit
Euler steps of the MMD gradient flow (Arbel et al. 2019) with the level's kernel k_t:

    z_i ← z_i − η ∇f_{Q,P}^{t}(z_i),   ∇f_{Q,P}^{t}(z) = J_φ(z, t)ᵀ (m_Q(t) − m_P(t)),

where ``m_P(t) = E_{x~data} φ_θ(x, t)`` is the clean data's mean feature at that level, computed
once per level and cached (the paper's "approximate sampling" with a linear base kernel), and
``m_Q(t)`` the current particles' mean feature. Particles interact only through m_Q, within a
batch of ``batch`` particles. The result is clamped to [−1, 1] and mapped to [0, 1].

Faithful: start from noise, decreasing noise grid, N_s steps per level with k_t, cached data means.
**Our choices** (the paper's grid, N_s and η could not be read): levels linear in t, no noise
injection (Arbel et al.'s fix), one constant step size η on the [−1, 1] image scale (the gradient
penalty of ``objective.py`` makes ‖∇f‖ ≈ 1 where the kernel was trained, so η is roughly the
distance a particle moves per step); the shipped defaults are in the recipe's ``flow`` section.
"""
from __future__ import annotations

import math

import torch

from pnp_imaging.dmmd.mmd import mean_feature_witness_gradient

__all__ = ["level_grid", "data_mean_features", "mmd_flow"]


def level_grid(levels: int, t_min: float) -> torch.Tensor:
    """The decreasing noise grid ``linspace(1, t_min, levels)`` (our choice of spacing)."""
    if levels < 1 or not 0 < t_min < 1:
        raise ValueError(f"levels must be >= 1 and t_min in (0, 1), got levels={levels}, t_min={t_min}")
    return torch.linspace(1.0, t_min, levels)


@torch.no_grad()
def data_mean_features(net, data: torch.Tensor, levels: torch.Tensor, *, chunk: int = 2048) -> torch.Tensor:
    """``m_P(t_l) = mean_x φ_θ(x, t_l)`` ``[L, F]`` for flat data ``[n, D]`` on the [−1, 1] scale."""
    rows = []
    for t in levels.tolist():
        total = sum(net(data[i:i + chunk], t).sum(0) for i in range(0, len(data), chunk))
        rows.append(total / len(data))
    return torch.stack(rows)


def _flow_batch(net, z: torch.Tensor, levels: torch.Tensor, data_means: torch.Tensor, steps_per_level: int,
                step_size: float, bar) -> torch.Tensor:
    """Run the whole level grid on one batch of interacting particles ``z`` ``[B, D]``."""
    for t, m_p in zip(levels.tolist(), data_means):
        for _ in range(steps_per_level):
            z = z - step_size * mean_feature_witness_gradient(z, lambda x: net(x, t), m_p)
            if bar is not None:
                bar.update(1)
    return z.detach()


def mmd_flow(net, levels: torch.Tensor, data_means: torch.Tensor, *, n: int, dim: int, steps_per_level: int,
             step_size: float, batch: int, generator: torch.Generator, bar=None) -> torch.Tensor:
    """``n`` particles ``[n, dim]`` (the [−1, 1] scale, not clamped) from N(0, I) through the flow.
    The initial noise of all batches is drawn first from ``generator``, so the result depends only on
    the seed and ``batch``; every batch holds ``batch`` particles (the last one is cut to ``n``)."""
    if n < 1 or batch < 1 or steps_per_level < 1 or not step_size > 0:
        raise ValueError(f"mmd_flow: n, batch, steps_per_level must be >= 1 and step_size > 0 "
                         f"(got n={n}, batch={batch}, steps_per_level={steps_per_level}, step_size={step_size})")
    if len(levels) != len(data_means):
        raise ValueError(f"mmd_flow: {len(levels)} levels but {len(data_means)} cached data means")
    n_batches = math.ceil(n / batch)
    z0 = torch.randn(n_batches * batch, dim, generator=generator)
    net.eval()
    out = [_flow_batch(net, z0[b * batch:(b + 1) * batch], levels, data_means, steps_per_level, step_size, bar)
           for b in range(n_batches)]
    return torch.cat(out)[:n]
