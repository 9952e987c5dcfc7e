"""DMMD building blocks against closed forms: MMD² and its gradient for the Gaussian kernel by a
direct double loop; cached-mean vs full-data witness gradients for the linear kernel; the flow on
two Gaussians in 2-D with a fixed feature map."""
from __future__ import annotations

import math

import pytest
import torch

from pnp_imaging.dmmd.features import FeatureNet, init_parameters
from pnp_imaging.dmmd.flow import level_grid, mmd_flow
from pnp_imaging.dmmd.mmd import (linear_kernel, mean_feature_witness_gradient, mmd2, rbf_kernel, witness,
                                  witness_gradient)


def _samples(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    y = 0.5 + 1.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    return x, y


def _k(a, b, h):
    return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * h * h))


def _mmd2_loop(x, y, h, unbiased):
    x, y = x.tolist(), y.tolist()
    n, m = len(x), len(y)
    sxx = sum(_k(x[i], x[j], h) for i in range(n) for j in range(n) if not (unbiased and i == j))
    syy = sum(_k(y[i], y[j], h) for i in range(m) for j in range(m) if not (unbiased and i == j))
    sxy = sum(_k(a, b, h) for a in x for b in y)
    return sxx / (n * (n - 1) if unbiased else n * n) + syy / (m * (m - 1) if unbiased else m * m) - 2 * sxy / (n * m)


@pytest.mark.parametrize("unbiased", [False, True])
def test_rbf_mmd2_matches_double_loop(unbiased):
    x, y = _samples()
    got = float(mmd2(x, y, rbf_kernel(1.7), unbiased=unbiased))
    assert got == pytest.approx(_mmd2_loop(x, y, 1.7, unbiased), rel=1e-12, abs=1e-14)


def test_rbf_witness_gradient_matches_closed_form_loop():
    """∇_z k(a, z) = k(a, z)(a − z)/h², so ∇f_{Q,P}(z) = mean_j k(y_j,z)(y_j−z)/h² − mean_m k(x_m,z)(x_m−z)/h²."""
    x, y = _samples(1)
    z = torch.tensor([[0.3, -0.2, 1.0], [-1.0, 0.5, 0.0]], dtype=torch.float64)
    h = 0.9
    got = witness_gradient(z, x, y, rbf_kernel(h))
    for r, zr in enumerate(z.tolist()):
        want = [0.0, 0.0, 0.0]
        for pts, sign in ((y.tolist(), 1.0), (x.tolist(), -1.0)):
            for a in pts:
                w = sign * _k(a, zr, h) / (h * h * len(pts))
                want = [wi + w * (ai - zi) for wi, ai, zi in zip(want, a, zr)]
        assert got[r].tolist() == pytest.approx(want, rel=1e-10, abs=1e-14)


def test_mmd2_gradient_is_two_over_n_times_witness_gradient():
    """∂MMD²_V/∂y_i = (2/N) ∇f_{Q,P}(y_i): the flow's velocity is the particle gradient of the V-statistic."""
    x, y = _samples(2)
    yy = y.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(mmd2(x, yy, rbf_kernel(1.1)), yy)
    assert torch.allclose(auto, 2 / len(y) * witness_gradient(y, x, y, rbf_kernel(1.1)), rtol=1e-12, atol=1e-14)


def test_cached_mean_and_full_data_witness_gradients_agree_for_linear_kernel():
    net = FeatureNet(dim=4, width=16, depth=2, features=8, t_dim=8)
    init_parameters(net, torch.Generator().manual_seed(0))
    net = net.double()
    g = torch.Generator().manual_seed(3)
    data = torch.randn(50, 4, generator=g, dtype=torch.float64)
    particles = torch.randn(20, 4, generator=g, dtype=torch.float64)
    phi = lambda a: net(a, 0.3)  # noqa: E731
    full = witness_gradient(particles, data, particles, lambda a, b: linear_kernel(phi(a), phi(b)))
    with torch.no_grad():
        cached = phi(data).mean(0)
    fast = mean_feature_witness_gradient(particles, phi, cached)
    assert torch.allclose(full, fast, rtol=1e-10, atol=1e-12)
    assert float(witness(particles, data, particles, linear_kernel)[0]) != 0.0  # the kernel is not trivially zero


class _Quadratic(torch.nn.Module):
    """φ(x) = (x₁, x₂, x₁², x₂², x₁x₂): a linear-kernel MMD that compares means and second moments."""

    def forward(self, x, t):
        return torch.cat([x, x * x, x[:, :1] * x[:, 1:]], dim=1)


def test_flow_on_two_gaussians_moves_mean_and_covariance_to_target():
    """Target N(μ, Σ) with exact mean features (E x = μ, E xxᵀ = Σ + μμᵀ), particles from N(0, I).
    The flow minimises ‖m_Q − m_P‖², whose minimisers share the target's first two moments; the
    remaining error is the flow's, not Monte Carlo error (m_P is exact, m_Q uses the same particles)."""
    mu = torch.tensor([1.5, -1.0])
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]])
    second = cov + torch.outer(mu, mu)
    m_p = torch.cat([mu, second.diagonal(), second[0, 1:]])
    levels = level_grid(20, 0.05)
    means = m_p.expand(len(levels), -1)
    z0 = mmd_flow(_Quadratic(), levels[:1], means[:1], n=400, dim=2, steps_per_level=1, step_size=1e-12, batch=400,
                  generator=torch.Generator().manual_seed(0))
    z = mmd_flow(_Quadratic(), levels, means, n=400, dim=2, steps_per_level=100, step_size=0.05, batch=400,
                 generator=torch.Generator().manual_seed(0))
    err0 = (z0.mean(0) - mu).norm(), (torch.cov(z0.T) - cov).norm()
    err = (z.mean(0) - mu).norm(), (torch.cov(z.T, correction=0) - cov).norm()
    assert err0[0] > 1.5 and err0[1] > 0.5
    assert err[0] < 0.02 and err[1] < 0.02, f"mean/cov error after the flow {err}, before {err0}"


def test_flow_is_seeded():
    levels = level_grid(3, 0.1)
    means = torch.zeros(3, 5)
    run = lambda s: mmd_flow(_Quadratic(), levels, means, n=10, dim=2, steps_per_level=2, step_size=0.1,  # noqa: E731
                             batch=4, generator=torch.Generator().manual_seed(s))
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
    assert run(0).shape == (10, 2)
