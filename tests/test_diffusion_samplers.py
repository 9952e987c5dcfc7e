"""DiffPIR and DPS on images: the closed-form data step, the schedule, option and denoiser checks
(one-line errors before any work), the public API and the config path."""
from __future__ import annotations

import math

import pytest
import torch

import pnp_imaging
from conftest import one_line
from denoisers_zoo.base import Denoiser
from denoisers_zoo.exact import GaussianDenoiser
from operators import Blur, GaussianNoise, Inpainting, uniform_kernel
from operators.inpainting import random_mask
from operators.noise import PoissonNoise
from pnp_imaging.diffusion import diffpir, dps
from pnp_imaging.diffusion.schedule import ddpm_schedule, quad_timesteps, uniform_timesteps
from pnp_imaging.problem import Problem
from pnp_imaging.samplers import build_kernel

F64 = torch.float64
SHAPE = (1, 1, 8, 8)


def image(seed: int = 0, shape=SHAPE) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def gaussian_prior(shape=SHAPE) -> GaussianDenoiser:
    return GaussianDenoiser.isotropic(torch.full(shape[1:], 0.5, dtype=F64), 0.05, shape[1:])


def blur_problem(shape=SHAPE, sigma=0.05) -> Problem:
    op = Blur(uniform_kernel(3), boundary="circular", image_shape=shape[-2:])
    return Problem.simulate(image(0, shape), op, GaussianNoise(sigma), generator=torch.Generator().manual_seed(1))


def dense(op, shape) -> torch.Tensor:
    n = math.prod(shape)
    basis = torch.eye(n, dtype=F64).view(n, *shape[1:])
    return op.A(basis).reshape(n, -1).T  # columns = A e_i


# ----------------------------------------------------------------------------- schedule
def test_schedule_matches_the_papers_code():
    sch = ddpm_schedule()
    assert sch.n == 1000 and abs(float(sch.betas[0]) - 1e-4) < 1e-15 and abs(float(sch.betas[-1]) - 0.02) < 1e-15
    a = float(sch.alpha_bar[500])
    assert abs(sch.s(500) - 0.5 * math.sqrt((1 - a) / a)) < 1e-15
    q = quad_timesteps(100)  # int(sqrt(linspace(0, 1000^2, 100))), last - 1, t = 999 - seq
    assert len(q) == 100 and q[0] == 999 and q[-1] == 0 and all(b < a for a, b in zip(q, q[1:]))
    assert q[1] == 999 - int(math.sqrt(1e6 / 99))
    assert uniform_timesteps(1000) == list(range(999, -1, -1))


# ----------------------------------------------------------------------------- data step
@pytest.mark.parametrize("kind", ["blur", "inpainting"])
def test_diffpir_data_step_is_the_dense_normal_equation_solve(kind):
    """(AᵀA + ρ I) x = Aᵀy + ρ x̂_0 with ρ = λσ_n²/σ̄_t², σ̄_t = 2 s_t (DiffPIR eq. (12), the authors'
    ``data_solution`` / inpainting formula), against a dense solve."""
    if kind == "blur":
        prob = blur_problem()
    else:
        mask = random_mask(SHAPE[1:], 0.5, generator=torch.Generator().manual_seed(2))
        prob = Problem.simulate(image(0), Inpainting(mask), GaussianNoise(0.02), generator=torch.Generator().manual_seed(1))
    params = diffpir.make_params(prob, gaussian_prior(), diffpir.DiffPIROptions(lam=7.0))
    assert params.data_step == "prox"
    x0 = image(3).expand(2, *SHAPE[1:]).clone()
    x0[1] += 0.1
    s = 0.3
    got = diffpir.data_step(prob, x0, s, params)
    a = dense(prob.operator, SHAPE)
    rho = 7.0 * params.sigma_n**2 / (2 * s) ** 2
    rhs = a.T @ prob.y.reshape(-1) + rho * x0.reshape(2, -1)
    want = torch.linalg.solve(a.T @ a + rho * torch.eye(64, dtype=F64), rhs.T).T
    assert torch.allclose(got.reshape(2, -1), want, atol=1e-10)


