"""Diffusion samplers against exact answers: a 2-D Gaussian-mixture prior whose noise-conditional
denoiser is closed form at every σ (``denoisers_zoo.exact.GMMDenoiser``), a linear observation,
and the exact (Gaussian-mixture) posterior.

The problem is the reference test of ``docs/algorithms.md §diffusion`` written on our [0, 1]
scale: on the papers' [−1, 1] scale the prior is ½N((−2, 0), 0.25 I) + ½N((2, 0), 0.25 I),
A = [1, 1]/√2, σ_y = 0.3, y = 0.2; halving (x = (x̃ + 1)/2) gives means (−0.5, 0.5), (1.5, 0.5),
variance 0.0625, σ_y = 0.15 and y = (0.2 + √2)/2. Exact posterior weight of the right component:
0.841. Tolerances: 4 Monte-Carlo standard errors plus, where stated, the measured
discretisation bias of the 100- or 1000-step schedule. DiffPIR and DPS are approximations: their
tests pin measured values (regression bands) and say how far they are from the posterior.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import one_line
import torch

import pnp_imaging
from denoisers_zoo.exact import GMMDenoiser
from operators.base import LinearOperator
from operators.noise import GaussianNoise
from pnp_imaging.problem import Problem
from pnp_imaging.samplers.base import DivergenceError

N = 4000  # draws per test: MC standard error of a weight <= 0.008
W = (0.5, 0.5)
MEANS = ((-0.5, 0.5), (1.5, 0.5))
VAR = 0.0625
SIGMA_Y = 0.15
M = torch.tensor([[1.0, 1.0]], dtype=torch.float64) / math.sqrt(2.0)
Y = (0.2 + math.sqrt(2.0)) / 2.0


class MatrixOperator(LinearOperator):
    """``A x = M x`` on the flattened image; exact prox by a dense solve (test-only)."""

    has_exact_prox = True

    def __init__(self, m: torch.Tensor):
        self.m = m.double()

    def A(self, x):  # noqa: N802
        return (x.flatten(1).double() @ self.m.T).to(x.dtype).view(x.shape[0], 1, 1, -1)

    def A_adjoint(self, y):  # noqa: N802
        return (y.flatten(1).double() @ self.m).to(y.dtype).view(y.shape[0], 1, 1, -1)

    def prox_l2(self, z, y, gamma):
        h = torch.eye(self.m.shape[1], dtype=torch.float64) + gamma * self.m.T @ self.m
        rhs = z.flatten(1).double() + gamma * (y.flatten(1).double() @ self.m)
        return torch.linalg.solve(h, rhs.T).T.to(z.dtype).view(z.shape)


def prior_gmm(means=MEANS) -> GMMDenoiser:
    return GMMDenoiser(W, means, [VAR, VAR], shape=(1, 1, 2))


def exact_posterior(means=MEANS, y=Y, sigma_y=SIGMA_Y):
    """Weights, means [K, 2], covariances [K, 2, 2] of p(x | y) (docs/algorithms.md §diffusion)."""
    mu = torch.tensor(means, dtype=torch.float64)
    cov = VAR * torch.eye(2, dtype=torch.float64)
    s = M @ cov @ M.T + sigma_y**2
    gain = cov @ M.T / s
    logw = torch.log(torch.tensor(W, dtype=torch.float64)) - 0.5 * ((y - mu @ M.T).squeeze(-1) ** 2) / s.squeeze()
    w = torch.softmax(logw, 0)
    post_means = mu + (y - mu @ M.T) @ gain.T
    return w, post_means, (cov - gain @ M @ cov).expand(2, 2, 2).clone()


def moments(w, means, covs):
    """Mean [2] and per-coordinate std [2] of a Gaussian mixture."""
    mean = (w[:, None] * means).sum(0)
    second = (w[:, None, None] * (covs + means[:, :, None] * means[:, None, :])).sum(0)
    return mean, (second - mean[:, None] * mean[None, :]).diagonal().sqrt()


def problem(y=Y) -> Problem:
    yt = torch.tensor([[[[y]]]], dtype=torch.float64)
    return Problem(operator=MatrixOperator(M), noise=GaussianNoise(SIGMA_Y), y=yt, x_shape=(1, 1, 1, 2))


def draws(sampler: str, denoiser, seed: int = 0, **options) -> torch.Tensor:
    """``N`` draws ``[N, 2]`` through the public API (N/2 chains × 2 steps)."""
    out = []
    pnp_imaging.sample(problem(), denoiser, sampler, n_steps=2, chains=N // 2,
                       generator=torch.Generator().manual_seed(seed), x0=torch.zeros(1, 1, 1, 2, dtype=torch.float64),
                       on_sample=lambda i, s: out.append(s.x.clone()), clip=False, **options)
    return torch.cat(out).flatten(1)


def right_weight(x: torch.Tensor) -> float:
    """Share of draws on the right component's side (the components are 8 stds apart on axis 0)."""
    return float((x[:, 0] > 0.5).double().mean())


