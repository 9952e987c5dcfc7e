"""Continuation MAP (docs/algorithms.md §map-continuation): closed-form Gaussian mode, the
objective estimate (O) against the exact potential, the schedule, budgets and one-line errors."""
from __future__ import annotations

import math

import pytest
import torch

from denoisers_zoo.exact import GaussianDenoiser
from operators import Blur, GaussianNoise, Inpainting, PoissonNoise, random_mask, uniform_kernel
from pnp_imaging.optim import continuation, map_estimate
from pnp_imaging.priors import ScorePrior
from pnp_imaging.problem import Problem

SHAPE = (1, 1, 8, 8)
D = 64
EPS = 0.01


class Counting:
    """Wraps a denoiser and counts its calls (and the levels it was called at)."""

    def __init__(self, den):
        self.den, self.calls = den, []
        self.sigma_range, self.blind, self.name = den.sigma_range, den.blind, den.name

    def __call__(self, x, sigma):
        self.calls.append(float(sigma))
        return self.den(x, sigma)


def _setup(operator: str = "blur", sigma_y: float = 0.05, noise=None):
    """Gaussian prior N(mean, cov): exact denoiser at every level, so the MAP of U = f_y − log p_ε
    is the mode of the linear-Gaussian posterior with prior covariance cov + εI."""
    g = torch.Generator().manual_seed(5)
    b = torch.randn(D, D, generator=g, dtype=torch.float64) / math.sqrt(D)
    cov = 0.02 * (b @ b.T) + 0.005 * torch.eye(D, dtype=torch.float64)
    mean = torch.full((D,), 0.5, dtype=torch.float64)
    den = Counting(GaussianDenoiser(mean, cov, shape=SHAPE[1:]))
    x_true = (mean + torch.linalg.cholesky(cov) @ torch.randn(D, generator=g, dtype=torch.float64)).reshape(SHAPE)
    if operator == "blur":
        op = Blur(uniform_kernel(3).double(), boundary="circular", image_shape=SHAPE)
    else:  # inpainting, 80% of the pixels missing
        op = Inpainting(random_mask(SHAPE[1:], 0.8, generator=g).double())
    problem = Problem.simulate(x_true.clamp(0, 1), op, noise or GaussianNoise(sigma_y), generator=g)
    prior = ScorePrior(den, eps=EPS, lipschitz=den.den.residual_lipschitz(math.sqrt(EPS)))
    a = torch.stack([op.A(e.reshape(SHAPE)).reshape(-1) for e in torch.eye(D, dtype=torch.float64)], dim=1)
    prec = torch.linalg.inv(cov + EPS * torch.eye(D, dtype=torch.float64))

    def potential(x):  # U(x) up to a constant
        r = a @ x.reshape(-1) - problem.y.reshape(-1)
        dx = x.reshape(-1) - mean
        return float(r @ r / (2 * sigma_y**2) + dx @ prec @ dx / 2)

    mode = torch.linalg.solve(a.T @ a / sigma_y**2 + prec, a.T @ problem.y.reshape(-1) / sigma_y**2 + prec @ mean)
    return problem, prior, mode.reshape(SHAPE), potential


@pytest.mark.parametrize("operator", ["blur", "inpainting"])
def test_converges_to_the_closed_form_mode(operator):
    problem, prior, mode, _ = _setup(operator)
    res = map_estimate(problem, prior, generator=torch.Generator().manual_seed(0), method="continuation", box=None,
                       sigma_max=0.5, levels=6, target_steps=3000, n_steps=3006, tol=1e-13)
    err = torch.linalg.vector_norm(res.x - mode) / torch.linalg.vector_norm(mode)
    assert res.stop_reason == "tolerance" and err < 1e-7, (res.stop_reason, float(err))
    # the first 6 calls are the continuation levels, decreasing from sigma_max to above sqrt(eps)
    levels = prior.denoiser.calls[:6]
    assert levels[0] == pytest.approx(0.5) and levels == sorted(levels, reverse=True) and levels[-1] > 0.1
    assert prior.denoiser.calls[6:] == pytest.approx([0.1] * (res.n_iter - 6))


def test_objective_estimate_is_exact_on_a_quadratic():
    # the trapezoid rule (O) is exact when the gradient is linear: the running sum of delta_u
    # equals U(x_j) − U(x_0) of the target stage
    problem, prior, _, potential = _setup("blur")
    xs, dus = [], []

    def record(state, info):
        if info.stage == "target":
            xs.append(state.x.clone())
            dus.append(info.delta_u)

    params = continuation.auto_params(problem, prior, sigma_max=0.3, n_levels=3, max_target_steps=8, box=None)
    continuation.run_continuation(problem, prior, problem.initial_guess(), n_steps=50, params=params, tol=0.0,
                                  on_step=record)
    assert math.isnan(dus[0]) and len(xs) == 8
    # delta_u reported at step j is U(x_{j-1}) − U(x_{j-2}) (x_{-1}: the stage-2 start)
    for j in range(2, 8):
        exact = potential(xs[j - 1]) - potential(xs[j - 2])
        assert dus[j] == pytest.approx(exact, rel=1e-6, abs=1e-9)
        assert dus[j] < 0


