"""Samplers against exact answers, with MCSE tolerances (blackjax ``mcse_test`` style).

Exact targets (docs/algorithms.md §exact-checks, §skrock-variance):

* Gaussian prior N(m0, s² I), A = I, noise σ, exact Gaussian denoiser at variance ε: PnP-ULA
  targets the ε-smoothed posterior, precision ``h = 1/σ² + α/(s² + ε)``, mean
  ``(y/σ² + α m0/(s² + ε))/h``. ULA is the AR(1) ``X' = (1 − δh)X + δb + √(2δ)Z``: its stationary
  mean is exact and its variance is ``2δ/(1 − (1 − δh)²) = 2/(h(2 − δh))`` (O(δ) bias). SK-ROCK's
  stationary variance is computed from its recursion (``skrock.stationary_variance_quadratic``).
* 2-D Gaussian mixture with the exact GMM denoiser: the smoothed posterior is a Gaussian mixture
  with closed-form marginal CDFs.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from denoisers_zoo.exact import GaussianDenoiser, GMMDenoiser
from operators.identity import Identity
from operators.noise import GaussianNoise
from pnp_imaging import diagnostics
from pnp_imaging.priors import ScorePrior
from pnp_imaging.problem import Problem
from pnp_imaging.samplers import TraceConfig, dispersed_init, run_chain, skrock, ula
from pnp_imaging.samplers.base import kept_iterations
from pnp_imaging.stats import PosteriorStats

Z_MAX = 4.5  # max |z| over a few hundred independent pixels (two-sided p ~ 7e-6 each)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
class Gaussian:
    """Isotropic Gaussian prior, identity operator: everything in closed form."""

    def __init__(self, hw=16, s2=0.04, sigma=0.1, eps=0.01, alpha=1.0, seed=0, truth_from_prior=False):
        g = torch.Generator().manual_seed(seed)
        self.s2, self.sigma, self.eps, self.alpha, self.m0 = s2, sigma, eps, alpha, 0.5
        self.den = GaussianDenoiser.isotropic(self.m0, s2, (1, hw, hw))
        if truth_from_prior:  # the prior PnP-ULA actually uses: N(m0, s2 + eps)
            x_true = self.m0 + math.sqrt(s2 + eps) * torch.randn(1, 1, hw, hw, generator=g, dtype=torch.float64)
        else:
            x_true = torch.full((1, 1, hw, hw), self.m0, dtype=torch.float64)
        self.x_true = x_true
        y = x_true + sigma * torch.randn(x_true.shape, generator=g, dtype=torch.float64)
        self.problem = Problem(operator=Identity(), noise=GaussianNoise(sigma), y=y)
        self.prior = ScorePrior(self.den, eps, alpha)
        self.h = 1 / sigma**2 + alpha / (s2 + eps)
        self.mean = (y / sigma**2 + alpha * self.m0 / (s2 + eps)) / self.h
        self.post_var = 1 / self.h

    def ula_var(self, delta):
        return 2.0 / (self.h * (2.0 - delta * self.h))


def _collect():
    samples = []

    def on_sample(i, state):
        samples.append(state.x.detach().clone())

    return samples, on_sample


def _draws(samples):
    """list of [B, C, H, W] -> (chain, draw, pixel) numpy."""
    x = torch.stack(samples, dim=1)
    return x.reshape(x.shape[0], x.shape[1], -1).numpy()


def _check_gaussian_moments(draws, mean, var_expected, var_other=None, antithetic=False):
    """Per-pixel mean z-scores with ESS-based MCSE; pooled variance vs expected (pixels i.i.d.).

    The MCSE must not be underestimated (mean z² < 1.5); for positively correlated chains it
    must not be grossly overestimated either (> 0.6). Antithetic chains (SK-ROCK at some δh)
    can beat the ESS cap N·log10(N) of Geyer's estimator, so only the upper bound applies."""
    mu = draws.mean(axis=(0, 1))
    mcse = diagnostics.mcse_mean(draws)
    z = (mu - mean.reshape(-1).numpy()) / mcse
    assert np.max(np.abs(z)) < Z_MAX, np.max(np.abs(z))
    assert (antithetic or 0.6 < np.mean(z**2)) and np.mean(z**2) < 1.5, np.mean(z**2)
    v = draws.reshape(-1, draws.shape[-1]).var(axis=0, ddof=1)
    se = v.std(ddof=1) / math.sqrt(v.size)
    zv = (v.mean() - var_expected) / se
    assert abs(zv) < Z_MAX, (v.mean(), var_expected, zv)
    if var_other is not None:  # the bias is real and detected
        assert abs(v.mean() - var_other) / se > 10, (v.mean(), var_other, se)
    return v.mean()