def coverage_90(x: torch.Tensor, exact=None) -> list[float]:
    """Exact posterior mass inside each coordinate's equal-tailed 90 % interval of the draws."""
    w, means, covs = exact if exact is not None else exact_posterior()
    out = []
    for i in range(2):
        lo, hi = torch.quantile(x[:, i], torch.tensor([0.05, 0.95], dtype=x.dtype)).tolist()
        sd = covs[:, i, i].sqrt()
        cdf = lambda v: float((w * 0.5 * (1 + torch.erf((v - means[:, i]) / (sd * math.sqrt(2))))).sum())  # noqa: E731
        out.append(cdf(hi) - cdf(lo))
    return out


def mc_tol(p: float, n: int = N, z: float = 4.0) -> float:
    return z * math.sqrt(p * (1 - p) / n)


def test_exact_posterior_weight_is_the_reference_value():
    w, _, _ = exact_posterior()
    assert abs(float(w[1]) - 0.841) < 5e-4


def test_ddpm_prior_sampling_reproduces_the_mixture():
    """DPS with scale 0 is plain DDPM ancestral sampling (1000 steps) with the exact denoiser:
    weights, component means and stds of the prior within 4 MC standard errors (+0.005 on the std
    for the time discretisation; measured std 0.249 vs 0.25)."""
    x = draws("dps", prior_gmm(), scale=0.0)
    assert abs(right_weight(x) - 0.5) < mc_tol(0.5)
    for k, side in enumerate((x[:, 0] < 0.5, x[:, 0] > 0.5)):
        xs = x[side]
        n_k = xs.shape[0]
        for i in range(2):
            assert abs(float(xs[:, i].mean()) - MEANS[k][i]) < 4 * 0.25 / math.sqrt(n_k)
            assert abs(float(xs[:, i].std()) - 0.25) < 4 * 0.25 / math.sqrt(2 * n_k) + 0.005


def test_diffpir_without_data_and_noise_is_a_ddim_prior_sampler():
    """λ → ∞ switches the data step off and ζ = 0 makes DiffPIR deterministic DDIM (100 quadratic
    steps): the weight is exact within MC error; the per-axis std is 1.6 % low (0.246 vs 0.25;
    time discretisation, as measured in the reference run: 0.49 vs 0.5 on [−1, 1])."""
    x = draws("diffpir", prior_gmm(), lam=1e8, zeta=0.0)
    assert abs(right_weight(x) - 0.5) < mc_tol(0.5)
    std1 = float(x[:, 1].std())
    assert 0.25 * 0.97 < std1 < 0.25 * 0.995


def test_oracle_ddpm_with_the_posterior_denoiser_samples_the_posterior():
    """Validates schedule, ancestral step and the VP ↔ denoiser conversion together: DDPM run with
    the exact posterior-GMM denoiser samples the posterior (weight 0.841; 90 % coverage)."""
    w, means, covs = exact_posterior()
    oracle = GMMDenoiser(w, means, covs, shape=(1, 1, 2))
    x = draws("dps", oracle, scale=0.0)
    assert abs(right_weight(x) - float(w[1])) < mc_tol(0.841) + 0.01
    for c in coverage_90(x):
        assert 0.87 <= c <= 0.93