def test_diffpir_gradient_data_step_without_an_exact_prox():
    op = Blur(uniform_kernel(3), boundary="reflect")
    prob = Problem.simulate(image(0), op, GaussianNoise(0.05), generator=torch.Generator().manual_seed(1))
    params = diffpir.make_params(prob, gaussian_prior(), diffpir.DiffPIROptions())
    assert params.data_step == "gradient"
    x0 = image(3)
    got = diffpir.data_step(prob, x0, 0.3, params)
    tau = 0.05**2 / (7.0 * 0.05**2 / 0.6**2)
    assert torch.allclose(got, x0 - min(tau, 1 / prob.data_lipschitz) * prob.data_grad(x0))


# ----------------------------------------------------------------------------- checks before work
class Narrow(Denoiser):
    name, sigma_range = "narrow", (0.0, 55 / 255)

    def forward(self, x, sigma):
        raise AssertionError("called before the check")


@pytest.mark.parametrize("sampler", ["diffpir", "dps"])
def test_a_denoiser_that_cannot_serve_the_schedule_is_refused_in_one_line(sampler):
    with pytest.raises(ValueError) as e:
        pnp_imaging.sample(blur_problem(), Narrow(), sampler, n_steps=2, chains=1, generator=torch.Generator())
    msg = one_line(e)
    assert "prior.denoiser" in msg and "'narrow'" in msg and "fullrange_gray" in msg and "78.7]" in msg


@pytest.mark.parametrize("sampler,options,key", [
    ("diffpir", {"zeta": 1.5}, "sampler.zeta"), ("diffpir", {"lam": -1.0}, "sampler.lam"),
    ("diffpir", {"diffusion_steps": 10.0}, "sampler.diffusion_steps"), ("dps", {"scale": "big"}, "sampler.scale"),
    ("dps", {"diffusion_steps": 1}, "sampler.diffusion_steps"), ("dps", {"clip": 1}, "sampler.clip"),
    ("diffpir", {"lamda": 1.0}, "sampler.lamda"),
])
def test_bad_options_fail_in_one_line_naming_the_key(sampler, options, key):
    with pytest.raises(ValueError) as e:
        build_kernel(sampler, blur_problem(), gaussian_prior(), **options)
    assert one_line(e).startswith(key)


@pytest.mark.parametrize("sampler", ["diffpir", "dps"])
def test_non_gaussian_noise_is_refused(sampler):
    prob = Problem.simulate(image(0), Blur(uniform_kernel(3), boundary="circular", image_shape=(8, 8)), PoissonNoise(50.0),
                            generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError) as e:
        build_kernel(sampler, prob, gaussian_prior())
    assert one_line(e).startswith("noise:")


def test_dps_scale_defaults_follow_the_authors_configs():
    mask = random_mask(SHAPE[1:], 0.5, generator=torch.Generator().manual_seed(2))
    inp = Problem.simulate(image(0), Inpainting(mask), GaussianNoise(0.02), generator=torch.Generator().manual_seed(1))
    assert build_kernel("dps", inp, gaussian_prior()).params.scale == 0.5
    assert build_kernel("dps", blur_problem(), gaussian_prior()).params.scale == 0.3
    # respaced: the same total guidance over fewer steps (docs/algorithms.md §diffusion)
    assert build_kernel("dps", inp, gaussian_prior(), diffusion_steps=250).params.scale == pytest.approx(2.0)
    assert build_kernel("dps", blur_problem(), gaussian_prior(), diffusion_steps=250).params.scale == pytest.approx(1.2)
    assert build_kernel("dps", blur_problem(), gaussian_prior(), diffusion_steps=250, scale=0.3).params.scale == 0.3


