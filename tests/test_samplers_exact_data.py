"""Likelihood-exact samplers (``pnp-ula-exp``, ``pnp-lm-exp``) against closed forms
(docs/algorithms.md §likelihood-exact).

Gaussian priors make every target Gaussian and, for circular blur / inpainting / denoising, the
data and prior Hessians share a basis (Fourier modes / pixels), so each mode is a scalar AR
process with data curvature h and prior curvature h_p:

* exponential Euler: mean exact, variance ``euler_stationary_variance(h, h_p, δ)``
  (= ``2δφ₁(2δh)/(1 − a²)``, ``a = e^{−δh} − δφ₁(δh)h_p``), > 1/(h + h_p) when h_p > 0;
* exponential Leimkuhler–Matthews: mean and variance exact, ``1/(h + h_p)``, at any stable δ.

Tolerances are z-scores against Monte Carlo errors (ESS-based for means, the spread over
modes/pixels for pooled variance ratios); ``Z_MAX`` as in test_samplers.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_samplers import (Z_MAX, Gaussian, _check_gaussian_moments, _check_marginals_ks, _collect, _draws,
                           _gmm_problem)

from denoisers_zoo.exact import GaussianDenoiser
from operators.blur import Blur
from operators.inpainting import Inpainting, random_mask
from operators.kernels import gaussian_kernel
from operators.noise import GaussianNoise, PoissonNoise
from pnp_imaging import diagnostics, sample
from pnp_imaging.config import AUTO_SAMPLERS
from pnp_imaging.priors import ScorePrior
from pnp_imaging.problem import Problem
from pnp_imaging.samplers import TraceConfig, build_kernel, dispersed_init, run_chain
from pnp_imaging.samplers import exponential as ex


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _kernel(scheme, problem, prior, fraction=None):
    """The registered family of ``scheme`` without a box (the Gaussian targets need none)."""
    return build_kernel(ex.SCHEMES[scheme], problem, prior, box=None, projected=False, step_fraction=fraction)


def _run(k, x0, n_steps, g, n_burnin=100, thin=1):
    samples, on_sample = _collect()
    run_chain(k, k.init(x0), n_steps=n_steps, n_burnin=n_burnin, thin=thin, generator=g, on_sample=on_sample,
              trace=TraceConfig(n_random=1, loglik=False, slow=False))
    return _draws(samples)


def test_phi1_and_spectra_match_dense_operators():
    z = torch.tensor([0.0, 1e-10, 1e-3, 1.0, 50.0], dtype=torch.float64)
    expected = torch.tensor([1.0, 1.0 - 5e-11, (1 - math.exp(-1e-3)) / 1e-3, 1 - math.exp(-1.0), 1 / 50.0], dtype=torch.float64)
    torch.testing.assert_close(ex.phi1(z), expected, rtol=1e-12, atol=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 12, 10, generator=g, dtype=torch.float64)
    ops = [Blur(gaussian_kernel(5, 1.3), boundary="circular", image_shape=(1, 12, 10)),
           Inpainting(random_mask((1, 12, 10), 0.5, generator=g))]
    for op in ops:
        spec = op.gram_spectrum(x.shape)
        torch.testing.assert_close(spec.apply(x, spec.eigenvalues), op.AtA(x), rtol=0, atol=1e-12)
        torch.testing.assert_close(spec.apply(x, torch.ones_like(spec.eigenvalues)), x, rtol=0, atol=1e-12)


def test_refuses_operators_without_a_diagonalisation():
    gs = Gaussian(hw=8)
    reflect = Problem(operator=Blur(gaussian_kernel(3, 1.0), boundary="reflect"), noise=GaussianNoise(0.1), y=gs.problem.y)
    poisson = Problem(operator=gs.problem.operator, noise=PoissonNoise(50.0), y=gs.problem.y.clamp(0, 1))
    for problem in (reflect, poisson):
        with pytest.raises(ValueError, match="no exact diagonalisation.*skrock") as exc:
            build_kernel("pnp-lm-exp", problem, gs.prior)
        assert "\n" not in str(exc.value)


SCHEMES = ["euler", "lm", "kinetic"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_denoising_stationary_law(scheme):
    """Identity operator, δ = 0.9/(prior bound): Euler has the predicted variance (biased above
    the posterior's, detected), LM and kinetic (BAOAB) the exact one."""
    gs = Gaussian(hw=16, seed=4)
    k = _kernel(scheme, gs.problem, gs.prior, 0.9)
    params = k.params
    g = torch.Generator().manual_seed(5)
    draws = _run(k, dispersed_init(gs.mean, 4, spread=0.05, generator=g), 2100, g)
    hp, h = 1 / (gs.s2 + gs.eps), 1 / gs.sigma**2
    if scheme == "euler":
        v = float(ex.euler_stationary_variance(h, hp, params.step_size))
        _check_gaussian_moments(draws, gs.mean, v, var_other=gs.post_var)
    else:
        _check_gaussian_moments(draws, gs.mean, gs.post_var, antithetic=scheme == "kinetic")


def _stationary_blur_problem(hw=16, sigma=0.02, eps=0.01, seed=7):
    f = torch.fft.fftfreq(hw, dtype=torch.float64)
    w2 = f[:, None] ** 2 + f[None, :] ** 2
    spec = 0.05 / (1.0 + 200.0 * w2)
    den = GaussianDenoiser.stationary(0.5, spec, (1, hw, hw))
    op = Blur(gaussian_kernel(5, 1.0), boundary="circular", image_shape=(1, hw, hw))
    g = torch.Generator().manual_seed(seed)
    x_true = den.smoothed(eps).sample(1, generator=g)
    problem = Problem.simulate(x_true.clamp(0, 1), op, GaussianNoise(sigma), generator=g)
    impulse = torch.zeros(1, 1, hw, hw, dtype=torch.float64)
    impulse[..., 0, 0] = 1.0
    a2 = torch.fft.fft2(op.A(impulse))[0, 0].abs() ** 2
    return problem, ScorePrior(den, eps), a2 / sigma**2, 1.0 / (spec + eps), x_true


def _half_plane(hw):
    half = torch.zeros(hw, hw, dtype=torch.bool)  # one of each conjugate pair
    half[:, : hw // 2 + 1] = True
    half[hw // 2 + 1 :, 0] = False
    half[hw // 2 + 1 :, hw // 2] = False
    return half


@pytest.mark.parametrize("scheme", SCHEMES)
def test_blur_per_fourier_mode(scheme):
    """Circular blur + stationary Gaussian prior at the auto step: per Fourier mode the empirical
    variance matches the scheme's closed form; the exact posterior mean (per mode: the data and
    prior terms' weighted average) is matched within MCSE. For Euler the O(δ) inflation on the
    prior-dominated modes is predicted and detected; for LM it is absent."""
    problem, prior, h, hp, _ = _stationary_blur_problem()
    hw = h.shape[-1]
    k = _kernel(scheme, problem, prior)
    params = k.params
    yk = torch.fft.fft2(problem.operator.A_adjoint(problem.y))[0, 0] / problem.noise.sigma**2
    mean = torch.fft.ifft2((yk + hp * torch.fft.fft2(torch.full((hw, hw), 0.5, dtype=torch.float64))) / (h + hp)).real
    g = torch.Generator().manual_seed(3)
    draws = _run(k, dispersed_init(mean[None, None], 4, spread=0.02, generator=g), 4100, g, thin=2)
    z = (draws.mean(axis=(0, 1)) - mean.reshape(-1).numpy()) / diagnostics.mcse_mean(draws)
    assert np.max(np.abs(z)) < Z_MAX
    xs = torch.from_numpy(draws).reshape(-1, hw, hw) - mean
    power = (torch.fft.fft2(xs).abs() ** 2).mean(0) / hw**2
    predicted = ex.euler_stationary_variance(h, hp, params.step_size) if scheme == "euler" else 1.0 / (h + hp)
    half = _half_plane(hw)
    ratio = (power / predicted)[half]
    assert abs(ratio.mean() - 1) < Z_MAX * ratio.std() / math.sqrt(ratio.numel()), ratio.mean()
    prior_dominated = half & (hp > 5 * h)
    r_post = (power * (h + hp))[prior_dominated]
    se = r_post.std() / math.sqrt(r_post.numel())
    if scheme == "euler":
        assert (r_post.mean() - 1) / se > 5  # the predicted inflation is real
    else:
        assert abs(r_post.mean() - 1) < Z_MAX * se


@pytest.mark.parametrize("scheme", SCHEMES)
def test_inpainting_per_pixel(scheme):
    """50 % random inpainting, isotropic prior: missing pixels (h = 0) and observed ones
    (h = 1/σ²) each have the scheme's closed-form variance and the exact mean."""
    gs = Gaussian(hw=16, seed=2)
    g = torch.Generator().manual_seed(8)
    mask = random_mask((1, 16, 16), 0.5, generator=g)
    problem = Problem(operator=Inpainting(mask), noise=GaussianNoise(gs.sigma), y=gs.problem.y * mask)
    k = _kernel(scheme, problem, gs.prior, 0.9)
    params = k.params
    hp, m = 1 / (gs.s2 + gs.eps), mask.to(torch.float64).reshape(-1)
    h = m / gs.sigma**2
    mean = (problem.y.reshape(-1) / gs.sigma**2 * m + hp * gs.m0) / (h + hp)
    draws = _run(k, dispersed_init(mean.reshape(1, 1, 16, 16), 4, spread=0.05, generator=g), 3100, g)
    z = (draws.mean(axis=(0, 1)) - mean.numpy()) / diagnostics.mcse_mean(draws)
    assert np.max(np.abs(z)) < Z_MAX
    v = torch.from_numpy(draws.reshape(-1, 256).var(axis=0, ddof=1))
    predicted = ex.euler_stationary_variance(h, hp, params.step_size) if scheme == "euler" else 1.0 / (h + hp)
    for observed in (True, False):
        r = (v / predicted)[(m > 0) == observed]
        assert abs(r.mean() - 1) < Z_MAX * r.std() / math.sqrt(r.numel()), (observed, r.mean())


@pytest.mark.parametrize("scheme", ["lm", "kinetic"])
def test_gmm_2d_marginals(scheme):
    """Two-mode 2-D Gaussian mixture prior (exact GMM denoiser), δ = 0.1 (5× the PnP-ULA test's
    step): KS distance of each marginal to the exact smoothed posterior within the 1 %
    Kolmogorov critical value at the bulk ESS, plus 0.01 for the O(δ²) bias."""
    eps, sigma = 0.05, 1.0
    problem, den, post, pw = _gmm_problem([0.5, 0.5], [[-0.7, -0.7], [0.7, 0.9]], [[[0.3, 0.1], [0.1, 0.2]],
                                          [[0.2, -0.05], [-0.05, 0.4]]], [0.2, -0.1], sigma, eps)
    prior = ScorePrior(den, eps, lipschitz=1.0)
    k = build_kernel(ex.SCHEMES[scheme], problem, prior, step_size=0.1, box=None, projected=False)
    g = torch.Generator().manual_seed(0)
    draws = _run(k, dispersed_init(problem.y, 1000, spread=1.5, generator=g), 500, g, n_burnin=200, thin=5)
    _check_marginals_ks(draws, post, pw)


def _coverage_problem(kind, g):
    """Isotropic Gaussian prior N(0.5, s²) on 32², truth from the ε-smoothed prior."""
    s2, eps, hw = 0.04, 0.01, 32
    den = GaussianDenoiser.isotropic(0.5, s2, (1, hw, hw))
    x_true = 0.5 + math.sqrt(s2 + eps) * torch.randn(1, 1, hw, hw, generator=g, dtype=torch.float64)
    if kind == "denoising":
        from operators.identity import Identity

        op, sigma = Identity(), 0.02
    elif kind == "inpainting":
        op, sigma = Inpainting(random_mask((1, hw, hw), 0.5, generator=g)), 0.02
    else:
        op, sigma = Blur(gaussian_kernel(7, 1.5), boundary="circular", image_shape=(1, hw, hw)), 0.01
    y = op.A(x_true) + sigma * torch.randn(x_true.shape, generator=g, dtype=torch.float64)
    return Problem(operator=op, noise=GaussianNoise(sigma), y=y, x_true=x_true.clamp(0, 1)), ScorePrior(den, eps), x_true


@pytest.mark.parametrize("kind", ["denoising", "inpainting", "blur"])
@pytest.mark.parametrize("sampler", [AUTO_SAMPLERS["exact"], "pnp-lm-exp"])
def test_credible_intervals_are_calibrated(kind, sampler):
    """The default sampler (what ``sampler.type: auto`` picks here) and LM at their auto steps
    through the public API: the 90 % intervals cover the truths (drawn from the prior the
    sampler targets) at a rate in [0.87, 0.93] (binomial sd 0.009 over 1024 pixels)."""
    g = torch.Generator().manual_seed(11)
    problem, prior, x_true = _coverage_problem(kind, g)
    post = sample(problem, prior, sampler, generator=g, n_steps=3000, n_burnin=200, chains=4,
                  x0=problem.initial_guess(), box=None, projected=False)
    cover = ((x_true >= post.lower) & (x_true <= post.upper)).double().mean().item()
    assert 0.87 <= cover <= 0.93, cover


@pytest.mark.parametrize("name", ["pnp-lm-exp", "pnp-kinetic-exp"])
def test_rebind_rebuilds_the_data_flow_for_another_operator(name):
    """A mismatched operator (the mismatch analysis' second chain) keeps δ and gets its own flow."""
    gs = Gaussian(hw=16)

    def blur_problem(std):
        op = Blur(gaussian_kernel(7, std), boundary="circular", image_shape=(1, 16, 16))
        return Problem(operator=op, noise=GaussianNoise(0.05), y=gs.problem.y)

    k1 = build_kernel(name, blur_problem(1.0), gs.prior)
    problem2 = blur_problem(2.0)
    k2 = k1.rebind(problem2, gs.prior)
    fresh = build_kernel(name, problem2, gs.prior, step_size=k1.params.step_size)
    assert k2.params.step_size == k1.params.step_size and k2.problem is problem2
    torch.testing.assert_close(k2.params.flow.drift_gain, fresh.params.flow.drift_gain)
    assert not torch.allclose(k2.params.flow.drift_gain, k1.params.flow.drift_gain)