def test_diffpir_is_not_the_posterior_and_matches_its_reference_run():
    """DiffPIR (λ = 4, the Bayes-consistent value on our scale, ζ = 0.3, 100 steps) puts 0.61 on
    the right component where the posterior puts 0.841 (reference run: 0.62); residual std of
    A x − y on [−1, 1] 0.38 (reference 0.39). A regression band, not exactness."""
    x = draws("diffpir", prior_gmm(), lam=4.0, zeta=0.3)
    assert abs(right_weight(x) - 0.62) < 0.05
    resid = 2.0 * ((x @ M.T).squeeze(1) - Y)
    assert abs(float(resid.std()) - 0.39) < 0.05


def test_dps_is_not_the_posterior_and_matches_its_reference_run():
    """DPS with scale 0.6 (ζ' = 0.3 of the paper's notation) over-weights the likelier component,
    0.94 vs 0.841, residual std 0.34 (reference run: 0.94, 0.34). A regression band."""
    x = draws("dps", prior_gmm(), scale=0.6)
    assert abs(right_weight(x) - 0.94) < 0.03
    resid = 2.0 * ((x @ M.T).squeeze(1) - Y)
    assert abs(float(resid.std()) - 0.34) < 0.05


@pytest.mark.parametrize("sampler,opts", [("diffpir", {"lam": 4.0, "zeta": 0.3}), ("dps", {"scale": 0.3})])
def test_same_seed_same_draws_other_seed_other_draws(sampler, opts):
    a = _few(sampler, 0, **opts)
    assert torch.equal(a, _few(sampler, 0, **opts))
    assert not torch.equal(a, _few(sampler, 1, **opts))


def _few(sampler, seed, **opts):
    out = []
    pnp_imaging.sample(problem(), prior_gmm(), sampler, n_steps=2, chains=3, generator=torch.Generator().manual_seed(seed),
                       on_sample=lambda i, s: out.append(s.x.clone()), clip=False, diffusion_steps=20, **opts)
    return torch.cat(out)


# ----------------------------------------------------------------------------- PnP-DM (split Gibbs)
OVERLAP = ((0.25, 0.5), (0.75, 0.5))  # components 2 stds apart: a skewed, mixing-friendly posterior
Y_OVERLAP = 1.1 / math.sqrt(2.0)


def test_pnpdm_likelihood_step_is_the_exact_gaussian_conditional():
    """z | x, y ~ N(H⁻¹(Aᵀy/σ² + x/ρ²), H⁻¹), H = AᵀA/σ² + I/ρ² (perturbation, Papandreou & Yuille 2010)."""
    from pnp_imaging.diffusion.pnpdm import likelihood_step

    prob, rho, n = problem(), 0.2, 40000
    x = torch.tensor([0.3, -0.1], dtype=torch.float64).view(1, 1, 1, 2).expand(n, 1, 1, 2)
    z = likelihood_step(prob, x, rho, generator=torch.Generator().manual_seed(0)).flatten(1)
    h = M.T @ M / SIGMA_Y**2 + torch.eye(2, dtype=torch.float64) / rho**2
    cov = torch.linalg.inv(h)
    mean = cov @ (M.T.squeeze(1) * Y / SIGMA_Y**2 + x[0].flatten() / rho**2)
    sd = cov.diagonal().sqrt()
    assert torch.all((z.mean(0) - mean).abs() < 4 * sd / math.sqrt(n))
    assert torch.allclose(torch.cov(z.T), cov, atol=4 * float(sd.max()) ** 2 * math.sqrt(2 / n))


@pytest.mark.parametrize("grid_steps,gain_tol,var_tol,clip", [(100, 0.015, 0.10, False), (400, 0.006, 0.035, False),
                                                               (100, 0.015, 0.10, True)])
