"""The public sampling API: ``sample`` / ``map_estimate`` / ``Posterior`` and the sampler registry."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from denoisers_zoo.exact import GaussianDenoiser
from operators.identity import Identity
from operators.noise import GaussianNoise
from pnp_imaging import Posterior, map_estimate, sample
from pnp_imaging.optim import map_health
from pnp_imaging.priors import ScorePrior
from pnp_imaging.problem import Problem
from pnp_imaging.samplers import build_kernel, dispersed_init, get_sampler, run_chain, sampler_names
from pnp_imaging.traces import TraceConfig
from pnp_imaging.stats import PosteriorStats


def _gaussian(hw=8, sigma=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.full((1, 1, hw, hw), 0.5, dtype=torch.float64)
    y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    problem = Problem(operator=Identity(), noise=GaussianNoise(sigma), y=y, x_true=x)
    prior = ScorePrior(GaussianDenoiser.isotropic(0.5, 0.04, (1, hw, hw)), eps=0.01)
    return problem, prior


@pytest.mark.parametrize("name", ["pnp-ula", "skrock"])
def test_sample_equals_the_hand_built_chain_bit_for_bit(name):
    """``sample`` is the registry + ``dispersed_init`` + ``run_chain`` and nothing else."""
    problem, prior = _gaussian()
    post = sample(problem, prior, name, n_steps=60, n_burnin=10, chains=3, init_spread=0.1,
                  generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    kernel = build_kernel(name, problem, prior)
    x0 = dispersed_init(problem.initial_guess(), 3, spread=0.1, generator=g)
    stats = PosteriorStats(tuple(x0.shape), probs=(0.05, 0.95), scales=(1, 2, 4, 8))
    ref = run_chain(kernel, kernel.init(x0), n_steps=60, n_burnin=10, thin=1, generator=g, stats=stats,
                    trace=TraceConfig(n_random=4))
    assert torch.equal(post.mmse, ref.stats.mmse().double())
    assert torch.equal(post.upper, ref.stats.credible_interval()[1].double())
    assert post.summary["sampler"] == name and post.summary["n_kept"] == 50
    assert set(post.diagnostics) == set(ref.traces) and all("verdict" in d for d in post.diagnostics.values())


def test_posterior_save_load_round_trip(tmp_path):
    problem, prior = _gaussian()
    post = sample(problem, prior, "skrock", n_steps=40, chains=2, generator=torch.Generator().manual_seed(1))
    post.save(tmp_path / "post")
    back = Posterior.load(tmp_path / "post")
    for field in ("mmse", "std", "lower", "upper"):
        assert torch.equal(getattr(back, field), getattr(post, field))
    assert back.multiscale_std.keys() == post.multiscale_std.keys()
    assert back.diagnostics == post.diagnostics and back.verdict == post.verdict
    assert all((back.traces[k] == v).all() for k, v in post.traces.items())
    assert post.to_dict()["verdict"] == post.verdict and "psnr_mmse" in post.summary  # truth known


def test_bad_sampler_or_option_fails_in_one_line_naming_it():
    problem, prior = _gaussian()
    g = torch.Generator()
    with pytest.raises(ValueError, match=r"unknown sampler 'hmc'; valid: diffpir, dps, pnp-dm, pnp-kinetic-exp, pnp-lm-exp, pnp-ula, pnp-ula-exp, skrock"):
        sample(problem, prior, "hmc", generator=g)
    with pytest.raises(ValueError, match=r"sampler.stagez: not an option of sampler 'skrock'; did you mean 'stages'"):
        sample(problem, prior, "skrock", stagez=3, generator=g)
    with pytest.raises(ValueError, match=r"stages: must be >= 2"):
        sample(problem, prior, "skrock", stages=1, generator=g)
    with pytest.raises(ValueError, match=r"n_steps: 3 steps with n_burnin=0, thin=2 keep fewer than 2 draws"):
        sample(problem, prior, "pnp-ula", n_steps=3, n_burnin=0, thin=2, generator=g)


def test_every_registered_family_builds_and_steps_with_its_default_options():
    """Registry coverage: a new family must register Options with defaults and a working build."""
    problem, prior = _gaussian()
    assert {"pnp-ula", "skrock"} <= set(sampler_names())
    for name in sampler_names():
        spec = get_sampler(name)
        options = spec.options()
        assert dataclasses.is_dataclass(options) and spec.option_names()
        kernel = spec.build(problem, prior, options)
        assert kernel.name == name
        state, _ = kernel.step(kernel.init(problem.initial_guess().expand(2, -1, -1, -1)), generator=torch.Generator())
        assert torch.isfinite(state.x).all()


def test_map_estimate_is_close_to_the_gaussian_mode_and_healthy():
    """Gaussian prior (smoothed: variance s² + ε), A = I: the MAP is the posterior mean in closed form."""
    problem, prior = _gaussian(hw=16)
    res = map_estimate(problem, prior, n_steps=300, generator=torch.Generator().manual_seed(0), box=None)
    h = 1 / 0.1**2 + 1 / (0.04 + 0.01)
    mode = (problem.y / 0.1**2 + 0.5 / (0.04 + 0.01)) / h
    # PnP-SGD is stochastic (denoiser input perturbed by s = sqrt(eps) = 0.1): at the last step
    # delta = 0.01 (1 + 3)^-0.6 = 0.0044 the score noise (1/(s2+eps)) s xi = 2 xi moves x by 0.009 xi, and
    # the proximal data step contracts by 1/(1 + delta/sigma^2) = 0.69, so the iterate fluctuates with a
    # stationary std of about 0.012 per pixel around the mode: RMS below 0.02, and the pixel average
    # (256 pixels: std 0.012/16) within 0.005 of the mode's.
    err = res.x - mode
    assert float(err.pow(2).mean().sqrt()) < 0.02 and abs(float(err.mean())) < 0.005
    assert map_health(problem, res.x).ok and map_health(problem, problem.x_true).ok


def test_map_health_flags_estimates_that_do_not_fit_or_leave_the_range():
    problem, _ = _gaussian(hw=16)
    far = problem.x_true + 0.5  # misfit (0.5/0.1)^2 = 25
    health = map_health(problem, far)
    assert not health.ok and health.misfit > 20 and "data misfit" in health.warning
    wild = problem.x_true.clone()
    wild[..., :4, :] = 3.0  # a quarter of the pixels outside [-0.1, 1.1]
    health = map_health(problem, wild)
    assert not health.ok and "outside [-0.1, 1.1]" in health.warning


def test_default_prior_follows_the_channel_count(tmp_path):
    from pnp_imaging.api import build_components
    from pnp_imaging.config import ConfigError, resolve_config

    data = Path(__file__).resolve().parent.parent / "data"
    g = torch.Generator().manual_seed(0)
    rgb = build_components(resolve_config({"image": str(data / "coffee_128.png")}), generator=g)
    gray = build_components(resolve_config({"image": str(data / "cameraman.png")}), generator=g)
    assert rgb.denoiser_name == "lipdncnn_rgb_s5" and gray.denoiser_name == "lipdncnn_gray_s5"
    assert rgb.prior.residual_lipschitz == 1.0
    with pytest.raises(ConfigError, match=r"^prior.denoiser: 'lipdncnn_gray_s5' takes 1-channel .* use 'lipdncnn_rgb_s5'"):
        build_components(resolve_config({"image": str(data / "coffee_128.png"),
                                         "prior": {"denoiser": "lipdncnn_gray_s5"}}), generator=g)


def test_auto_sampler_is_likelihood_exact_where_the_problem_allows():
    from operators.noise import PoissonNoise

    problem, prior = _gaussian()
    post = sample(problem, prior, n_steps=30, chains=2, generator=torch.Generator().manual_seed(0))
    assert post.summary["sampler"] == "pnp-kinetic-exp"
    poisson = Problem(operator=Identity(), noise=PoissonNoise(50.0), y=problem.y.clamp(0, 1))
    from pnp_imaging.sampling import auto_sampler

    assert auto_sampler(poisson) == "skrock"


def test_short_pnp_sgd_start_is_the_chains_own_run_and_is_recorded():
    """``sampler.init: pnp-sgd``: the chains start from ``init_steps`` PnP-SGD iterations drawn
    from the run's generator (the MAP off here), and the summary says so."""
    import pnp_imaging
    from pnp_imaging.api import _chains_start, build_components
    from pnp_imaging.config import resolve_config

    data = Path(__file__).resolve().parent.parent / "data"
    config = {"image": str(data / "cameraman.png"), "map": {"enabled": False},
              "sampler": {"type": "pnp-ula", "init": "pnp-sgd", "init_steps": 4, "n_steps": 4, "n_burnin": 1}}
    cfg = resolve_config(config)
    g = torch.Generator().manual_seed(cfg.seed)
    parts = build_components(cfg, generator=g)
    before = g.get_state()
    x0, info = _chains_start(cfg, parts, None, None, g)
    g.set_state(before)
    ref = map_estimate(parts.problem, parts.prior, generator=g, n_steps=4, box=cfg.sampler.options.box)
    assert torch.equal(x0, ref.x) and info["init"] == "pnp-sgd" and info["n_iter"] == 4
    guess = parts.problem.initial_guess()
    assert parts.problem.data_nll(x0).item() < parts.problem.data_nll(guess).item()
    assert _chains_start(resolve_config({**config, "sampler": {"init": "map"}}), parts, None, None, g) == \
        (None, {"init": "initial_guess"})
    post = pnp_imaging.run(config, progress=False)
    assert post.summary["start"]["init"] == "pnp-sgd" and post.summary["start"]["n_iter"] == 4