def test_schedule_is_log_spaced_and_stays_in_the_denoiser_range():
    problem, prior, _, _ = _setup("blur")
    levels = continuation.schedule(prior, sigma_max=0.8, n_levels=4)
    ratios = [levels[k] / levels[k + 1] for k in range(3)] + [levels[3] / prior.sigma]
    assert levels[0] == pytest.approx(0.8) and ratios == pytest.approx([8 ** 0.25] * 4)
    prior.denoiser.sigma_range = (0.0, 0.2)  # the top of the range clips sigma_max
    assert continuation.schedule(prior, sigma_max=0.8, n_levels=2) == pytest.approx((0.2, math.sqrt(0.02)))
    prior.denoiser.sigma_range = (0.1, 0.1)  # a single-level denoiser: no continuation
    assert continuation.schedule(prior, sigma_max=0.8, n_levels=8) == ()
    assert continuation.schedule(prior, sigma_max=0.8, n_levels=0) == ()


def test_budgets_count_denoiser_calls():
    problem, prior, _, _ = _setup("inpainting")
    res = map_estimate(problem, prior, generator=torch.Generator().manual_seed(0), method="continuation",
                       sigma_max=0.5, levels=5, target_steps=7, n_steps=300, tol=0.0)
    assert len(prior.denoiser.calls) == res.n_iter == 12 and res.stop_reason == "max_iterations"
    prior.denoiser.calls.clear()
    res = map_estimate(problem, prior, generator=torch.Generator().manual_seed(0), method="continuation",
                       sigma_max=0.5, levels=5, target_steps=7, n_steps=3, tol=0.0)
    assert len(prior.denoiser.calls) == res.n_iter == 3


def test_single_level_denoiser_is_refused_before_any_call():
    problem, prior, _, _ = _setup("blur")
    prior.denoiser.sigma_range = (0.1, 0.1)
    with pytest.raises(ValueError, match=r"^map.type: continuation needs denoiser levels above sqrt\(eps\) = 0.1 "
                                         r".*use map.type: pnp-sgd or a noise-conditional denoiser$"):
        map_estimate(problem, prior, generator=torch.Generator(), method="continuation")
    assert prior.denoiser.calls == []


def test_errors_are_one_line_and_come_before_any_denoiser_call():
    problem, prior, _, _ = _setup("blur", noise=PoissonNoise(gain=50.0))
    with pytest.raises(ValueError, match=r"^map.type: continuation needs an exact data prox.*map.type: pnp-sgd$"):
        map_estimate(problem, prior, generator=torch.Generator(), method="continuation")
    with pytest.raises(ValueError, match="map.type: unknown MAP method 'admm'"):
        map_estimate(problem, prior, generator=torch.Generator(), method="admm")
    assert prior.denoiser.calls == []


def test_config_accepts_continuation_and_rejects_gradient_splitting():
    from pnp_imaging.config import ConfigError, MapConfig, DEFAULTS

    cfg = MapConfig.from_dict({**DEFAULTS["map"], "type": "continuation", "levels": 4})
    assert (cfg.type, cfg.levels, cfg.target_steps) == ("continuation", 4, 8)
    with pytest.raises(ConfigError, match="map.splitting: continuation needs the proximal data step"):
        MapConfig.from_dict({**DEFAULTS["map"], "type": "continuation", "splitting": "gradient"})
    with pytest.raises(ConfigError, match="map.levels: must be an integer"):
        MapConfig.from_dict({**DEFAULTS["map"], "levels": 2.5})


def test_run_with_map_type_continuation(tmp_path, data_dir):
    # the config path end to end: map.type reaches map_estimate, the summary records it
    import json

    import yaml

    from pnp_imaging.cli import main
    from pnp_imaging.imageio import read_image, write_image

    write_image(tmp_path / "crop.png", read_image(data_dir / "cameraman.png")[..., 100:132, 100:132])
    cfg = {"seed": 1, "image": str(tmp_path / "crop.png"), "noise": {"type": "gaussian", "sigma": 0.02},
           "operator": {"type": "blur", "kernel": "uniform", "size": 5, "boundary": "circular"},
           "prior": {"denoiser": "drunet_gray", "eps": (10 / 255) ** 2},
           "map": {"type": "continuation", "levels": 3, "target_steps": 2, "n_steps": 50},
           "sampler": {"type": "skrock", "n_steps": 4, "n_burnin": 1, "chains": 2, "stages": 3}}
    (tmp_path / "cont.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(tmp_path / "cont.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    info = json.loads((tmp_path / "out" / "summary.json").read_text())["map"]
    assert info["type"] == "continuation" and info["n_iter"] == 5 and info["perturbation"] == 0.0


def test_a_step_too_long_stops_on_the_objective_and_returns_the_lowest_iterate():
    # step_fraction 3 > 2: forward-backward oscillates on the prior's stiffest modes and U grows;
    # the estimate (O) sees it before the divergence guard does
    problem, prior, _, potential = _setup("inpainting")
    params = continuation.auto_params(problem, prior, sigma_max=0.5, n_levels=4, step_fraction=3.0,
                                      max_target_steps=200, box=None)
    xs = []
    res = continuation.run_continuation(problem, prior, problem.initial_guess(), n_steps=300, params=params, tol=0.0,
                                        on_step=lambda s, i: xs.append(s.x.clone()) if i.stage == "target" else None)
    assert res.stop_reason == "objective" and len(xs) < 200
    values = [potential(x) for x in xs]
    assert potential(res.x) == pytest.approx(min(values[:-1]), rel=1e-9) and values[-1] > min(values)