def test_pnpdm_prior_step_samples_the_gaussian_denoising_posterior(grid_steps, gain_tol, var_tol, clip):
    """x | z ∝ N(x; m, v) N(z; x, ρ²) = N(m + v(z − m)/(v + ρ²), vρ²/(v + ρ²)) by the reverse SDE
    from level ρ through the EDM grid. Euler-Maruyama is first order in the grid spacing; measured
    (gain of the mean vs 0.862, variance ratio): N = 100: 0.853, 1.075; 200: 0.858, 1.04; 400: 0.860,
    1.02; 1600: 0.861, 1.006. Tolerances: those errors + 4 MC standard errors. The [0, 1] clamp
    (the default) changes nothing where the exact denoiser's outputs lie in the box, as here."""
    from pnp_imaging.diffusion.pnpdm import PnPDMOptions, make_params, prior_step

    den = GMMDenoiser([1.0], [[0.5, 0.5]], [VAR], shape=(1, 1, 2))
    params = make_params(problem(), den, PnPDMOptions(grid_steps=grid_steps, clip=clip))
    rho, n = 0.1, 20000
    z = torch.tensor([0.8, 0.2], dtype=torch.float64).view(1, 1, 1, 2).expand(n, 1, 1, 2)
    x, calls = prior_step(den, z, rho, params, generator=torch.Generator().manual_seed(0))
    var = VAR * rho**2 / (VAR + rho**2)
    x = x.flatten(1)
    assert calls == len(params.grid) - next(k for k, s in enumerate(params.grid) if s < rho)
    gain = (x.mean(0) - 0.5) / (z[0].flatten() - 0.5)
    assert torch.all((gain - VAR / (VAR + rho**2)).abs() < gain_tol + 4 * math.sqrt(var / n) / 0.3)
    assert torch.all((x.var(0) / var - 1).abs() < var_tol + 4 * math.sqrt(2 / n))


def _pnpdm_run(means, y, *, chains, n_steps, n_burnin, seed=0, **opts):
    """pnp-dm on the 2-D mixtures; ``clip`` off: their priors leave [0, 1]."""
    from pnp_imaging.diagnostics import ess

    out = []
    post = pnp_imaging.sample(problem(y), prior_gmm(means), "pnp-dm", n_steps=n_steps, n_burnin=n_burnin, chains=chains,
                              generator=torch.Generator().manual_seed(seed), x0=torch.zeros(1, 1, 1, 2, dtype=torch.float64),
                              on_sample=lambda i, s: out.append(s.x.clone()), clip=False, **opts)
    x = torch.stack(out, 1).flatten(2)  # [chain, draw, 2]
    return post, x, [float(ess(x[:, :, i].numpy())) for i in range(2)]


def test_pnpdm_matches_the_exact_posterior_within_monte_carlo_error():
    """The split-Gibbs chain at ρ_min = 0.05 targets the posterior with noise variance σ² + ρ²AAᵀ
    (exact here); its mean matches within 4 MCSE (from the bulk ESS), its std within 5 %, and its
    90 % intervals hold 0.87-0.93 of the exact posterior's mass (ρ_min → 0 limit)."""
    rho = 0.05
    post, x, n_eff = _pnpdm_run(OVERLAP, Y_OVERLAP, chains=100, n_steps=150, n_burnin=50, rho_min=rho)
    mean, sd = moments(*exact_posterior(OVERLAP, Y_OVERLAP, math.sqrt(SIGMA_Y**2 + rho**2)))
    flat = x.reshape(-1, 2)
    for i in range(2):
        assert abs(float(flat[:, i].mean()) - float(mean[i])) < 4 * float(sd[i]) / math.sqrt(n_eff[i])
        assert abs(float(flat[:, i].std()) / float(sd[i]) - 1) < 0.05
    for c in coverage_90(flat, exact_posterior(OVERLAP, Y_OVERLAP)):
        assert 0.87 <= c <= 0.93
    assert post.summary["denoiser_calls"] == 22


