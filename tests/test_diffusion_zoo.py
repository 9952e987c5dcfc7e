"""The full-range zoo denoiser for the diffusion samplers: EDM preconditioning (Karras et al. 2022,
Table 1 and eq. (8)), its training path (``loss: edm``, resumable), its recipe and its registry entry."""
from __future__ import annotations

import math

import pytest
from conftest import one_line
import torch

import denoisers_zoo
from denoisers_zoo.edm import SIGMA_DATA, edm_coefficients, edm_loss_weight
from denoisers_zoo.nets import NetDenoiser, build_net
from pnp_imaging.diffusion.schedule import ddpm_schedule

F64 = torch.float64
TINY = {"type": "edm_drunet", "channels": 1, "nc": [8, 16, 32, 64], "nb": 1, "sigma_data": 0.25}


def test_edm_coefficients_are_karras_table_1():
    s = torch.tensor([1e-3, SIGMA_DATA, 10.0], dtype=F64)
    c_skip, c_out, c_in, c_noise = edm_coefficients(s)
    d = SIGMA_DATA
    assert torch.allclose(c_skip, d**2 / (s**2 + d**2))
    assert torch.allclose(c_out, s * d / torch.sqrt(s**2 + d**2))
    assert torch.allclose(c_in, 1 / torch.sqrt(s**2 + d**2))
    assert torch.allclose(c_noise, torch.log(s) / 4)
    assert abs(float(c_skip[1]) - 0.5) < 1e-15 and abs(float(c_out[1]) - d / math.sqrt(2)) < 1e-15
    # the weight makes the network target unit-scale: lambda * c_out^2 = 1
    assert torch.allclose(edm_loss_weight(s) * c_out**2, torch.ones(3, dtype=F64))


def test_preconditioning_limits_hold_for_any_network():
    """D -> y as sigma -> 0 (c_out -> 0) and D -> 0.5 + sigma_d F as sigma -> inf (c_skip -> 0),
    whatever the (random) network weights."""
    torch.manual_seed(0)
    net = build_net(TINY).double().eval()
    x = torch.rand(2, 1, 16, 16, dtype=F64)
    with torch.no_grad():
        small = net(x, torch.full((2,), 1e-4, dtype=F64))
        f = (net(x, torch.full((2,), 1e4, dtype=F64)) - 0.5) / SIGMA_DATA
    assert float((small - x).abs().max()) < 1e-4 * 10
    assert float(f.abs().max()) < 50


def test_edm_loss_equals_the_weighted_target_regression():
    """Karras eq. (8)-(9): lambda(sigma) ||D - x||^2 = ||F - (x - c_skip y)/c_out||^2 (centred at 0.5)."""
    torch.manual_seed(1)
    net = build_net(TINY).double().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 1, 16, 16, dtype=F64, generator=g)
    s = torch.tensor([0.01, 0.3, 5.0], dtype=F64)
    y = x + s.view(-1, 1, 1, 1) * torch.randn(x.shape, dtype=F64, generator=g)
    c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in edm_coefficients(s))
    with torch.no_grad():
        d = net(y, s)
        z = torch.cat((c_in * (y - 0.5), c_noise.expand(3, 1, 16, 16)), 1)
        f = net.drunet.forward_unet(z)
    lhs = (d - x).pow(2).mean(dim=(1, 2, 3)) * edm_loss_weight(s)
    rhs = (f - ((x - 0.5) - c_skip * (y - 0.5)) / c_out).pow(2).mean(dim=(1, 2, 3))
    assert torch.allclose(lhs, rhs, rtol=1e-9)


