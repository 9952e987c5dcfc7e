"""Noise models: gradients vs autograd, Lipschitz constants (analytic, power iteration and
finite-difference ratios), the Poisson guard, sampling and bad input."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import one_line

from operators import (
    Blur,
    GaussianNoise,
    Identity,
    Inpainting,
    PoissonGaussianNoise,
    PoissonNoise,
    build_noise,
    gaussian_kernel,
    random_mask,
    uniform_kernel,
)

SHAPE = (1, 1, 12, 13)
MODELS = {
    "gaussian": GaussianNoise(0.05),
    "poisson": PoissonNoise(0.02),
    "poisson_gaussian": PoissonGaussianNoise(0.02, 0.03),
}


def _y(noise, gen):
    z = 0.05 + 0.9 * torch.rand(SHAPE, generator=gen, dtype=torch.float64)
    y = noise.sample(z, generator=gen)
    y[0, 0, 0, :3] = 0.0  # y = 0 pixels exercise the linear branch of the Poisson NLL
    return y


def _z_batch(gen, B=3):
    # spans negative values, the region below the Poisson threshold and ordinary intensities
    return -0.1 + 1.2 * torch.rand((B,) + SHAPE[1:], generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_grad_z_matches_autograd(name, gen):
    noise = MODELS[name]
    y = _y(noise, gen)
    z = _z_batch(gen).requires_grad_(True)
    nll = noise.nll(y, z)
    assert nll.shape == (3,)
    (auto,) = torch.autograd.grad(nll.sum(), z)
    assert torch.allclose(noise.grad_z(y, z.detach()), auto, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_grad_x_matches_autograd_through_operator(name, gen):
    noise = MODELS[name]
    op = Blur(gaussian_kernel(5, 1.0), boundary="reflect")
    y = _y(noise, gen)
    x = _z_batch(gen).requires_grad_(True)
    (auto,) = torch.autograd.grad(noise.nll(y, op.A(x)).sum(), x)
    assert torch.allclose(noise.grad(x.detach(), y, op), auto, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("name", ["poisson", "poisson_gaussian"])
def test_poisson_guard_is_c1_and_exact_above_threshold(name, gen):
    noise = MODELS[name]
    t, s, gain = noise.threshold, noise._shift(), noise.gain
    y = torch.full((1, 1, 1, 1), 0.4, dtype=torch.float64)
    # continuity of value and gradient at u = z + s = t
    z_lo = torch.full((1, 1, 1, 1), t - s - 1e-9, dtype=torch.float64)
    z_hi = torch.full((1, 1, 1, 1), t - s + 1e-9, dtype=torch.float64)
    slope = abs(noise.grad_z(y, z_hi).item())
    assert noise.nll(y, z_lo).item() == pytest.approx(noise.nll(y, z_hi).item(), abs=4e-9 * slope + 1e-9)
    curv = noise.lipschitz_z(y)
    assert noise.grad_z(y, z_lo).item() == pytest.approx(noise.grad_z(y, z_hi).item(), abs=4e-9 * curv + 1e-9)
    # exact negative log-likelihood (up to a constant) above the threshold
    z = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64).view(3, 1, 1, 1)
    yy = (y + s).clamp(min=0)
    exact = ((z + s) - yy * torch.log(z + s)) / gain
    assert torch.allclose(noise.nll(y, z), exact.flatten(), rtol=1e-12)
    # finite everywhere, including z << 0
    z_neg = torch.tensor([-5.0, -0.5, 0.0], dtype=torch.float64).view(3, 1, 1, 1)
    assert torch.all(torch.isfinite(noise.nll(y, z_neg)))


def test_poisson_nll_matches_scipy_logpmf(gen):
    from scipy.stats import poisson

    noise = PoissonNoise(0.05)
    z = torch.tensor([0.3, 0.7], dtype=torch.float64).view(2, 1, 1, 1)
    y = torch.tensor([0.25], dtype=torch.float64).view(1, 1, 1, 1)  # 5 counts
    ref = -poisson.logpmf(5, z.flatten().numpy() / 0.05)
    diff = noise.nll(y, z).numpy() - ref  # equal up to a z-independent constant
    assert diff[0] == pytest.approx(diff[1], abs=1e-10)


def test_gaussian_lipschitz_is_norm_over_sigma2(gen):
    noise = GaussianNoise(0.1)
    op = Blur(uniform_kernel(5), boundary="circular", image_shape=(1, 32, 32))
    L = noise.lipschitz(op, (1, 1, 32, 32), generator=gen)
    assert L == pytest.approx(1.0 / 0.1**2, rel=1e-4)  # ||A||^2 = 1 for a circular blur
    op2 = Blur(uniform_kernel(5), boundary="zero")
    L2 = noise.lipschitz(op2, (1, 1, 32, 32), generator=torch.Generator().manual_seed(3))
    n2 = op2.norm_squared((1, 1, 32, 32), generator=torch.Generator().manual_seed(3))
    assert 0.9 < n2 < 1.0 and L2 == pytest.approx(n2 / 0.01, rel=1e-12)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(
    "op",
    [Identity(), Blur(gaussian_kernel(5, 1.0), boundary="replicate"),
     Inpainting(random_mask((12, 13), 0.3, generator=torch.Generator().manual_seed(0)))],
    ids=["identity", "blur", "inpainting"],
)
def test_finite_difference_ratio_never_exceeds_lipschitz(name, op, gen):
    noise = MODELS[name]
    y = _y(noise, gen)
    L = noise.lipschitz(op, SHAPE, y=y, generator=gen)
    assert math.isfinite(L) and L > 0
    worst = 0.0
    for scale in (1.0, 1e-2, 1e-4):
        x1 = _z_batch(gen, B=64)
        x2 = x1 + scale * torch.randn(x1.shape, generator=gen, dtype=torch.float64)
        g1, g2 = noise.grad(x1, y, op), noise.grad(x2, y, op)
        num = (g1 - g2).flatten(1).norm(dim=1)
        den = (x1 - x2).flatten(1).norm(dim=1)
        worst = max(worst, float((num / den).max()))
    assert worst <= L * (1 + 1e-6)
    assert worst > 1e-3 * L  # the constant is not absurdly loose


@pytest.mark.parametrize("name", ["poisson", "poisson_gaussian"])
def test_poisson_lipschitz_is_attained(name):
    """L_z = max (y+s)^+ / (gain t^2) is the curvature below the threshold: tight on identity."""
    noise = MODELS[name]
    y = torch.tensor([0.1, 0.6, 0.3], dtype=torch.float64).view(1, 1, 1, 3)
    Lz = noise.lipschitz_z(y)
    assert Lz == pytest.approx((0.6 + noise._shift()) / (noise.gain * noise.threshold**2))
    z1 = torch.full((1, 1, 1, 3), -1.0, dtype=torch.float64)
    z2 = z1.clone()
    z2[..., 1] = -0.5  # both below the threshold, at the largest y
    ratio = (noise.grad_z(y, z1) - noise.grad_z(y, z2)).norm() / (z1 - z2).norm()
    assert float(ratio) == pytest.approx(Lz, rel=1e-10)


def test_lipschitz_requires_y_for_poisson():
    with pytest.raises(ValueError, match="pass y=") as exc:
        PoissonNoise(0.1).lipschitz_z()
    one_line(exc)
    assert GaussianNoise(0.5).lipschitz_z() == pytest.approx(4.0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sample_is_seeded_and_broadcasts(name):
    noise = MODELS[name]
    z = torch.full((2, 3, 8, 8), 0.5)
    a = noise.sample(z, generator=torch.Generator().manual_seed(1))
    b = noise.sample(z, generator=torch.Generator().manual_seed(1))
    c = noise.sample(z, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.dtype == z.dtype and a.shape == z.shape
    with pytest.raises(ValueError, match="generator") as exc:
        noise.sample(z, generator=None)
    one_line(exc)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: GaussianNoise(0.0), "sigma"),
        (lambda: GaussianNoise(-0.1), "sigma"),
        (lambda: GaussianNoise(float("nan")), "sigma"),
        (lambda: PoissonNoise(0.0), "gain"),
        (lambda: PoissonGaussianNoise(0.1, -1.0), "sigma"),
        (lambda: PoissonNoise(0.1, threshold=0.0), "threshold"),
        (lambda: build_noise({"type": "gaussian", "sigma": 0}), "noise.sigma"),
        (lambda: build_noise({"type": "gaussian"}), "noise.sigma: missing"),
        (lambda: build_noise({"type": "gaussian", "sigma": 0.1, "gain": 1}), "unknown keys"),
        (lambda: build_noise({"type": "salt"}), r"use one of \['gaussian', 'poisson', 'poisson_gaussian'\]"),
    ],
)
def test_bad_noise_errors(make, match):
    with pytest.raises(ValueError, match=match) as exc:
        make()
    one_line(exc)


def test_build_noise_types():
    assert isinstance(build_noise({"type": "gaussian", "sigma": 0.01}), GaussianNoise)
    p = build_noise({"type": "poisson", "gain": 0.01, "threshold": 0.05})
    assert isinstance(p, PoissonNoise) and p.threshold == 0.05
    pg = build_noise({"type": "poisson_gaussian", "gain": 0.01, "sigma": 0.02})
    assert isinstance(pg, PoissonGaussianNoise) and pg.sigma == 0.02