# --------------------------------------------------------------------------------------------
# driver semantics
# --------------------------------------------------------------------------------------------
class CountingDenoiser(torch.nn.Module):
    name = "counting"
    lipschitz = 1.0

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []

    def forward(self, x, sigma):
        self.calls.append((x.shape[0], float(sigma)))
        return self.inner(x, sigma)


def test_counts_initial_state_not_kept_and_int_checks():
    gs = Gaussian(hw=4)
    p = ula.make_params(gs.problem, gs.prior)
    k = ula.kernel(gs.problem, gs.prior, p)
    g = torch.Generator().manual_seed(0)
    st0 = k.init(dispersed_init(gs.problem.back_projection(), 2, spread=0.1, generator=g))
    seen, on_sample = _collect()
    steps = []
    res = run_chain(k, st0, n_steps=10, n_burnin=3, thin=2, generator=g, on_sample=on_sample,
                    on_step=lambda i, s, info: steps.append((i, s.step)))
    assert list(kept_iterations(10, 3, 2)) == [5, 7, 9]
    assert res.n_kept == len(seen) == (10 - 3) // 2 == res.stats.count
    assert steps == [(i, i) for i in range(1, 11)]
    torch.testing.assert_close(res.stats.moments.mean, torch.stack(seen).double().mean(0), rtol=0, atol=1e-15)
    assert not any(torch.equal(s, st0.x) for s in seen)
    assert res.traces["proj0"].shape == (2, 10) and res.kept_traces()["proj0"].shape == (2, 3)
    assert res.status == "completed" and res.n_done == 10
    for bad in (dict(n_steps=10.0, n_burnin=0, thin=1), dict(n_steps=10, n_burnin=0, thin=0),
                dict(n_steps=10, n_burnin=11, thin=1), dict(n_steps=True, n_burnin=0, thin=1)):
        with pytest.raises(ValueError, match="n_steps|n_burnin|thin"):
            run_chain(k, st0, generator=g, **bad)
    with pytest.raises(ValueError, match="generator"):
        run_chain(k, st0, n_steps=2, n_burnin=0, thin=1, generator=0)


def test_one_batched_denoiser_call_per_gradient():
    gs = Gaussian(hw=4)
    den = CountingDenoiser(gs.den)
    prior = ScorePrior(den, gs.eps)
    g = torch.Generator().manual_seed(0)
    x0 = dispersed_init(gs.problem.back_projection(), 3, spread=0.1, generator=g)
    k = ula.kernel(gs.problem, prior, ula.make_params(gs.problem, prior))
    run_chain(k, k.init(x0), n_steps=7, n_burnin=0, thin=1, generator=g)
    assert den.calls == [(3, pytest.approx(0.1))] * 8  # init + one per step; sigma = sqrt(eps)
    den.calls.clear()
    k = skrock.kernel(gs.problem, prior, skrock.make_params(gs.problem, prior, n_stages=5))
    run_chain(k, k.init(x0), n_steps=4, n_burnin=0, thin=1, generator=g)
    assert den.calls == [(3, pytest.approx(0.1))] * 20  # s per step, none at init


