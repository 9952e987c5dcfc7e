"""Long statistical checks of the samplers (``make test-slow``; a few minutes on 2 cores).

Same exact targets as ``tests/test_samplers.py`` with more draws (tighter MCSE), the SK-ROCK
variance across its stability interval, the 2-D "cross" mixture of the reference (§4.3) with
α = 1, and the per-iteration overhead of the driver relative to one denoiser call.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from pnp_imaging import diagnostics
from pnp_imaging.priors import ScorePrior
from pnp_imaging.samplers import TraceConfig, dispersed_init, run_chain, skrock, ula
from pnp_imaging.stats import PosteriorStats

from test_samplers import Gaussian, _check_gaussian_moments, _check_marginals_ks, _collect, _draws, _gmm_problem

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]  # tests/conftest.py


def test_ula_gaussian_long_run_coverage_and_moments():
    """32x32 pixels, 4 chains x 40k steps at the auto step: moments vs ULA's stationary law,
    90 % coverage of truths drawn from the smoothed prior within [0.88, 0.92]."""
    gs = Gaussian(hw=32, truth_from_prior=True, seed=21)
    params = ula.make_params(gs.problem, gs.prior)
    k = ula.kernel(gs.problem, gs.prior, params)
    g = torch.Generator().manual_seed(22)
    x0 = dispersed_init(gs.problem.back_projection().double(), 4, spread=0.2, generator=g)
    samples, on_sample = _collect()
    stats = PosteriorStats(x0.shape, probs=(0.05, 0.95), scales=(1, 2, 4, 8))
    res = run_chain(k, k.init(x0), n_steps=41000, n_burnin=1000, thin=20, generator=g, stats=stats,
                    on_sample=on_sample)
    _check_gaussian_moments(_draws(samples), gs.mean, gs.ula_var(params.step_size))
    lo, hi = res.stats.credible_interval()
    cover = ((gs.x_true >= lo) & (gs.x_true <= hi)).double().mean().item()
    assert 0.88 <= cover <= 0.92, cover
    ms = res.stats.multiscale_std()  # independent pixels: std of k x k block means ~ std/k
    for kk in (2, 4, 8):
        assert ms[kk].mean().item() * kk == pytest.approx(ms[1].mean().item(), rel=0.05)
    assert not res.verdicts(), res.verdicts()


@pytest.mark.parametrize("z", [0.5, 4.0, 20.0, 100.0, 170.0])
def test_skrock_variance_across_stability_interval(z):
    gs = Gaussian(hw=16, seed=23)
    params = skrock.make_params(gs.problem, gs.prior, step_size=z / gs.h)
    k = skrock.kernel(gs.problem, gs.prior, params)
    g = torch.Generator().manual_seed(24)
    samples, on_sample = _collect()
    run_chain(k, k.init(dispersed_init(gs.mean, 4, spread=0.05, generator=g)), n_steps=3000, n_burnin=100,
              thin=1, generator=g, on_sample=on_sample, trace=TraceConfig(n_random=1, loglik=False, slow=False))
    _check_gaussian_moments(_draws(samples), gs.mean, skrock.stationary_variance_quadratic(gs.h, z / gs.h),
                            antithetic=True)


def test_gmm_cross_mixture_reference_4_3():
    """Reference §4.3 "cross" mixture (means 0, Σ1 = [[2, .5], [.5, .15]], Σ2 = its transpose
    swap), y = (0, 8), A = I, noise variance 1, ε = 0.05, α = 1 (exact posterior exists)."""
    eps = 0.05
    problem, den, post, pw = _gmm_problem([0.5, 0.5], [[0.0, 0.0], [0.0, 0.0]],
                                          [[[2.0, 0.5], [0.5, 0.15]], [[0.15, 0.5], [0.5, 2.0]]],
                                          [0.0, 8.0], 1.0, eps)
    prior = ScorePrior(den, eps)
    k = ula.kernel(problem, prior, ula.make_params(problem, prior, step_size=0.005, clip=None))
    g = torch.Generator().manual_seed(25)
    samples, on_sample = _collect()
    run_chain(k, k.init(dispersed_init(torch.zeros(1, 2, 1, 1, dtype=torch.float64), 1000, spread=1.0,
                                       generator=g)), n_steps=3000, n_burnin=1000, thin=20, generator=g,
              on_sample=on_sample, trace=TraceConfig(n_random=2, loglik=False, slow=False))
    draws = _draws(samples)
    _check_marginals_ks(draws, post, pw)


class SmallCNN(torch.nn.Module):
    """A residual CNN (random weights, scaled so the residual is small), cost ~ a tiny DnCNN."""

    name = "small_cnn"
    lipschitz = 1.0

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        layers = []
        ch = [1, 32, 32, 32, 32, 1]
        for a, b in zip(ch[:-1], ch[1:]):
            conv = torch.nn.Conv2d(a, b, 3, padding=1, bias=False)
            with torch.no_grad():
                conv.weight.copy_(0.05 * torch.randn(conv.weight.shape, generator=g))
            layers += [conv, torch.nn.ReLU()]
        self.net = torch.nn.Sequential(*layers[:-1])

    def forward(self, x, sigma):
        return x - self.net(x)


def test_driver_overhead_is_small_relative_to_one_denoiser_call():
    """Per-iteration time of run_chain (ULA, default stats and traces, 1 chain, 128x128) is
    at most 1.3x one denoiser forward + 5 ms (the rest: data gradient, noise, traces, guard)."""
    from operators.identity import Identity
    from operators.noise import GaussianNoise
    from pnp_imaging.problem import Problem

    den = SmallCNN().eval()
    y = torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    problem = Problem(operator=Identity(), noise=GaussianNoise(0.05), y=y)
    prior = ScorePrior(den, 0.02**2)
    k = ula.kernel(problem, prior, ula.make_params(problem, prior))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(3):
            den(y, 0.02)
        ts = []
        for _ in range(20):
            t0 = time.perf_counter()
            den(y, 0.02)
            ts.append(time.perf_counter() - t0)
    t_den = float(np.median(ts))
    res = run_chain(k, k.init(y.clone()), n_steps=60, n_burnin=20, thin=1, generator=g)
    assert res.timings["s_per_step"] < 1.3 * t_den + 5e-3, (res.timings, t_den)
