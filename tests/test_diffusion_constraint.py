"""Box constraints for chains (Fishman et al. 2023): Metropolis rejection against the exact law of
1-D reflected Brownian motion, reflection, clipping's bias, and per-pixel versus whole-vector
rejection."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import one_line
from pnp_imaging.diffusion.constraint import BOX_RULES, metropolis_box, reflect_box

F64 = torch.float64


def rbm_bin_probs(x0: float, t: float, edges: torch.Tensor, terms: int = 6) -> torch.Tensor:
    """Exact bin masses of RBM on [0, 1] from x0 at time t: density Σ_k φ_t(y − x0 + 2k) + φ_t(y + x0 + 2k)."""
    cdf = lambda v: 0.5 * (1 + torch.erf(v / math.sqrt(2 * t)))  # noqa: E731
    total = torch.zeros(edges.numel() - 1, dtype=F64)
    for k in range(-terms, terms + 1):
        for shift in (-x0 + 2 * k, x0 + 2 * k):
            total += cdf(edges + shift).diff()
    return total


def run_walk(rule: str, gamma: float, t: float, n: int = 100_000, x0: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.full((n, 1), x0, dtype=F64)
    for _ in range(int(round(t / gamma))):
        x = BOX_RULES[rule](x, x + math.sqrt(gamma) * torch.randn(x.shape, generator=g, dtype=F64), 0.0, 1.0)
    return x.flatten()


def tv(x: torch.Tensor, probs: torch.Tensor, edges: torch.Tensor) -> float:
    h = torch.histogram(x, bins=edges).hist / x.numel()
    return 0.5 * float((h - probs).abs().sum())


def test_exact_rbm_law_is_a_probability():
    edges = torch.linspace(0, 1, 51, dtype=F64)
    assert float(rbm_bin_probs(0.1, 0.05, edges).sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("gamma", [1e-3, 1e-4])
def test_metropolis_and_reflection_match_reflected_brownian_motion_and_clipping_does_not(gamma):
    """From x0 = 0.1 to T = 0.05, 10⁵ walkers, 50 bins: Metropolis and reflection at the sampling
    floor (measured TV 0.0064/0.0062 at γ = 1e-3, 0.0059/0.0059 at 1e-4; bound 0.02); clipping piles
    mass on the face 0 (TV 0.055 at γ = 1e-3, 0.018 at 1e-4)."""
    edges = torch.linspace(0, 1, 51, dtype=F64)
    probs = rbm_bin_probs(0.1, 0.05, edges)
    for rule in ("metropolis", "reflect"):
        assert tv(run_walk(rule, gamma, 0.05), probs, edges) <= 0.02, rule
    clipped = run_walk("clip", gamma, 0.05)
    assert float((clipped == 0.0).double().mean()) > 0.01  # an atom on the face
    if gamma == 1e-3:
        assert tv(clipped, probs, edges) > 0.05


def test_per_pixel_rejection_does_not_stall_where_whole_vector_rejection_does():
    """d = 100, γ = 1e-4, T = 0.01 from a uniform start: per-coordinate acceptance ≈ 0.99 and a
    mean-squared displacement close to free Brownian motion's T = 0.01; rejecting whole vectors
    accepts ≈ 0.45 and moves half as far."""
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2000, 100, dtype=F64, generator=g)
    x_pix, x_vec, acc_pix, acc_vec = x0.clone(), x0.clone(), [], []
    for _ in range(100):
        step = 1e-2 * torch.randn(x0.shape, generator=g, dtype=F64)
        x_pix, a = metropolis_box(x_pix, x_pix + step)
        acc_pix.append(float(a.mean()))
        y = x_vec + step
        ok = ((y >= 0) & (y <= 1)).all(1, keepdim=True)
        acc_vec.append(float(ok.double().mean()))
        x_vec = torch.where(ok, y, x_vec)
    msd_pix, msd_vec = float(((x_pix - x0) ** 2).mean()), float(((x_vec - x0) ** 2).mean())
    assert sum(acc_pix) / 100 > 0.98 and sum(acc_vec) / 100 < 0.6
    assert 0.0085 < msd_pix < 0.0105 and msd_vec < 0.6 * msd_pix


def test_reflection_is_the_fold_and_bad_boxes_are_refused():
    y = torch.tensor([-0.3, 0.2, 1.4, 2.7, -1.6], dtype=F64)
    assert torch.allclose(reflect_box(y), torch.tensor([0.3, 0.2, 0.6, 0.7, 0.4], dtype=F64))
    with pytest.raises(ValueError) as e:
        metropolis_box(y, y, 1.0, 0.0)
    assert one_line(e).startswith("box:")
