"""Problem: data term vs autograd for a batch of chains, Lipschitz constant, simulate()
statistics, from_config for every operator type, and bad input."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import DATA, one_line

from operators import (
    Blur,
    Composition,
    GaussianNoise,
    Identity,
    Inpainting,
    PoissonGaussianNoise,
    PoissonNoise,
    uniform_kernel,
)
from pnp_imaging.problem import Problem

N_SIDE = 256
N = N_SIDE * N_SIDE  # Monte Carlo sample size of the simulate() tests (one draw per pixel)
Z = 5.0  # tolerance in Monte Carlo standard errors: P(|N(0,1)| > 5) ≈ 6e-7 per check


def _flat(value: float, dtype=torch.float64) -> torch.Tensor:
    return torch.full((1, 1, N_SIDE, N_SIDE), value, dtype=dtype)


# ---------------------------------------------------------------- simulate() statistics
@pytest.mark.parametrize("sigma", [0.01, 0.1])
def test_simulate_gaussian_mean_var(sigma, gen):
    x = _flat(0.4)
    p = Problem.simulate(x, Identity(), GaussianNoise(sigma), generator=gen)
    r = (p.y - x).flatten()
    # mean of N iid N(0, σ²): standard error σ/√N
    assert abs(float(r.mean())) < Z * sigma / math.sqrt(N)
    # sample variance: standard error σ²·√(2/(N-1)) (Gaussian kurtosis 3)
    assert abs(float(r.var()) - sigma**2) < Z * sigma**2 * math.sqrt(2 / (N - 1))


@pytest.mark.parametrize("gain, z", [(0.01, 0.3), (0.1, 0.05)])
def test_simulate_poisson_mean_var(gain, z, gen):
    x = _flat(z)
    p = Problem.simulate(x, Identity(), PoissonNoise(gain), generator=gen)
    y = p.y.flatten()
    lam = z / gain  # Poisson rate in counts
    var = gain * z
    # y/gain is an integer count
    assert torch.allclose(y / gain, torch.round(y / gain), atol=1e-6)
    # mean: standard error sqrt(var/N)
    assert abs(float(y.mean()) - z) < Z * math.sqrt(var / N)
    # sample variance: Var[s²] ≈ (μ4 - σ⁴)/N = σ⁴ (2 + 1/λ)/N for a Poisson (excess kurtosis 1/λ)
    assert abs(float(y.var()) - var) < Z * var * math.sqrt((2 + 1 / lam) / N)


def test_simulate_poisson_gaussian_mean_var(gen):
    gain, sigma, z = 0.02, 0.03, 0.5
    p = Problem.simulate(_flat(z), Identity(), PoissonGaussianNoise(gain, sigma), generator=gen)
    y = p.y.flatten()
    var = gain * z + sigma**2
    assert abs(float(y.mean()) - z) < Z * math.sqrt(var / N)
    # kurtosis of the sum is below Poisson's; (2 + 1/λ) bounds Var[s²]/σ⁴·N from above
    assert abs(float(y.var()) - var) < Z * var * math.sqrt((2 + gain / z) / N)


def test_simulate_through_blur_has_right_mean(gen):
    x = torch.rand(1, 1, 64, 64, generator=gen, dtype=torch.float64)
    op = Blur(uniform_kernel(5), image_shape=(1, 64, 64))
    p = Problem.simulate(x, op, GaussianNoise(0.05), generator=gen)
    r = (p.y - op.A(x)).flatten()
    assert abs(float(r.mean())) < Z * 0.05 / 64
    assert p.x_true is x and p.x_shape == (1, 1, 64, 64)


def test_simulate_is_seeded():
    x = _flat(0.5, torch.float32)
    a = Problem.simulate(x, Identity(), GaussianNoise(0.1), generator=torch.Generator().manual_seed(0))
    b = Problem.simulate(x, Identity(), GaussianNoise(0.1), generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.y, b.y) and a.y.dtype == torch.float32


# ---------------------------------------------------------------- data term
@pytest.mark.parametrize(
    "noise", [GaussianNoise(0.05), PoissonNoise(0.02), PoissonGaussianNoise(0.02, 0.02)],
    ids=["gaussian", "poisson", "poisson_gaussian"],
)
def test_data_grad_batch_of_chains_matches_autograd(noise, gen):
    x_true = torch.rand(1, 3, 16, 16, generator=gen, dtype=torch.float64)
    op = Composition(Blur(uniform_kernel(3), boundary="reflect"),
                     Inpainting(torch.rand(1, 16, 16, generator=gen) > 0.3))
    p = Problem.simulate(x_true, op, noise, generator=gen)
    x = torch.rand(4, 3, 16, 16, generator=gen, dtype=torch.float64).requires_grad_(True)
    nll = p.data_nll(x)
    assert nll.shape == (4,)
    (auto,) = torch.autograd.grad(nll.sum(), x)
    g = p.data_grad(x.detach())
    assert g.shape == x.shape and torch.allclose(g, auto, rtol=1e-10, atol=1e-8)
    # chain b's gradient does not depend on the other chains
    assert torch.allclose(p.data_grad(x.detach()[2:3]), g[2:3], atol=1e-12)


def test_data_lipschitz_cached_and_analytic(gen):
    op = Blur(uniform_kernel(5), image_shape=(1, 32, 32))
    p = Problem.simulate(torch.rand(1, 1, 32, 32, generator=gen), op, GaussianNoise(0.02), generator=gen)
    assert "data_lipschitz" not in p.__dict__
    L = p.data_lipschitz
    assert L == pytest.approx(1 / 0.02**2, rel=1e-4) and "data_lipschitz" in p.__dict__
    assert p.data_lipschitz is L


def test_back_projection(gen):
    x = torch.rand(1, 1, 16, 16, generator=gen)
    p = Problem.simulate(x, Inpainting(box_mask_tensor()), GaussianNoise(0.2), generator=gen)
    bp = p.back_projection()
    assert bp.shape == x.shape and bp.min() >= 0 and bp.max() <= 1
    assert torch.equal(bp, torch.clamp(p.operator.A_adjoint(p.y), 0, 1))
    assert torch.all(bp[..., 4:8, 4:8] == 0)


def test_initial_guess_fills_inpainting_holes_and_is_the_back_projection_otherwise(gen):
    from operators import Blur, Composition, uniform_kernel
    from operators.inpainting import fill_missing

    x = torch.full((1, 1, 16, 16), 0.6)
    p = Problem.simulate(x, Inpainting(box_mask_tensor()), GaussianNoise(0.01), generator=gen)
    g = p.initial_guess()
    assert torch.equal(g, torch.clamp(fill_missing(p.y, p.operator.mask), 0, 1))
    assert float((g[..., 4:8, 4:8] - 0.6).abs().max()) < 0.05  # the hole is filled from its border
    blur = Blur(uniform_kernel(3), boundary="circular", image_shape=(1, 16, 16))
    q = Problem.simulate(x, blur, GaussianNoise(0.01), generator=gen)
    assert torch.equal(q.initial_guess(), q.back_projection())
    c = Problem.simulate(x, Composition(blur, Inpainting(box_mask_tensor())), GaussianNoise(0.01), generator=gen)
    assert float((c.initial_guess()[..., 4:8, 4:8] - 0.6).abs().max()) < 0.05


def box_mask_tensor():
    m = torch.ones(1, 16, 16)
    m[:, 4:8, 4:8] = 0
    return m


def test_problem_is_frozen(gen):
    p = Problem.simulate(_flat(0.5), Identity(), GaussianNoise(0.1), generator=gen)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.y = p.y * 0


# ---------------------------------------------------------------- from_config
CAM = str(DATA / "cameraman.png")
CONFIGS = {
    "blur_uniform": {"type": "blur", "kernel": "uniform", "size": 9, "boundary": "circular"},
    "blur_motion_file": {"type": "blur", "kernel": str(DATA / "kernels" / "motion_9.npy"), "boundary": "reflect"},
    "blur_motion_seed": {"type": "blur", "kernel": "motion", "size": 9, "seed": 4},
    "inpainting_file": {"type": "inpainting", "mask": str(DATA / "masks" / "box_mask_64.png")},
    "inpainting_random": {"type": "inpainting", "mask": "random", "missing_ratio": 0.8, "seed": 0},
    "identity": {"type": "identity"},
    "blur_inpainting": {
        "type": "blur_inpainting",
        "blur": {"kernel": "gaussian", "size": 7, "std": 1.6},
        "inpainting": {"mask": "box", "box": [10, 10, 20, 20]},
    },
    "list": [{"type": "blur", "kernel": "uniform", "size": 3}, {"type": "identity"}],
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_config_operators(name):
    cfg = {"image": CAM, "operator": CONFIGS[name], "noise": {"type": "gaussian", "sigma": 0.0039}}
    a = Problem.from_config(cfg, generator=torch.Generator().manual_seed(0))
    b = Problem.from_config(cfg, generator=torch.Generator().manual_seed(0))
    assert a.y.shape == (1, 1, 256, 256) and a.x_true.shape == a.y.shape
    assert torch.equal(a.y, b.y)
    assert a.operator.norm_squared(a.x_shape, n_iter=20) <= 1.1  # cheap: L_y itself is tested below


def test_from_config_rgb_and_noises():
    for noise in ({"type": "poisson", "gain": 0.01}, {"type": "poisson_gaussian", "gain": 0.01, "sigma": 0.01}):
        cfg = {"image": str(DATA / "coffee_128.png"),
               "operator": {"type": "blur", "kernel": "gaussian", "size": 7, "std": 1.0, "boundary": "replicate"},
               "noise": noise}
        p = Problem.from_config(cfg, generator=torch.Generator().manual_seed(0))
        assert p.y.shape == (1, 3, 128, 128)
    cfg["channels"] = 1
    assert Problem.from_config(cfg, generator=torch.Generator()).y.shape == (1, 1, 128, 128)


def test_from_config_observation(tmp_path, gen):
    y = (torch.rand(1, 1, 32, 32, generator=gen) * 1.2 - 0.1).numpy()  # noisy: outside [0, 1] is fine
    np.save(tmp_path / "y.npy", y[0])
    cfg = {"observation": str(tmp_path / "y.npy"), "operator": {"type": "identity"},
           "noise": {"type": "gaussian", "sigma": 0.1}}
    p = Problem.from_config(cfg, generator=gen)
    assert p.x_true is None and np.allclose(p.y.numpy(), y) and p.x_shape == (1, 1, 32, 32)


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"image": CAM, "operator": {"type": "warp"}, "noise": {"type": "gaussian", "sigma": 0.1}},
         r"operator.type: 'warp' is not valid; use one of \['blur', 'blur_inpainting', 'identity', 'inpainting'\]"),
        ({"image": CAM, "operator": {"type": "identity"}, "noise": {"type": "laplace"}},
         r"noise.type: 'laplace' is not valid; use one of \['gaussian', 'poisson', 'poisson_gaussian'\]"),
        ({"image": CAM, "operator": {"type": "identity"}, "noise": {"type": "gaussian", "sigma": -1}},
         "noise.sigma"),
        ({"image": CAM, "operator": {"type": "blur", "kernel": "uniform", "size": 301},
          "noise": {"type": "gaussian", "sigma": 0.1}}, "larger than the image"),
        ({"image": CAM, "operator": {"type": "blur", "kernel": np.ones((3, 5, 5)) / 25},
          "noise": {"type": "gaussian", "sigma": 0.1}}, "3 channels but the image has 1"),
        ({"image": CAM, "operator": {"type": "inpainting", "mask": np.ones((128, 128))},
          "noise": {"type": "gaussian", "sigma": 0.1}}, "does not match mask"),
    ],
)
def test_from_config_errors(cfg, match):
    with pytest.raises(ValueError, match=match) as exc:
        Problem.from_config(cfg, generator=torch.Generator())
    one_line(exc)


def test_from_config_missing_image_file():
    cfg = {"image": str(DATA / "no_such.png"), "operator": {"type": "identity"},
           "noise": {"type": "gaussian", "sigma": 0.1}}
    with pytest.raises(FileNotFoundError, match="no_such.png") as exc:
        Problem.from_config(cfg, generator=torch.Generator())
    one_line(exc)


# ---------------------------------------------------------------- bad input
def test_nan_observation_rejected():
    y = torch.zeros(1, 1, 8, 8)
    y[0, 0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="y: has 1 NaN/Inf") as exc:
        Problem(Identity(), GaussianNoise(0.1), y)
    one_line(exc)


def test_image_outside_unit_range_warns(gen):
    with pytest.warns(UserWarning, match=r"outside \[0, 1\]; rescale"):
        Problem.simulate(_flat(1.5), Identity(), GaussianNoise(0.1), generator=gen)


def test_channel_mismatch_operator_vs_image(gen):
    with pytest.raises(ValueError, match="expects 3 channels but the image has 1") as exc:
        Problem(Inpainting(torch.ones(3, 8, 8)), GaussianNoise(0.1), torch.zeros(1, 1, 8, 8))
    one_line(exc)


def test_wrong_types_rejected():
    with pytest.raises(ValueError, match="operator"):
        Problem("blur", GaussianNoise(0.1), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="noise"):
        Problem(Identity(), 0.1, torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="y:"):
        Problem(Identity(), GaussianNoise(0.1), torch.zeros(8, 8))