def test_dispersed_init():
    x0 = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    a = dispersed_init(x0, 3, spread=0.2, generator=torch.Generator().manual_seed(2))
    b = dispersed_init(x0, 3, spread=0.2, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and torch.equal(a[0], x0[0]) and not torch.equal(a[1], a[2])
    assert torch.equal(dispersed_init(x0, 2, spread=0.0, generator=torch.Generator()), x0.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="n_chains"):
        dispersed_init(x0, 2.0, spread=0.1, generator=torch.Generator())


def test_score_prior_uses_variance_and_lipschitz():
    den = GaussianDenoiser.isotropic(0.0, 1.0, (1, 1, 1))
    prior = ScorePrior(den, eps=0.25, alpha=2.0)
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    # exact: alpha * grad log N(0, 1 + eps) = -alpha x / (1 + eps)
    assert prior.score(x).item() == pytest.approx(-2.0 / 1.25)
    assert prior.sigma == 0.5 and prior.lipschitz == pytest.approx(2.0 * 1.0 / 0.25)
    with pytest.raises(ValueError, match="eps"):
        ScorePrior(den, eps=0.0)
    with pytest.raises(ValueError, match="lipschitz"):
        ScorePrior(GMMDenoiser([1.0], [[0.0]], [1.0]), eps=0.1).lipschitz


def test_auto_step_rules_worked_values():
    """σ = 1/255, ε = (5/255)², α = 1, L = 1, A = I: L_y = 65025, αL/ε = 2601 (docs/algorithms.md §pnp-ula-step)."""
    y = torch.full((1, 1, 8, 8), 0.5)
    problem = Problem(operator=Identity(), noise=GaussianNoise(1 / 255), y=y)
    prior = ScorePrior(GaussianDenoiser.isotropic(0.5, 0.1, (1, 8, 8)), (5 / 255) ** 2, 1.0, lipschitz=1.0)
    assert problem.data_lipschitz == pytest.approx(65025.0, rel=1e-6)
    p = ula.make_params(problem, prior)
    assert p.lam == pytest.approx(0.99 / (2 * 2601 + 4 * 65025), rel=1e-6)
    assert p.lam == pytest.approx(3.7316e-6, rel=1e-4)
    assert p.step_size == pytest.approx(9.8329e-7, rel=1e-4)
    assert "§pnp-ula-step" in p.rule and p.clip == (-1.0, 2.0)
    pp = ula.make_params(problem, prior, projected=True)
    assert pp.step_size == pytest.approx(1.4639e-5, rel=1e-4) and pp.lam is None
    ps = skrock.make_params(problem, prior)
    assert ps.n_stages == 10 and ps.eta == 0.05
    assert skrock.stability_length(10, 0.05) == pytest.approx(172.98, abs=0.01)
    assert ps.lipschitz == pytest.approx(65025 + 2601 + 1 / p.lam, rel=1e-6)
    assert ps.step_size == pytest.approx(5.1028e-4, rel=1e-4)
    assert ula.make_params(problem, prior, step_size=1e-7).rule.startswith("tutorial rule")  # λ still auto
    assert ula.make_params(problem, prior, step_size=1e-7, lam=1e-6).rule == "manual"
    with pytest.raises(ValueError, match="step_size"):
        ula.make_params(problem, prior, step_size="big")
    with pytest.raises(ValueError, match="clip"):
        ula.make_params(problem, prior, clip=(2.0, 1.0))


# --------------------------------------------------------------------------------------------
# exact Gaussian targets
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("projected", [False, True])
def test_ula_gaussian_exact_stationary_law(projected):
    """δh = 0.5: the empirical law matches ULA's stationary law (mean exact, variance
    2/(h(2 − δh)) = 1.33/h) and is detectably biased w.r.t. the smoothed posterior (1/h). The
    box C = [−1, 2] is ~10 posterior std away, so the tail term/projection is inactive."""
    gs = Gaussian(hw=16)
    delta = 0.5 / gs.h
    params = ula.make_params(gs.problem, gs.prior, step_size=delta, projected=projected)
    k = ula.kernel(gs.problem, gs.prior, params)
    g = torch.Generator().manual_seed(1)
    x0 = dispersed_init(gs.mean, 4, spread=0.05, generator=g)
    samples, on_sample = _collect()
    res = run_chain(k, k.init(x0), n_steps=2100, n_burnin=100, thin=2, generator=g, on_sample=on_sample,
                    trace=TraceConfig(n_random=2, loglik=False, slow=False))
    draws = _draws(samples)
    _check_gaussian_moments(draws, gs.mean, gs.ula_var(delta), var_other=gs.post_var)
    torch.testing.assert_close(res.stats.mmse()[0].reshape(-1).numpy(), draws.mean(axis=(0, 1)), rtol=0, atol=1e-12)
    assert res.summary()["proj0"]["rhat"] < 1.01


def test_ula_auto_step_posterior_and_coverage():
    """Auto (tutorial-rule) step, truths drawn from the (smoothed) prior: per-pixel means within MCSE of the
    closed form, and the P² 90 % marginal intervals cover the truths at rate 0.87-0.93."""
    gs = Gaussian(hw=32, truth_from_prior=True, seed=3)
    params = ula.make_params(gs.problem, gs.prior)
    delta = params.step_size
    assert 0.03 < delta * gs.h < 0.1  # auto step is small: ULA bias on the variance < 5 %
    k = ula.kernel(gs.problem, gs.prior, params)
    g = torch.Generator().manual_seed(2)
    x0 = dispersed_init(gs.mean, 4, spread=0.05, generator=g)
    stats = PosteriorStats(x0.shape, probs=(0.05, 0.95), scales=(1,))
    res = run_chain(k, k.init(x0), n_steps=4200, n_burnin=200, thin=2, generator=g, stats=stats,
                    trace=TraceConfig(n_random=2, loglik=True, slow=False))
    lo, hi = res.stats.credible_interval()
    cover = ((gs.x_true >= lo) & (gs.x_true <= hi)).double().mean().item()
    assert 0.87 <= cover <= 0.93, cover
    err = (res.stats.mmse() - gs.mean).abs().max().item()
    assert err < 5 * math.sqrt(gs.post_var / 400), err  # ESS per pixel > 400
    var = res.stats.std().pow(2).mean().item()
    assert var == pytest.approx(gs.ula_var(delta), rel=0.03)
    s = res.summary()
    assert all(v["rhat"] < 1.05 and v["ess_bulk"] > 100 for v in s.values()), s


def _cg(apply, b, tol=1e-13, maxiter=2000):
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum()
    for _ in range(maxiter):
        ap = apply(p)
        a = rr / (p * ap).sum()
        x += a * p
        r -= a * ap
        rr_new = (r * r).sum()
        if rr_new.sqrt() < tol * b.norm():
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def test_ula_linear_gaussian_blur_model_per_fourier_mode():
    """Circular Gaussian blur + stationary Gaussian prior (both diagonal in Fourier): the exact
    posterior mean (CG on drift(x) = 0) and, per Fourier mode k with blur response a_k and prior
    spectrum P_k, ULA's stationary variance 2/(h_k(2 − δh_k)), h_k = |a_k|²/σ² + α/(P_k + ε).
    Auto (tutorial-rule) step; the O(δ) bias vs the posterior (1/h_k) is detected on the stiff modes."""
    from operators.blur import Blur
    from operators.kernels import gaussian_kernel

    hw, sigma, eps = 16, 0.05, 0.01
    f = torch.fft.fftfreq(hw, dtype=torch.float64)
    w2 = f[:, None] ** 2 + f[None, :] ** 2
    spec = 0.05 / (1.0 + 200.0 * w2)  # even-symmetric power spectrum, pixel variance ~ 0.01
    den = GaussianDenoiser.stationary(0.5, spec, (1, hw, hw))
    op = Blur(gaussian_kernel(5, 1.0), boundary="circular", image_shape=(1, hw, hw))
    g = torch.Generator().manual_seed(7)
    x_true = den.sample(1, generator=g).clamp(0, 1)
    problem = Problem.simulate(x_true, op, GaussianNoise(sigma), generator=g)
    prior = ScorePrior(den, eps)
    params = ula.make_params(problem, prior, clip=None)
    k = ula.kernel(problem, prior, params)
    b0 = ula.drift(torch.zeros_like(x_true), problem, prior, params)
    mean = _cg(lambda v: b0 - ula.drift(v, problem, prior, params), b0)
    assert ula.drift(mean, problem, prior, params).abs().max() < 1e-8
    impulse = torch.zeros(1, 1, hw, hw, dtype=torch.float64)
    impulse[..., 0, 0] = 1.0
    a2 = torch.fft.fft2(op.A(impulse))[0, 0].abs() ** 2
    h = a2 / sigma**2 + 1.0 / (spec + eps)
    delta = params.step_size
    v_ula = 2.0 / (h * (2.0 - delta * h))
    v_post = 1.0 / h
    x0 = dispersed_init(mean, 4, spread=0.02, generator=g)
    samples, on_sample = _collect()
    run_chain(k, k.init(x0), n_steps=4100, n_burnin=100, thin=4, generator=g, on_sample=on_sample,
              trace=TraceConfig(n_random=1, loglik=True, slow=False))
    draws = _draws(samples)  # (4, 1000, 256)
    z = (draws.mean(axis=(0, 1)) - mean.reshape(-1).numpy()) / diagnostics.mcse_mean(draws)
    assert np.max(np.abs(z)) < Z_MAX
    xs = torch.from_numpy(draws).reshape(-1, hw, hw) - mean.reshape(hw, hw)
    power = (torch.fft.fft2(xs).abs() ** 2).mean(0) / hw**2  # E|X_k|^2 / N = variance of mode k
    half = torch.zeros(hw, hw, dtype=torch.bool)  # one of each conjugate pair
    half[:, : hw // 2 + 1] = True
    half[hw // 2 + 1 :, 0] = False
    half[hw // 2 + 1 :, hw // 2] = False
    ratio = (power / v_ula)[half]
    se = ratio.std() / math.sqrt(ratio.numel())
    assert abs(ratio.mean() - 1) < Z_MAX * se, (ratio.mean(), se)
    stiff = half & (delta * h > 0.5 * float(delta * h.max()))
    r_post = (power / v_post)[stiff]
    expected_post = (v_ula / v_post)[stiff].mean()
    assert expected_post > 1.05  # predicted bias on the stiff modes
    assert abs(r_post.mean() - expected_post) < Z_MAX * r_post.std() / math.sqrt(r_post.numel())
    assert (r_post.mean() - 1) / (r_post.std() / math.sqrt(r_post.numel())) > 5


@pytest.mark.parametrize("z", [2.0, 60.0])
def test_skrock_gaussian_exact_stationary_variance(z):
    """SK-ROCK (s = 10, η = 0.05) at δh = z: mean exact, variance = the recursion's stationary
    variance (0.93/h at z = 2, 0.59/h at z = 60: biased low w.r.t. the posterior 1/h)."""
    gs = Gaussian(hw=16, seed=4)
    params = skrock.make_params(gs.problem, gs.prior, step_size=z / gs.h)
    k = skrock.kernel(gs.problem, gs.prior, params)
    g = torch.Generator().manual_seed(5)
    x0 = dispersed_init(gs.mean, 4, spread=0.05, generator=g)
    samples, on_sample = _collect()
    run_chain(k, k.init(x0), n_steps=700, n_burnin=50, thin=1, generator=g, on_sample=on_sample,
              trace=TraceConfig(n_random=1, loglik=False, slow=False))
    v_exact = skrock.stationary_variance_quadratic(gs.h, z / gs.h)
    _check_gaussian_moments(_draws(samples), gs.mean, v_exact, var_other=gs.post_var if z > 10 else None,
                            antithetic=True)


def test_skrock_stationary_variance_formula():
    """Small δh: variance → 1/h (first-order accurate); the recursion's variance is not
    monotone in δh and (a property of the scheme, not of this code) vanishes where the
    stage-noise polynomial has its zeros, e.g. δh ≈ 4.79 for s = 10."""
    f = skrock.stationary_variance_quadratic
    assert f(1.0, 1e-3) == pytest.approx(1.0, rel=1e-3)
    assert f(1.0, 0.1) == pytest.approx(1.0, abs=0.01)
    assert f(1.0, 4.785) < 1e-3
    assert math.isinf(f(1.0, 200.0))  # beyond the stability length 172.98


def test_skrock_soft_tail_stable_at_the_face():
    """Data-stiff pixels (σ = 1/255) whose posterior sits on the face of C = [0, 1], auto step:
    with the tail inside the stages the recursion oscillated out to |x| ≈ 3 (variance ×4e5 in
    1-D; ``docs/algorithms.md §skrock-step``); with the tail as a proximal step after the stages
    the chains stay within a few posterior std of the face and their spread near the posterior's."""
    hw, sigma, s2, eps = 8, 1 / 255, 0.01, (5 / 255) ** 2
    g = torch.Generator().manual_seed(0)
    y = sigma * torch.randn(1, 1, hw, hw, generator=g, dtype=torch.float64)  # truth 0: on the face
    problem = Problem(operator=Identity(), noise=GaussianNoise(sigma), y=y)
    prior = ScorePrior(GaussianDenoiser.isotropic(0.0, s2, (1, hw, hw)), eps, 1.0)
    params = skrock.make_params(problem, prior, clip=(0.0, 1.0))
    k = skrock.kernel(problem, prior, params)
    samples, on_sample = _collect()
    run_chain(k, k.init(dispersed_init(y.clamp(0, 1), 4, spread=0.001, generator=g)), n_steps=400, n_burnin=100,
              thin=1, generator=g, on_sample=on_sample, trace=TraceConfig(n_random=1, loglik=False, slow=False))
    draws = _draws(samples)
    post_sd = (1 / sigma**2 + 1 / (s2 + eps)) ** -0.5  # without the tail, which only narrows it
    assert np.abs(draws).max() < 10 * post_sd
    assert 0.1 < draws.std(axis=(0, 1)).mean() / post_sd < 1.5


def test_float32_chain_keeps_dtype():
    gs = Gaussian(hw=8)
    y32 = gs.problem.y.float()
    problem = Problem(operator=Identity(), noise=GaussianNoise(gs.sigma), y=y32)
    k = ula.kernel(problem, gs.prior, ula.make_params(problem, gs.prior))
    g = torch.Generator().manual_seed(0)
    res = run_chain(k, k.init(dispersed_init(y32, 2, spread=0.1, generator=g)), n_steps=50, n_burnin=10,
                    thin=1, generator=g)
    assert res.state.x.dtype == torch.float32 and res.stats.mmse().dtype == torch.float64
    assert torch.isfinite(res.state.x).all()


def test_projected_variant_stays_in_box():
    gs = Gaussian(hw=8, s2=1.0, sigma=0.5)  # wide posterior around 0.5: projection active
    params = ula.make_params(gs.problem, gs.prior, projected=True, clip=(0.0, 1.0))
    k = ula.kernel(gs.problem, gs.prior, params)
    g = torch.Generator().manual_seed(0)
    seen, on_sample = _collect()
    run_chain(k, k.init(dispersed_init(gs.problem.y, 2, spread=0.5, generator=g)), n_steps=200,
              n_burnin=0, thin=1, generator=g, on_sample=on_sample)
    allx = torch.stack(seen)
    assert allx.min() >= 0.0 and allx.max() <= 1.0
    assert ((allx == 0) | (allx == 1)).double().mean() > 0.01


def test_slow_direction_estimate_finds_the_max_variance_pixel():
    """Anisotropic Gaussian: one pixel with 50x the prior variance is the slowest mode."""
    var = torch.full((16,), 0.01, dtype=torch.float64)
    var[5] = 0.5
    den = GaussianDenoiser(torch.full((16,), 0.5, dtype=torch.float64), var, shape=(1, 4, 4))
    y = torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64)
    problem = Problem(operator=Identity(), noise=GaussianNoise(1.0), y=y)
    prior = ScorePrior(den, 1e-3)
    k = ula.kernel(problem, prior, ula.make_params(problem, prior, step_size=2e-3, clip=None))
    g = torch.Generator().manual_seed(0)
    res = run_chain(k, k.init(dispersed_init(y, 4, spread=0.1, generator=g)), n_steps=1000, n_burnin=600,
                    thin=1, generator=g)
    v = res.slow_direction.reshape(-1)
    assert abs(v[5].item()) > 0.9, v
    tr = res.traces["slow"]
    assert np.isnan(tr[:, :599]).all() and np.isfinite(tr[:, 599:]).all()
    assert "slow" in res.summary()


# --------------------------------------------------------------------------------------------
# Gaussian mixture in 2-D
# --------------------------------------------------------------------------------------------
def _gmm_problem(weights, means, covs, y, sigma, eps):
    w = torch.tensor(weights, dtype=torch.float64)
    mu = torch.tensor(means, dtype=torch.float64)
    cv = torch.tensor(covs, dtype=torch.float64)
    den = GMMDenoiser(w, mu, cv, shape=(2, 1, 1))
    yt = torch.tensor(y, dtype=torch.float64).reshape(1, 2, 1, 1)
    problem = Problem(operator=Identity(), noise=GaussianNoise(sigma), y=yt)
    # exact smoothed posterior: a Gaussian mixture
    post = []
    logw = []
    for k in range(len(weights)):
        s = cv[k] + eps * torch.eye(2, dtype=torch.float64)
        c = torch.linalg.inv(torch.linalg.inv(s) + torch.eye(2, dtype=torch.float64) / sigma**2)
        m = c @ (torch.linalg.solve(s, mu[k]) + yt.reshape(2) / sigma**2)
        marg = torch.distributions.MultivariateNormal(mu[k], s + sigma**2 * torch.eye(2, dtype=torch.float64))
        logw.append(math.log(weights[k]) + marg.log_prob(yt.reshape(2)).item())
        post.append((m.numpy(), c.numpy()))
    lw = np.array(logw)
    pw = np.exp(lw - lw.max())
    pw /= pw.sum()
    return problem, den, post, pw


def _mixture_cdf(t, post, pw, i):
    from scipy.stats import norm

    return sum(p * norm.cdf(t, m[i], math.sqrt(c[i, i])) for (m, c), p in zip(post, pw))


def _check_marginals_ks(draws, post, pw, slack=0.01):
    """Each marginal of ``draws`` (chain, draw, 2) vs the exact mixture CDF: the KS distance below
    the 1 % Kolmogorov critical value at the bulk ESS, 1.63/√ESS, plus ``slack`` for the
    discretisation bias."""
    for i in range(draws.shape[-1]):
        xi = np.sort(draws[:, :, i].ravel())
        n = xi.size
        cdf = _mixture_cdf(xi, post, pw, i)
        ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
        ess = diagnostics.ess(draws[:, :, i], method="bulk")
        assert ks < 1.63 / math.sqrt(ess) + slack, (i, ks, ess)


def test_gmm_2d_marginals_match_exact_smoothed_posterior():
    """1000 chains from dispersed starts, 300 burn-in steps, then 60 draws each (thin 10): KS
    distance of each marginal to the exact smoothed-posterior CDF below the 1 % Kolmogorov
    critical value at the bulk ESS, plus 0.01 for the O(δ) ULA bias (δ h_max ≈ 0.13)."""
    eps, sigma = 0.05, 1.0
    problem, den, post, pw = _gmm_problem([0.5, 0.5], [[-0.7, -0.7], [0.7, 0.9]], [[[0.3, 0.1], [0.1, 0.2]],
                                          [[0.2, -0.05], [-0.05, 0.4]]], [0.2, -0.1], sigma, eps)
    assert 0.3 < pw[0] < 0.7  # two comparable modes
    prior = ScorePrior(den, eps)
    k = ula.kernel(problem, prior, ula.make_params(problem, prior, step_size=0.02, clip=None))
    g = torch.Generator().manual_seed(0)
    x0 = dispersed_init(problem.y, 1000, spread=1.5, generator=g)
    samples, on_sample = _collect()
    run_chain(k, k.init(x0), n_steps=900, n_burnin=300, thin=10, generator=g, on_sample=on_sample,
              trace=TraceConfig(n_random=2, loglik=False, slow=False))
    draws = _draws(samples)  # (1000, 60, 2)
    _check_marginals_ks(draws, post, pw)
    for i in range(2):
        exact_mean = sum(p * m[i] for (m, c), p in zip(post, pw))
        assert abs(draws[:, :, i].mean() - exact_mean) < Z_MAX * diagnostics.mcse_mean(draws[:, :, i]) + 0.01


def test_rhat_flags_chains_stuck_in_different_modes():
    eps = 0.01
    problem, den, post, pw = _gmm_problem([0.5, 0.5], [[-4.0, -4.0], [4.0, 4.0]], [[[0.05, 0], [0, 0.05]]] * 2,
                                          [0.0, 0.0], 2.0, eps)
    assert pw[0] == pytest.approx(0.5)
    prior = ScorePrior(den, eps)
    k = ula.kernel(problem, prior, ula.make_params(problem, prior, step_size=0.01, clip=None))
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([-4.0, -4.0, 4.0, 4.0, -4.0, -4.0, 4.0, 4.0], dtype=torch.float64).reshape(4, 2, 1, 1)
    res = run_chain(k, k.init(x0), n_steps=600, n_burnin=100, thin=1, generator=g)
    s = res.summary()
    assert max(v["rhat"] for v in s.values()) > 1.5
    assert any("R-hat" in m for m in res.verdicts())