def test_edm_training_runs_with_the_edm_loss_and_resumes_bit_exactly(tmp_path):
    from denoisers_zoo.train import load_recipe, train

    rp = tmp_path / "tinyedm.yaml"
    rp.write_text("""
name: tinyedm
arch: {type: edm_drunet, channels: 1, nc: [8, 16, 32, 64], nb: 1, sigma_data: 0.25}
data: {source: skimage.data, channels: 1, patch: 32, train: [coins, page], held_out: [camera]}
sigma: {dist: loguniform, low: 0.001, high: 100.0}
sigma_range: [0.001, 100.0]
loss: edm
optim: {lr: 1.0e-3, schedule: constant}
steps: 8
batch: 4
seed: 0
threads: 1
checkpoint_every: 2
log_every: 2
""")
    recipe = load_recipe(rp)
    train(recipe, tmp_path / "straight", progress_bar=False)
    train(dict(recipe, steps=4), tmp_path / "split", progress_bar=False)
    info = train(recipe, tmp_path / "split", resume=True, progress_bar=False)
    assert info["steps_done"] == 8
    a = torch.load(tmp_path / "straight" / "tinyedm.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "tinyedm.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("recipe", ["edm_gray_stage1.yaml", "edm_gray.yaml", "edm_gray_gpu.yaml"])
def test_full_range_recipes_hold_out_camera_and_cover_the_ddpm_schedule(recipe):
    from denoisers_zoo.train import ROOT, load_recipe

    r = load_recipe(ROOT / "recipes" / recipe)
    assert "camera" not in r["data"]["train"] and "camera" in r["data"]["held_out"]
    assert r["loss"] == "edm" and r["arch"]["type"] == "edm_drunet"
    sch = ddpm_schedule()
    lo, hi = r["sigma_range"]
    assert lo <= sch.s(0) and hi >= sch.s(999)  # every DDPM timestep's noise level


def test_full_range_model_is_registered_loads_and_is_the_default_for_diffusion():
    assert denoisers_zoo.default_prior(1, full_range=True) == "fullrange_gray"
    assert denoisers_zoo.default_prior(1) == "lipdncnn_gray_s5"  # the MCMC default is unchanged
    entry = denoisers_zoo.read_manifest()["models"]["edm_gray"]
    assert len(entry["sha256"]) == 64 and entry["arch"]["type"] == "edm_drunet"
    den = denoisers_zoo.load("edm_gray")
    assert isinstance(den, NetDenoiser) and den.sigma_range[0] <= 0.005 and den.sigma_range[1] >= 80
    x = torch.rand(1, 1, 24, 40, dtype=F64)
    out = den(x, torch.tensor([2.0]))
    assert out.shape == x.shape and out.dtype == F64
    with pytest.raises(ValueError, match="sigma_range"):
        den(x, 500.0)


# ----------------------------------------------------------------------------- the composite
def _gaussian(mean: float, var: float, rng=(0.0, float("inf"))):
    from denoisers_zoo.exact import GaussianDenoiser

    den = GaussianDenoiser.isotropic(mean, var, (1, 4, 4))
    den.sigma_range = rng
    return den


def test_blend_is_low_below_a_high_above_b_and_the_log_sigma_mix_between():
    from denoisers_zoo.blend import SigmaBlendDenoiser

    low, high = _gaussian(0.2, 0.01, (0.0, 0.3)), _gaussian(0.8, 0.04, (0.05, 100.0))
    blend = SigmaBlendDenoiser(low, high, 0.1, 0.2)
    x = torch.rand(3, 1, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    sig = torch.tensor([0.05, 0.14, 0.5], dtype=F64)
    out = blend(x, sig)
    w = math.log(0.14 / 0.1) / math.log(2.0)
    assert torch.allclose(out[0], low(x[:1], 0.05)[0]) and torch.allclose(out[2], high(x[2:], 0.5)[0])
    assert torch.allclose(out[1], (1 - w) * low(x[1:2], 0.14)[0] + w * high(x[1:2], 0.14)[0])
    assert blend.sigma_range == (0.0, 100.0) and blend.channels == low.channels
    low.lipschitz, high.lipschitz = 0.5, 0.9  # the residual is a convex combination of the parts' residuals
    assert SigmaBlendDenoiser(low, high, 0.1, 0.2).lipschitz == 0.9


def test_blend_refuses_an_overlap_outside_a_part_in_one_line():
    from denoisers_zoo.blend import SigmaBlendDenoiser

    with pytest.raises(ValueError) as e:
        SigmaBlendDenoiser(_gaussian(0.2, 0.01, (0.0, 0.1)), _gaussian(0.8, 0.04), 0.05, 0.2)
    assert "overlap" in one_line(e)


def test_fullrange_gray_is_drunet_at_small_sigma_and_edm_at_large():
    den = denoisers_zoo.load("fullrange_gray")
    assert den.sigma_range[0] <= 0.005 and den.sigma_range[1] >= 80 and "fullrange_gray" in denoisers_zoo.available()
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(den(x, 0.1), denoisers_zoo.load("drunet_gray")(x, 0.1))
    assert torch.equal(den(x, 1.0), denoisers_zoo.load("edm_gray")(x, 1.0))
    assert "composite" in denoisers_zoo.card("fullrange_gray")
