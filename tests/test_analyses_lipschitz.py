"""Lipschitz estimation (one power iteration shared with denoisers_zoo) against analytic constants."""
from __future__ import annotations

import pytest
import torch

from denoisers_zoo.lipschitz import jacobian_spectral_norm
from pnp_imaging.analyses.lipschitz import (
    denoiser_lipschitz,
    generator_lipschitz,
    layer_norm_product,
    sampled_lipschitz,
)


def _sigma_max(a: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(a.detach().double(), ord=2))


def test_linear_generator_constant_is_the_top_singular_value():
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(5, 12).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(12, 5, generator=g, dtype=torch.float64))
    est = generator_lipschitz(lin.float(), (5,), n_points=3, n_iter=100, generator=g)
    assert est["max"] == pytest.approx(_sigma_max(lin.weight), rel=1e-4)
    assert all(v == pytest.approx(est["max"], rel=1e-4) for v in est["values"])  # same Jacobian everywhere
    assert layer_norm_product(torch.nn.Sequential(lin)) == pytest.approx(_sigma_max(lin.weight), rel=1e-12)


def test_mlp_estimate_is_below_the_layer_norm_product():
    g = torch.Generator().manual_seed(1)
    torch_mlp = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 4))
    est = sampled_lipschitz(torch_mlp, torch.randn(32, 3, generator=g), n_iter=50, generator=g)
    assert 0 < est["max"] <= layer_norm_product(torch_mlp) * (1 + 1e-6)
    with pytest.raises(ValueError, match="BatchNorm1d"):
        layer_norm_product(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3)))


class LinearDenoiser(torch.nn.Module):
    """D(x, sigma) = x A^T on flattened images (sigma ignored)."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = a

    def forward(self, x, sigma):
        return (x.reshape(x.shape[0], -1) @ self.a.T).reshape(x.shape)


def test_denoiser_and_residual_constants_of_a_linear_denoiser():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(16, 16, generator=g, dtype=torch.float64) / 4
    den = LinearDenoiser(a)
    x = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64)
    out = denoiser_lipschitz(den, x, 0.1, n_iter=300, generator=g)
    assert out["denoiser"] == pytest.approx(_sigma_max(a), rel=1e-6)
    assert out["residual"] == pytest.approx(_sigma_max(torch.eye(16, dtype=torch.float64) - a), rel=1e-6)


def test_shared_power_iteration_handles_shape_changes_and_bad_arguments():
    w = torch.diag(torch.tensor([3.0, 1.0]))
    up = torch.cat([w, torch.zeros(1, 2)])  # [3, 2]: 2-d latent -> 3-d output
    assert jacobian_spectral_norm(lambda z: z @ up.T, torch.ones(4, 2), n_iter=30) == pytest.approx(3.0, rel=1e-5)
    with pytest.raises(ValueError, match="n_iter"):
        jacobian_spectral_norm(lambda z: z, torch.ones(1, 2), n_iter=0)
    with pytest.raises(ValueError, match="reduce"):
        jacobian_spectral_norm(lambda z: z, torch.ones(1, 2), reduce="mean")