# ----------------------------------------------------------------------------- the public API
@pytest.mark.parametrize("sampler,calls", [("diffpir", 9), ("dps", 10)])
def test_sample_returns_batched_independent_draws_and_counts_denoiser_calls(sampler, calls):
    seen = []
    post = pnp_imaging.sample(blur_problem(), gaussian_prior(), sampler, n_steps=3, chains=4, diffusion_steps=10,
                              generator=torch.Generator().manual_seed(0), on_sample=lambda i, s: seen.append(s.x.clone()))
    s = post.summary
    assert s["sampler"] == sampler and s["denoiser_calls"] == calls and s["n_burnin"] == 0 and s["n_kept"] == 3
    assert s["step_size"] is None
    x = torch.cat(seen)
    assert x.shape == (12, *SHAPE[1:]) and torch.isfinite(x).all()
    d = torch.cdist(x.flatten(1), x.flatten(1))
    assert float(d[~torch.eye(12, dtype=torch.bool)].min()) > 1e-3  # every draw is a new one
    assert torch.allclose(post.mmse, x.double().mean(0, keepdim=True), atol=1e-6)


def test_config_names_only_type_steps_chains_and_gets_the_full_range_prior(tmp_path):
    from pnp_imaging.api import _load_denoiser
    from pnp_imaging.config import resolve_config

    cfg = resolve_config({"image": "cameraman.png", "sampler": {"type": "diffpir", "n_steps": 100, "chains": 4}},
                         base_dir=pnp_imaging_data())
    assert cfg.sampler.n_burnin == 0 and cfg.sampler.options.diffusion_steps == 100
    name, den = _load_denoiser(cfg, 1, torch.float32)
    assert name == "fullrange_gray" and den.sigma_range[1] >= 80
    mcmc = resolve_config({"image": "cameraman.png", "sampler": {"type": "skrock"}}, base_dir=pnp_imaging_data())
    assert mcmc.sampler.n_burnin == 200 and _load_denoiser(mcmc, 1, torch.float32)[0] == "lipdncnn_gray_s5"


def pnp_imaging_data():
    from conftest import DATA

    return DATA


# ----------------------------------------------------------------------------- draws in the report
def _report_text(post, problem, tmp_path):
    from pnp_imaging.api import _write_outputs

    _write_outputs(tmp_path, post, problem)
    return (tmp_path / "report.html").read_text()


def test_draws_are_saved_and_shown_with_their_diversity(tmp_path):
    """The last state of each chain is kept for the report's grid; the diversity is the mean
    pairwise RMS distance between those states, computed here independently."""
    prob = blur_problem()
    seen = []
    post = pnp_imaging.sample(prob, gaussian_prior(), "diffpir", n_steps=2, chains=4, diffusion_steps=10,
                              generator=torch.Generator().manual_seed(0), on_sample=lambda i, s: seen.append(s.x.clone()))
    last = seen[-1].double().flatten(1)
    pairs = [((last[i] - last[j]).square().mean().sqrt()) for i in range(4) for j in range(4) if i != j]
    s = post.summary
    assert s["sample_diversity"] == pytest.approx(float(torch.stack(pairs).mean()), rel=1e-9)
    assert s["guidance"] == 0.0 and s["coverage"] is not None
    assert post.samples.shape == (4, *SHAPE[1:]) and torch.allclose(post.samples, seen[-1].double())
    html = _report_text(post, prob, tmp_path)
    assert (tmp_path / "samples.png").is_file() and "Sample diversity" in html and "not i.i.d." not in html
    assert pnp_imaging.Posterior.load(tmp_path).samples.shape == (4, *SHAPE[1:])


def test_guided_draws_give_no_coverage_and_the_report_says_they_are_not_iid(tmp_path):
    prob = blur_problem()
    post = pnp_imaging.sample(prob, gaussian_prior(), "diffpir", n_steps=2, chains=4, diffusion_steps=10,
                              generator=torch.Generator().manual_seed(0), guidance=100.0)
    assert post.summary["guidance"] == 100.0 and post.summary["coverage"] is None
    html = _report_text(post, prob, tmp_path)
    assert "not i.i.d. posterior draws" in html and "no coverage" in html
