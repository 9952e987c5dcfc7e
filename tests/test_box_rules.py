"""The box rules of projected samplers (``box_rule``: clamp, metropolis, reflect) against an exact
answer: a Gaussian posterior truncated to the box [0, 1] (pixels independent: identity operator,
Gaussian prior with its exact denoiser), whose mean and std are closed-form.

Posterior per pixel N(0.9, 0.103²) (y = m0 = 0.9, σ = 0.15, s² = 0.015, ε = 0.005); truncated to
[0, 1] its mean is 0.8693 and its std 0.0811, while clamping gives 0.891 and an atom of 16 % of the
mass at the face. Measured (seed 0, 2 chains x 2700 kept draws x 1024 pixels):

| sampler | clamp mean / atom | metropolis mean, std | reflect mean, std |
|---|---|---|---|
| pnp-ula δ = 2e-4 | 0.8737 / 3.8 % | 0.8695, 0.0811 | 0.8699, 0.0813 |
| pnp-kinetic-exp (default step) | 0.8983 / 14.6 % | 0.8669, 0.0833 | 0.8662, 0.0879 |

Monte Carlo error of the pooled mean: pnp-ula's min ESS ~55 per pixel, so ~5.6e4 effective draws
over the 1024 independent pixels, 0.081/√5.6e4 = 3.4e-4; the kinetic sampler's is ~10x smaller,
its error is the step's (δh = 0.42). Tolerances: 6 Monte Carlo errors for pnp-ula, the measured
step error plus margin for the kinetic sampler.
"""
from __future__ import annotations

import math

import pytest
import torch

import pnp_imaging
from conftest import one_line
from denoisers_zoo.exact import GaussianDenoiser
from operators.identity import Identity
from operators.noise import GaussianNoise
from pnp_imaging.priors import ScorePrior
from pnp_imaging.problem import Problem

F64 = torch.float64
HW, M, SIGMA, S2, EPS = 32, 0.9, 0.15, 0.015, 0.005


def _truncated_normal(m: float, s: float, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    a, b = (lo - m) / s, (hi - m) / s
    z = cdf(b) - cdf(a)
    mean = m + s * (pdf(a) - pdf(b)) / z
    var = s * s * (1 + (a * pdf(a) - b * pdf(b)) / z - ((pdf(a) - pdf(b)) / z) ** 2)
    return mean, math.sqrt(var)


def _draws(sampler: str, rule: str, n_steps: int, **options) -> torch.Tensor:
    y = torch.full((1, 1, HW, HW), M, dtype=F64)
    problem = Problem(operator=Identity(), noise=GaussianNoise(SIGMA), y=y)
    prior = ScorePrior(GaussianDenoiser.isotropic(M, S2, (1, HW, HW)), EPS, 1.0)
    out = []
    pnp_imaging.sample(problem, prior, sampler, n_steps=n_steps, n_burnin=n_steps // 10, chains=2, x0=y.clone(),
                       generator=torch.Generator().manual_seed(0), on_sample=lambda i, s: out.append(s.x.clone()),
                       box=(0.0, 1.0), projected=True, box_rule=rule, **options)
    return torch.stack(out).flatten()


TARGET = _truncated_normal(M, 1 / math.sqrt(1 / SIGMA**2 + 1 / (S2 + EPS)))


@pytest.mark.parametrize("sampler,options,mean_tol,std_tol,n_steps", [
    ("pnp-ula", {"step_size": 2e-4}, 0.002, 0.02, 3000),
    ("pnp-kinetic-exp", {}, 0.004, 0.04, 1500),
])
def test_metropolis_and_reflection_sample_the_truncated_posterior_and_clamping_does_not(sampler, options, mean_tol,
                                                                                      std_tol, n_steps):
    mean, std = TARGET
    for rule in ("metropolis", "reflect"):
        x = _draws(sampler, rule, n_steps, **options)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert float((x == 1.0).double().mean()) == 0.0  # no atom on the face
        assert abs(float(x.mean()) - mean) < mean_tol, (rule, float(x.mean()), mean)
        if rule == "metropolis" or sampler == "pnp-ula":  # kinetic reflection: std +8 % at this step (measured)
            assert abs(float(x.std()) / std - 1) < std_tol, (rule, float(x.std()), std)
    clamped = _draws(sampler, "clamp", n_steps, **options)
    assert float((clamped == 1.0).double().mean()) > 0.03  # mass piles on the face
    assert float(clamped.mean()) - mean > 2 * mean_tol


@pytest.mark.parametrize("options,key", [
    ({"box_rule": "bounce"}, "box_rule"),
    ({"box_rule": "metropolis", "projected": False}, "box_rule"),
])
def test_bad_box_rule_is_refused_in_one_line(options, key):
    y = torch.full((1, 1, 4, 4), M, dtype=F64)
    problem = Problem(operator=Identity(), noise=GaussianNoise(SIGMA), y=y)
    prior = ScorePrior(GaussianDenoiser.isotropic(M, S2, (1, 4, 4)), EPS, 1.0)
    for sampler in ("pnp-ula", "pnp-kinetic-exp"):
        with pytest.raises(ValueError) as e:
            pnp_imaging.sample(problem, prior, sampler, n_steps=2, generator=torch.Generator(), **options)
        assert one_line(e).startswith(key) or key in one_line(e)