def test_pnpdm_rhat_flags_well_separated_modes_it_cannot_cross():
    """With the components 8 prior stds apart a chain keeps, after the annealing, the mode it is
    in: the mode weights are then set by the annealing and known only to the chain-level MC error
    (√(p(1 − p)/chains)), and R-hat says the chains disagree (> 1.1)."""
    chains = 64
    post, x, _ = _pnpdm_run(MEANS, Y, chains=chains, n_steps=64, n_burnin=44, rho_min=0.05)
    right = (x[:, :, 0] > 0.5).double().mean(1)  # per chain
    assert float(((right > 0) & (right < 1)).double().mean()) < 0.1  # (almost) no chain crosses
    assert abs(float(right.mean()) - 0.841) < 4 * math.sqrt(0.841 * 0.159 / chains)
    assert post.summary["rhat_max"] > 1.1


class LeakyDenoiser(GMMDenoiser):
    """The exact denoiser of a Gaussian prior near the box's corner (mean (0.9, 0.1), std 0.1), plus
    ``k`` times the input's excursion out of [0, 1]²: a network that follows out-of-range inputs
    instead of pulling them back."""

    def __init__(self, k: float):
        super().__init__([1.0], [[0.9, 0.1]], [0.01], shape=(1, 1, 2))
        self.k = k

    def forward(self, x, sigma):
        return super().forward(x, sigma) + self.k * (x - x.clamp(0.0, 1.0))


def test_pnpdm_clip_keeps_the_chain_in_range_where_the_denoiser_leaks():
    """What the operator cannot see (here x₁ − x₂) is held only by the prior step. A denoiser that
    follows excursions out of [0, 1] lets the unclamped chain run away (the failure seen on images);
    the default clamp of ``D`` to [0, 1] keeps every draw within the last Euler step's noise of it.
    The unclamped run trips the bounded-state guard, whose message names the option."""
    def run(clip):
        out = []
        pnp_imaging.sample(problem(0.5 * math.sqrt(2.0)), LeakyDenoiser(0.3), "pnp-dm", n_steps=40, n_burnin=5,
                           chains=16, generator=torch.Generator().manual_seed(0), rho0=0.2, rho_min=0.15,
                           x0=torch.full((1, 1, 1, 2), 0.5, dtype=torch.float64), clip=clip,
                           on_sample=lambda i, s: out.append(s.x.clone()))
        return torch.stack(out)

    with pytest.raises(DivergenceError) as e:
        run(False)
    assert "max|x|" in one_line(e) and "set it to true" in one_line(e)
    clipped = run(True)
    assert float(clipped.min()) > -0.01 and float(clipped.max()) < 1.01


def test_pnpdm_refuses_a_burn_in_shorter_than_its_annealing():
    with pytest.raises(ValueError) as e:
        _pnpdm_run(MEANS, Y, chains=2, n_steps=60, n_burnin=40, rho_min=0.05)
    assert "n_burnin >= 44" in one_line(e)


def test_pnpdm_is_not_stopped_by_the_langevin_likelihood_guard():
    """At coupling ρ the chain's x samples the posterior with noise variance σ² + ρ²AAᵀ, so its
    misfit measured with σ is far above the posterior's (here σ = 0.005, ρ_min = 0.5: hundreds to
    thousands, swinging by far more than the Langevin guard's 2 per measurement + 25). pnp-dm has
    no step size to blow up, so that guard is off for it (the bounded-state guard stays on)."""
    from pnp_imaging.samplers.kernel import get_sampler

    assert get_sampler("pnp-dm").nll_guard is False and get_sampler("pnp-ula").nll_guard is True
    yt = torch.tensor([[[[Y]]]], dtype=torch.float64)
    tight = Problem(operator=MatrixOperator(M), noise=GaussianNoise(0.005), y=yt, x_shape=(1, 1, 1, 2))
    post = pnp_imaging.sample(tight, prior_gmm(OVERLAP), "pnp-dm", n_steps=60, n_burnin=50, chains=8,
                              generator=torch.Generator().manual_seed(0),
                              x0=torch.full((1, 1, 1, 2), Y / math.sqrt(2.0), dtype=torch.float64), rho_min=0.5,
                              clip=False)
    misfit = -np.asarray(post.traces["loglik"])[:, 25:]  # (chain, iteration) after the annealing (22 sweeps)
    rise = misfit - np.minimum.accumulate(misfit, axis=1)
    assert float(rise.max()) > 2 * 1 + 25  # the guard (m = 1 measurement) would have stopped this run
