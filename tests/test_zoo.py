"""Denoiser zoo: interface contract, exact denoisers vs Monte Carlo, loading errors, training, shipped models."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import denoisers_zoo as zoo
from denoisers_zoo.exact import GaussianDenoiser, GMMDenoiser, linear_gaussian_posterior
from denoisers_zoo.lipschitz import residual_lipschitz
from denoisers_zoo.nets import NetDenoiser, build_net

F64 = torch.float64
TINY_ARCHS = {
    "drunet_tiny": {"type": "drunet", "channels": 1, "nc": [8, 16, 32, 64], "nb": 1},
    "drunet_tiny_rgb": {"type": "drunet", "channels": 3, "nc": [8, 16, 32, 64], "nb": 1},
    "lipdncnn_tiny": {"type": "lipdncnn", "channels": 1, "features": 8, "depth": 4, "sn_size": 16,
                      "activation": "maxmin", "normalize": "clamp", "init_gain": 1.0},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on a shared 2-core machine more threads oversubscribe (30x slower convs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(name: str) -> NetDenoiser:
    torch.manual_seed(0)
    arch = TINY_ARCHS[name]
    sr = (5 / 255, 5 / 255) if arch["type"] == "lipdncnn" else (0.0, 55 / 255)
    return NetDenoiser(build_net(arch), name=name, channels=arch["channels"], sigma_range=sr, arch=arch).eval()


def _shipped(name: str):
    entry = zoo.read_manifest()["models"].get(name)
    if entry is None or not (zoo.MANIFEST_PATH.parent / entry["file"]).exists():
        pytest.skip(f"shipped weights for {name!r} not present yet (run python -m denoisers_zoo.train ... --install)")
    return zoo.load(name)


def _shipped_names() -> list[str]:
    return sorted(zoo.read_manifest()["models"])


def _sigma_in_range(den) -> float:
    lo, hi = den.sigma_range
    return lo if hi - lo < 1e-9 else min(max(25 / 255, lo), hi)


# ----------------------------------------------------------------------------- interface contract
def _check_contract(den, channels: int, sizes=((37, 53), (16, 16))):
    g = torch.Generator().manual_seed(0)
    s = _sigma_in_range(den)
    for h, w in sizes:
        x = torch.rand(2, channels, h, w, generator=g)
        out = den(x, s)
        assert out.shape == x.shape and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        out_t = den(x, torch.full((2,), s))
        torch.testing.assert_close(out, out_t, rtol=1e-5, atol=1e-6)
        out64 = den(x.double(), s)
        assert out64.dtype == F64 and out64.shape == x.shape
        torch.testing.assert_close(out64.float(), out, rtol=1e-4, atol=1e-5)
        # batch elements are denoised independently
        torch.testing.assert_close(den(x[1:], s), out[1:], rtol=1e-4, atol=1e-5)
    for attr in ("name", "channels", "sigma_range", "blind", "lipschitz"):
        assert hasattr(den, attr)


@pytest.mark.parametrize("name", sorted(TINY_ARCHS))
def test_contract_tiny_networks(name):
    den = _tiny(name)
    _check_contract(den, den.channels)
    x = torch.rand(1, 2, 16, 16)
    with pytest.raises(ValueError, match="channel") as e:
        den(x, _sigma_in_range(den))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="sigma_range"):
        den(torch.rand(1, den.channels, 16, 16), 0.9)
    with pytest.raises(ValueError, match="sigma"):
        den(torch.rand(2, den.channels, 16, 16), torch.tensor([0.01, 0.01, 0.01]))


@pytest.mark.parametrize("name", _shipped_names())
def test_contract_shipped(name):
    den = _shipped(name)
    assert den.name == name and den.lipschitz is None or isinstance(den.lipschitz, float)
    _check_contract(den, den.channels)
    wrong = 3 if den.channels == 1 else 1
    with pytest.raises(ValueError, match="channel"):
        den(torch.rand(1, wrong, 16, 16), _sigma_in_range(den))


def test_contract_bm3d():
    den = zoo.load("bm3d")
    assert "bm3d" in zoo.available()
    x = torch.rand(2, 1, 37, 53, generator=torch.Generator().manual_seed(1))
    out = den(x, torch.tensor([0.1, 0.0]))
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out[1], x[1])
    assert den(torch.rand(1, 3, 37, 53), 0.1).shape == (1, 3, 37, 53)


def test_contract_exact():
    iso = GaussianDenoiser.isotropic(0.5, 0.02, (1, 37, 53))
    _check_contract(iso, 1, sizes=((37, 53),))
    with pytest.raises(ValueError, match="dimension"):
        iso(torch.rand(1, 1, 8, 8), 0.1)
    g = torch.Generator().manual_seed(0)
    gmm = GMMDenoiser([0.3, 0.7], torch.rand(2, 3 * 4 * 5, generator=g), torch.tensor([0.01, 0.05]), shape=(3, 4, 5))
    _check_contract(gmm, 3, sizes=((4, 5),))
    assert gmm(torch.rand(2, 60), 0.1).shape == (2, 60)


# ----------------------------------------------------------------------------- exact denoisers
def _spd(d, g, floor=0.05):
    a = torch.randn(d, d, generator=g, dtype=F64)
    return a @ a.T / d + floor * torch.eye(d, dtype=F64)


def test_gaussian_matches_linear_algebra():
    g = torch.Generator().manual_seed(0)
    d = 12
    S, mu = _spd(d, g), torch.randn(d, generator=g, dtype=F64)
    D = GaussianDenoiser(mu, S)
    y = torch.randn(4, d, generator=g, dtype=F64)
    sig = torch.tensor([0.05, 0.2, 0.5, 1.0], dtype=F64)
    for i in range(4):
        s2 = float(sig[i]) ** 2
        ref = mu + S @ torch.linalg.solve(S + s2 * torch.eye(d, dtype=F64), y[i] - mu)
        torch.testing.assert_close(D(y, sig)[i], ref, rtol=1e-10, atol=1e-10)
        score_ref = -torch.linalg.solve(S + s2 * torch.eye(d, dtype=F64), y[i] - mu)
        torch.testing.assert_close(D.score(y, sig)[i], score_ref, rtol=1e-9, atol=1e-9)
    # exact residual Lipschitz vs power iteration
    est = residual_lipschitz(D, y, 0.3, n_iter=200, generator=g)
    assert abs(est - D.residual_lipschitz(0.3)) < 1e-6
    # posterior marginal variances and the linear-Gaussian helper (A = I)
    pm, pc = linear_gaussian_posterior(mu, S, torch.eye(d, dtype=F64), y[0], 0.3)
    m2, v2 = D.posterior(y[:1], 0.3)
    torch.testing.assert_close(pm, m2[0])
    torch.testing.assert_close(torch.diag(pc), v2)


def test_gaussian_stationary_matches_dense():
    h = w = 6
    g = torch.Generator().manual_seed(3)
    p = torch.rand(h, w, generator=g, dtype=F64) + 0.01
    p = 0.5 * (p + torch.roll(torch.flip(p, (0, 1)), (1, 1), (0, 1)))  # even symmetric -> real covariance
    st = GaussianDenoiser.stationary(0.4, p, (1, h, w))
    dense = GaussianDenoiser(torch.full((h * w,), 0.4, dtype=F64), st.covariance())
    x = torch.rand(3, 1, h, w, generator=g, dtype=F64)
    torch.testing.assert_close(st(x, 0.2), dense(x, 0.2), rtol=1e-9, atol=1e-9)


def _snis_posterior_mean(prior_samples, y, sigma):
    """Self-normalised importance sampling estimate of E[x|y] with the prior as proposal, and its std error."""
    logw = -((prior_samples - y) ** 2).sum(1) / (2 * sigma**2)
    w = torch.softmax(logw, 0)
    m = (w[:, None] * prior_samples).sum(0)
    ess = 1.0 / (w**2).sum()
    se = torch.sqrt(((w[:, None] * (prior_samples - m) ** 2).sum(0)) / ess)
    return m, se, float(ess)


def test_gaussian_against_monte_carlo():
    g = torch.Generator().manual_seed(1)
    d = 2
    D = GaussianDenoiser(torch.tensor([0.3, -0.2], dtype=F64), _spd(d, g, 0.1))
    xs = D.sample(200_000, generator=g)
    y = torch.tensor([[0.5, 0.1]], dtype=F64)
    m, se, ess = _snis_posterior_mean(xs, y[0], 0.4)
    assert ess > 1000
    assert torch.all((D(y, 0.4)[0] - m).abs() < 5 * se + 1e-4)


def test_gmm_against_monte_carlo():
    g = torch.Generator().manual_seed(2)
    d, k = 3, 3
    means = torch.randn(k, d, generator=g, dtype=F64)
    covs = torch.stack([_spd(d, g, 0.05) * 0.3 for _ in range(k)])
    G = GMMDenoiser(torch.tensor([0.5, 0.3, 0.2]), means, covs)
    xs = G.sample(300_000, generator=g)
    for sigma in (0.3, 0.7):
        y = G.sample(3, generator=g) + sigma * torch.randn(3, d, generator=g, dtype=F64)
        out = G(y, sigma)
        for i in range(3):
            m, se, ess = _snis_posterior_mean(xs, y[i], sigma)
            assert ess > 300, ess
            assert torch.all((out[i] - m).abs() < 5 * se + 1e-4), (out[i], m, se)
    # Tweedie score vs autograd of the smoothed log density
    y = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(G.log_prob(y, 0.5).sum(), y)
    torch.testing.assert_close(G.score(y.detach(), 0.5), grad, rtol=1e-7, atol=1e-9)


def test_gmm_single_component_and_far_away_points_are_stable():
    g = torch.Generator().manual_seed(4)
    d = 5
    S, mu = _spd(d, g), torch.randn(d, generator=g, dtype=F64)
    y = torch.randn(3, d, generator=g, dtype=F64) * 100.0  # huge Mahalanobis distances: log-sum-exp needed
    torch.testing.assert_close(GMMDenoiser([1.0], mu[None], S[None])(y, 0.1), GaussianDenoiser(mu, S)(y, 0.1))
    G = GMMDenoiser([0.5, 0.5], torch.stack([mu, -mu]), torch.stack([S, S]))
    assert torch.isfinite(G(y, 0.01)).all()


# ----------------------------------------------------------------------------- loading
def _fake_zoo(tmp_path: Path, arch_name: str = "drunet_tiny") -> Path:
    from denoisers_zoo.train import sha256_file

    den = _tiny(arch_name)
    wdir = tmp_path / "weights"
    wdir.mkdir()
    wfile = wdir / "tiny.pt"
    torch.save({k: v.float() for k, v in den.net.state_dict().items()}, wfile)
    manifest = {"models": {"tiny": {"file": "tiny.pt", "sha256": sha256_file(wfile), "arch": den.arch,
                                    "channels": den.channels, "sigma_range": list(den.sigma_range),
                                    "blind": False, "lipschitz": None, "recipe": "denoisers_zoo/recipes/tiny.yaml"}}}
    (wdir / "manifest.json").write_text(json.dumps(manifest))
    return wdir / "manifest.json"


def test_load_roundtrip_and_errors(tmp_path):
    mpath = _fake_zoo(tmp_path)
    assert "tiny" in zoo.available(mpath)
    den = zoo.load("tiny", manifest=mpath)
    x = torch.rand(2, 1, 37, 53)
    torch.testing.assert_close(den(x, 0.1), _tiny("drunet_tiny")(x, 0.1))
    with pytest.raises(ValueError, match="channel"):
        den(torch.rand(1, 3, 16, 16), 0.1)
    with pytest.raises(ValueError, match="unknown denoiser 'nope'"):
        zoo.load("nope", manifest=mpath)
    wfile = mpath.parent / "tiny.pt"
    data = bytearray(wfile.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wfile.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="tiny.pt.*corrupt.*denoisers_zoo.train") as e:
        zoo.load("tiny", manifest=mpath)
    assert "\n" not in str(e.value)
    wfile.unlink()
    with pytest.raises(FileNotFoundError, match="tiny.pt.*missing.*denoisers_zoo.train") as e:
        zoo.load("tiny", manifest=mpath)
    assert "\n" not in str(e.value)


def test_load_lipschitz_network_roundtrip(tmp_path):
    mpath = _fake_zoo(tmp_path, "lipdncnn_tiny")
    den = zoo.load("tiny", manifest=mpath)
    x = torch.rand(1, 1, 20, 20)
    torch.testing.assert_close(den(x, 5 / 255), _tiny("lipdncnn_tiny")(x, 5 / 255))


# ----------------------------------------------------------------------------- lipschitz construction
@pytest.mark.parametrize("sn_method", ["fft", "circular"])
def test_lipdncnn_residual_is_1_lipschitz_by_construction(sn_method):
    from denoisers_zoo.lipschitz import certified_residual_bound, conv_norm_bound

    torch.manual_seed(0)
    arch = dict(TINY_ARCHS["lipdncnn_tiny"], init_gain=5.0, sn_method=sn_method, sn_power=2)  # large raw weights
    net = build_net(arch)
    net.train()
    for _ in range(30):  # power iterations update u in train mode
        net(torch.rand(1, 1, 16, 16), None)
    net.eval()
    net.refine_norms(100)
    per_layer = net.fold_grid_norms(64)  # what training does at export (with grid 128)
    assert all(v <= 1 + 1e-5 for v in per_layer)
    bound = certified_residual_bound(net, grid=64)
    assert bound["product_grid_max"] <= 1 + 1e-5
    assert bound["certified_upper_bound"] >= bound["product_grid_max"]
    den = NetDenoiser(net, name="t", channels=1, sigma_range=(5 / 255, 5 / 255))
    g = torch.Generator().manual_seed(0)
    lip = residual_lipschitz(den, torch.rand(3, 1, 24, 24, generator=g), 5 / 255, n_iter=50, generator=g)
    assert lip <= 1.0 + 1e-3
    # the grid norm is a tight lower bound of the certified one for a random conv
    w = torch.randn(4, 3, 3, 3, generator=g)
    gm, cert = conv_norm_bound(w, 256)
    assert gm <= cert <= gm / (1 - 2 * math.pi / 256) + 1e-9


def test_fft_spectral_norm_matches_operator_norm():
    from denoisers_zoo.lipschitz import conv_norm_bound
    from denoisers_zoo.nets import ConvSpectralNorm, FFTSpectralNorm

    g = torch.Generator().manual_seed(5)
    w = torch.randn(6, 4, 3, 3, generator=g, dtype=F64)
    f = FFTSpectralNorm(w, size=16)
    f.power_iterate(w, 100)
    c = ConvSpectralNorm(w, size=16)
    c.u = c.u.double()
    c.power_iterate(w, 2000)
    exact16 = conv_norm_bound(w, 16)[0]
    assert abs(float(f.operator_norm(w)) - exact16) < 1e-6 * exact16
    assert abs(float(c.operator_norm(w)) - exact16) < 1e-3 * exact16


# ----------------------------------------------------------------------------- training
def test_tiny_training_reduces_loss_and_resumes(tmp_path):
    from denoisers_zoo.data import PatchSampler, load_skimage
    from denoisers_zoo.train import load_recipe, train

    recipe_text = """
name: tiny
arch: {type: drunet, channels: 1, nc: [8, 16, 32, 64], nb: 1}
data: {source: skimage.data, channels: 1, patch: 32, train: [coins, page], held_out: [camera]}
sigma: {dist: uniform, low: 0.0, high: 0.2}
sigma_range: [0.0, 0.2]
loss: mse
optim: {lr: 3.0e-3, lr_min: 1.0e-4, schedule: cosine}
steps: 40
batch: 8
seed: 0
threads: 1
max_wall_minutes: 5
checkpoint_every: 10
log_every: 10
"""
    rp = tmp_path / "tiny.yaml"
    rp.write_text(recipe_text)
    recipe = load_recipe(rp)
    # fixed evaluation batch
    g = torch.Generator().manual_seed(123)
    x = PatchSampler([load_skimage("coins", 1)], 32).sample(16, g)
    y = x + 0.1 * torch.randn(x.shape, generator=g)
    s = torch.full((16,), 0.1)
    torch.manual_seed(0)
    init = build_net(recipe["arch"]).eval()
    with torch.no_grad():
        loss0 = float((init(y, s) - x).pow(2).mean())
    recipe_half = dict(recipe, steps=20)
    train(recipe_half, tmp_path / "run", progress_bar=False)
    info = train(recipe, tmp_path / "run", resume=True, progress_bar=False)
    assert info["steps_done"] == 40
    state = torch.load(tmp_path / "run" / "tiny.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state.values())
    net = build_net(recipe["arch"])
    net.load_state_dict(state)
    net.eval()
    with torch.no_grad():
        loss1 = float((net(y, s) - x).pow(2).mean())
    assert loss1 < 0.7 * loss0, (loss0, loss1)
    assert len(info["sha256"]) == 64


def test_sigma_distributions_cover_their_support_and_mixture_weights():
    from denoisers_zoo.train import _sample_sigma

    g = torch.Generator().manual_seed(0)
    n = 40000
    lo, hi = 1 / 255, 55 / 255
    s = _sample_sigma({"dist": "loguniform", "low": lo, "high": hi}, n, g)
    assert float(s.min()) >= lo and float(s.max()) <= hi
    # log s is uniform: its mean is the midpoint; std of the mean is (log(hi/lo)/sqrt(12))/sqrt(n)
    tol = 5 * math.log(hi / lo) / math.sqrt(12 * n)
    assert abs(float(s.log().mean()) - 0.5 * (math.log(lo) + math.log(hi))) < tol
    mix = {"dist": "mixture", "weights": [3, 1],
           "components": [{"dist": "fixed", "value": 0.1}, {"dist": "fixed", "value": 0.2}]}
    m = _sample_sigma(mix, n, g)
    frac = float((m == 0.1).float().mean())
    assert abs(frac - 0.75) < 5 * math.sqrt(0.75 * 0.25 / n)  # binomial, 5 standard errors
    with pytest.raises(ValueError, match="loguniform"):
        _sample_sigma({"dist": "loguniform", "low": 0.0, "high": hi}, 4, g)
    with pytest.raises(ValueError, match="mixture"):
        _sample_sigma(dict(mix, weights=[1.0]), 4, g)


_SMALL_DRUNET = {"type": "drunet", "channels": 1, "nc": [8, 16, 32, 64], "nb": 1}


def _earlier_stage_and_new_net(tmp_path, new_arch: dict):
    """A saved small DRUNet (seed 1) as an earlier stage's weights, and a fresh net of ``new_arch`` (seed 2)."""
    torch.manual_seed(1)
    src = build_net(_SMALL_DRUNET)
    f = tmp_path / "stage1.pt"
    torch.save(src.state_dict(), f)
    torch.manual_seed(2)
    return src, f, build_net(new_arch)


def test_init_from_loads_weights_and_checks_sha(tmp_path):
    from denoisers_zoo.train import _load_init, sha256_file

    src, f, dst = _earlier_stage_and_new_net(tmp_path, _SMALL_DRUNET)
    _load_init(dst, {"file": str(f), "sha256": sha256_file(f)})
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    with pytest.raises(ValueError, match="init_from.sha256"):
        _load_init(dst, {"file": str(f), "sha256": "0" * 64})
    with pytest.raises(FileNotFoundError, match="init_from.file"):
        _load_init(dst, {"file": str(tmp_path / "missing.pt")})


def test_widening_preserves_the_function_and_lets_new_channels_learn(tmp_path):
    """init_from.widen: a wider DRUNet started from a narrow one computes the same output (to float
    rounding: the added terms are exact zeros), and the zeroed weights from new to old channels get
    non-zero gradients at the first step, so the new channels can be brought in by training."""
    from denoisers_zoo.train import _load_init, sha256_file

    narrow, f, wide = _earlier_stage_and_new_net(tmp_path, dict(_SMALL_DRUNET, nc=[8, 16, 48, 96]))
    _load_init(wide, {"file": str(f), "sha256": sha256_file(f), "widen": True})
    g = torch.Generator().manual_seed(3)
    x, s = torch.rand(2, 1, 32, 40, generator=g), torch.tensor([0.05, 0.2])
    with torch.no_grad():
        ref, out = narrow(x, s), wide(x, s)
    assert torch.allclose(out, ref, atol=1e-6, rtol=0), float((out - ref).abs().max())
    # the new channels are live (random, non-zero incoming weights) and their path to the output learns
    params = dict(wide.named_parameters())
    body_conv = params["drunet.m_body.res.0.weight"]  # Conv2d [out, in, 3, 3]: 96 x 96, old block 64 x 64
    up_conv = params["drunet.m_up3.0.weight"]  # ConvTranspose2d [in, out, 2, 2]: 96 x 48, old block 64 x 32
    assert body_conv[64:, :].abs().sum() > 0
    assert body_conv[:64, 64:].abs().sum() == 0 and up_conv[64:, :32].abs().sum() == 0
    (wide(x, s) - x).pow(2).mean().backward()
    assert body_conv.grad[:64, 64:].abs().sum() > 0 and up_conv.grad[64:, :32].abs().sum() > 0
    # a wider source does not fit into a narrower net; a different depth does not match at all
    from denoisers_zoo.widen import widen_state_into

    with pytest.raises(ValueError, match="does not fit"):
        widen_state_into(narrow, wide.state_dict())
    with pytest.raises(ValueError, match="do not match"):
        widen_state_into(build_net(dict(_SMALL_DRUNET, nb=2)), narrow.state_dict())


def test_drunet_channels_last_path_matches_the_plain_network_and_returns_the_usual_layout():
    """DRUNetNet runs deepinv's U-Net on a channels-last copy on CPU (speed only): same numbers as
    the plain call on the usual layout, output contiguous, gradients flow to the input."""
    torch.manual_seed(3)
    net = build_net(dict(_SMALL_DRUNET, channels=3)).eval()
    x = torch.rand(2, 3, 24, 40, requires_grad=True)
    s = torch.tensor([0.05, 0.2])
    y = net(x, s)
    plain = net.drunet.forward_unet(torch.cat((x, s.view(2, 1, 1, 1).expand(2, 1, 24, 40)), 1))
    assert y.is_contiguous() and y.shape == x.shape
    assert torch.allclose(y, plain, atol=1e-5, rtol=0)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_recipe_rejects_held_out_camera(tmp_path):
    from denoisers_zoo.train import load_recipe

    p = tmp_path / "bad.yaml"
    p.write_text("name: b\narch: {type: drunet, channels: 1}\ndata: {train: [coins, camera], patch: 32}\n"
                 "sigma: {dist: fixed, value: 0.1}\noptim: {lr: 1.0e-3}\nsteps: 1\nbatch: 1\nseed: 0\n")
    with pytest.raises(ValueError, match="camera"):
        load_recipe(p)


def test_shipped_recipes_never_train_on_camera():
    from denoisers_zoo.train import load_recipe

    recipes = sorted((Path(zoo.__file__).parent / "recipes").glob("*.yaml"))
    assert recipes
    for r in recipes:  # bench_denoisers / the model cards evaluate on both
        assert not {"camera", "astronaut"} & set(load_recipe(r)["data"]["train"])


# ----------------------------------------------------------------------------- shipped quality
def _gaussian_filter(x, std):
    r = max(1, int(math.ceil(3 * std)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * std**2))
    k = k / k.sum()
    c = x.shape[1]
    xp = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    out = torch.nn.functional.conv2d(xp, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


#: shipped models known to miss the bar, with the measured figures; strict: passing again fails the
#: test so the mark is removed. edm_gray was trained 85 CPU-minutes (its GPU recipe is not run yet).
_BELOW_BAR = {"edm_gray": "undertrained: 26.50 dB vs 27.12 for the best Gaussian filter at sigma = 25/255"}


def _photo_model_names() -> list[str]:
    """Shipped models trained on photographs (not, e.g., the 8x8 digits model of the cloning experiment)."""
    return [n for n in _shipped_names() if zoo.read_manifest()["models"][n].get("data_source", "skimage.data") == "skimage.data"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=_BELOW_BAR[n]))
                                  if n in _BELOW_BAR else n for n in _photo_model_names()])
def test_shipped_beats_identity_and_gaussian_filter(name):
    from denoisers_zoo.data import load_camera, load_skimage
    from denoisers_zoo.nets import psnr

    den = _shipped(name)
    if den.channels == 1:
        x = load_camera(1)  # held-out cameraman (data/cameraman.png, 256x256; center 256 crop if larger)
        h, w = x.shape[-2:]
        x = x[..., (h - min(h, 256)) // 2 :, (w - min(w, 256)) // 2 :][..., :256, :256]
    else:
        x = load_skimage("astronaut", 3)[None][..., 0:256, 128:384]  # held out for the colour model
    s = _sigma_in_range(den)
    y = x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p_model = psnr(den(y, s).clamp(0, 1), x)
    p_id = psnr(y, x)
    p_gauss = max(psnr(_gaussian_filter(y, std), x) for std in (0.5, 0.75, 1.0, 1.5, 2.0))
    assert p_model > p_id + 0.5, (p_model, p_id)
    assert p_model > p_gauss, (p_model, p_gauss)


# ----------------------------------------------------------------------------- model cards
def test_card_generation_and_reading(tmp_path):
    mpath = _fake_zoo(tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m denoisers_zoo.card tiny"):
        zoo.card("tiny", manifest=mpath)
    from denoisers_zoo.card import make_card

    make_card("tiny", manifest=mpath, bm3d=False, lip_points=1, lip_iter=3, lip_crop=24, sigmas_255=[25], n_time=1)
    text = zoo.card("tiny", manifest=mpath)  # still the reader after importing the submodule
    assert "# Model card: `tiny`" in text and "sha256" in text and "cameraman" in text
    entry = json.loads(mpath.read_text())["models"]["tiny"]
    assert isinstance(entry["lipschitz"], float) and entry["eval"]["forward_ms_256"] > 0
    assert zoo.load("tiny", manifest=mpath).lipschitz == entry["lipschitz"]
    assert "BM3D" in zoo.card("bm3d")


def test_quality_bar_counts_rows_at_the_bar_sigmas_and_reports_the_shortfall():
    import importlib

    card_mod = importlib.import_module("denoisers_zoo.card")
    table = {"a": [{"sigma_255": 5, "gain_db": -1.0}, {"sigma_255": 15, "gain_db": 0.19},
                   {"sigma_255": 25, "gain_db": 0.30}, {"sigma_255": 50, "gain_db": 0.49}],
             "b": [{"sigma_255": 15, "gain_db": None}, {"sigma_255": 50, "gain_db": 0.2999}]}
    bar = card_mod.quality_bar(table)
    assert [(img, s) for img, s, *_ in bar["rows"]] == [("a", 15), ("a", 25), ("a", 50), ("b", 50)]  # sigma 5 and no-baseline rows skipped
    assert (bar["met"], bar["total"]) == (2, 4)
    assert bar["rows"][0][3] == pytest.approx(0.11) and bar["rows"][3][3] == pytest.approx(1e-4)
    lines = "\n".join(card_mod._quality_bar_lines(table))
    assert "NOT met (2 of 4 rows)" in lines and "| a | 15 | +0.19 | 0.11 |" in lines
    assert "— met (1 of 1 rows)" in "\n".join(card_mod._quality_bar_lines({"a": [{"sigma_255": 25, "gain_db": 0.4}]}))


def test_offloaded_denoiser_matches_inner_and_keeps_input_device():
    """The wrapper is transparent: same output, on the input's device and dtype (CPU->CPU here;
    the CUDA case runs when a GPU is present)."""
    import denoisers_zoo
    from denoisers_zoo.base import OffloadedDenoiser

    inner = denoisers_zoo.load("lipdncnn_gray_s5")
    x = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        wrapped = OffloadedDenoiser(inner, dev)
        assert wrapped.name == inner.name and wrapped.lipschitz == inner.lipschitz
        out = wrapped(x, torch.tensor([5 / 255, 5 / 255]))
        assert out.device == x.device and out.dtype == x.dtype
        ref = inner.to("cpu")(x, 5 / 255)
        torch.testing.assert_close(out, ref, atol=1e-4 if dev != "cpu" else 0.0, rtol=0.0)


def test_grating_perturbation_shape_share_and_amplitude():
    """Only the picked share of the batch is perturbed, never above the amplitude bound, and the
    same generator state gives the same perturbation (reproducible training)."""
    from denoisers_zoo.train import _grating_perturbation

    cfg = {"type": "grating", "prob": 0.5, "amp": [0.1, 0.3], "freq": [0.25, 0.5], "window": [3.0, 12.0]}
    p = _grating_perturbation(cfg, (400, 1, 24, 24), torch.Generator().manual_seed(1))
    assert p.shape == (400, 1, 24, 24)
    peak = p.abs().amax(dim=(1, 2, 3))
    share = float((peak > 0).double().mean())
    assert abs(share - 0.5) < 4 * (0.25 / 400) ** 0.5  # binomial share, 4 standard errors
    assert float(peak.max()) <= 0.3 + 1e-6
    again = _grating_perturbation(cfg, (400, 1, 24, 24), torch.Generator().manual_seed(1))
    assert torch.equal(p, again)
    none = _grating_perturbation({**cfg, "prob": 0.0}, (8, 1, 24, 24), torch.Generator().manual_seed(2))
    assert float(none.abs().max()) == 0.0



def test_excess_noise_perturbation_and_lists():
    """``excess_noise``: white noise of k·σ (k ~ U[factor]) on the picked share only, so the
    picked inputs' extra std over their σ lies in the factor range; a list sums its entries; an
    unknown type is refused in one line."""
    from denoisers_zoo.train import _perturbation

    n, sigma = 400, torch.full((400,), 0.1)
    cfg = {"type": "excess_noise", "prob": 0.5, "factor": [1.0, 2.0]}
    p = _perturbation(cfg, sigma, (n, 1, 32, 32), torch.Generator().manual_seed(1))
    ratio = p.std(dim=(1, 2, 3)) / sigma
    picked = ratio > 0
    assert abs(float(picked.double().mean()) - 0.5) < 4 * (0.25 / n) ** 0.5
    assert float(ratio[picked].min()) > 0.9 and float(ratio[picked].max()) < 2.1  # std of 1024 pixels: ±5 %
    grating = {"type": "grating", "prob": 1.0, "amp": [0.1, 0.1], "freq": [0.3, 0.3], "window": [4.0, 4.0]}
    both = _perturbation([{**cfg, "prob": 0.0}, grating], sigma[:4], (4, 1, 32, 32), torch.Generator().manual_seed(2))
    assert 0.0 < float(both.abs().max()) <= 0.1 + 1e-6
    with pytest.raises(ValueError, match="perturbation.type"):
        _perturbation({"type": "blur", "prob": 1.0}, sigma[:4], (4, 1, 8, 8), torch.Generator())

def test_param_ema_is_exported_checkpointed_and_resumable(tmp_path):
    from denoisers_zoo.train import _update_average, load_recipe, train

    lin = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(2.0)
    avg = {"weight": torch.zeros(1, 3)}
    _update_average(avg, lin, 0.75)
    assert torch.allclose(avg["weight"], torch.full((1, 3), 0.5))  # 0.75 * 0 + 0.25 * 2

    rp = tmp_path / "ema.yaml"
    rp.write_text("""
name: ema
arch: {type: drunet, channels: 1, nc: [8, 16, 32, 64], nb: 1}
data: {source: skimage.data, channels: 1, patch: 32, train: [coins, page], held_out: [camera]}
sigma: {dist: uniform, low: 0.0, high: 0.2}
sigma_range: [0.0, 0.2]
optim: {lr: 1.0e-3, schedule: constant}   # a shorter first run then sees the same rates
param_ema: 0.9
steps: 12
batch: 4
seed: 0
threads: 1
checkpoint_every: 3
log_every: 3
""")
    recipe = load_recipe(rp)
    train(recipe, tmp_path / "straight", progress_bar=False)
    train(dict(recipe, steps=6), tmp_path / "split", progress_bar=False)
    train(recipe, tmp_path / "split", resume=True, progress_bar=False)
    straight = torch.load(tmp_path / "straight" / "ema.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "ema.pt", weights_only=True)
    ck = torch.load(tmp_path / "straight" / "ckpt.pt", weights_only=True)
    for k, v in straight.items():
        assert torch.allclose(v, ck["param_ema"][k]), k  # the export is the average ...
        assert torch.allclose(v, split[k], atol=1e-6), k  # ... which survives a resume
    assert any(not torch.allclose(v, ck["model"][k]) for k, v in straight.items())  # ... not the last iterate
    with pytest.raises(ValueError, match="param_ema"):
        train(dict(recipe, param_ema=1.5), tmp_path / "bad", progress_bar=False)
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_dead_leaves_radius_law_and_images():
    """Radii follow p(r) ∝ r^-alpha (binomial check of the CDF at two points); images are seeded,
    in [0, 1], fully painted and made of many disks at many scales."""
    import numpy as np

    from denoisers_zoo.dead_leaves import dead_leaves_image, sample_radii

    n = 40000
    r = sample_radii(n, 3.0, 1.0, 100.0, np.random.default_rng(0))
    assert r.min() >= 1.0 and r.max() <= 100.0
    for q in (2.0, 10.0):
        p = (1 - q**-2) / (1 - 100.0**-2)  # exact CDF of the truncated power law, alpha = 3
        assert abs(float((r <= q).mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)
    a = dead_leaves_image(64, np.random.default_rng(1))
    b = dead_leaves_image(64, np.random.default_rng(1))
    c = dead_leaves_image(64, np.random.default_rng(2))
    assert a.shape == (1, 64, 64) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0
    flat = a[0, 1:-1, 1:-1]  # interior pixels away from edges keep a disk's exact grey level
    levels, counts = np.unique(flat, return_counts=True)
    big = counts[counts >= 20]
    assert len(big) >= 10  # many disks of several pixels ...
    assert big.max() < 0.9 * flat.size  # ... none covering everything
    assert float((np.abs(np.diff(a[0], axis=1)) > 1e-6).mean()) > 0.05  # edges at many places
    with pytest.raises(ValueError, match="r_min"):
        dead_leaves_image(64, np.random.default_rng(0), r_min=0.0)


def _assert_data_key_refused_before_output(tmp_path, data_extra: str, match: str):
    """A tiny recipe whose ``data`` has ``data_extra`` is refused with ``match`` and writes nothing."""
    from denoisers_zoo.train import load_recipe, train

    rp = tmp_path / "bad.yaml"
    rp.write_text("name: bad\narch: {type: drunet, channels: 1, nc: [8, 16, 32, 64], nb: 1}\n"
                  f"data: {{train: [coins], patch: 32, {data_extra}}}\n"
                  "sigma: {dist: fixed, value: 0.1}\noptim: {lr: 1.0e-3}\nsteps: 1\nbatch: 1\nseed: 0\n")
    with pytest.raises(ValueError, match=match):
        train(load_recipe(rp), tmp_path / "bad", progress_bar=False)
    assert not (tmp_path / "bad").exists()


def test_dead_leaves_share_of_training_patches(tmp_path):
    """``data.dead_leaves.share`` is the probability that a patch comes from a synthetic image;
    a bad share is refused before any output is written."""
    from denoisers_zoo.train import _training_sampler

    data = {"train": ["coins", "page"], "patch": 32,
            "dead_leaves": {"images": 3, "size": 48, "share": 0.3, "seed": 0}}
    s = _training_sampler(data, 1)
    assert len(s.images) == 5 and tuple(s.images[-1].shape) == (1, 48, 48)
    assert abs(float(s.probs[2:].sum()) - 0.3) < 1e-12
    nat = s.probs[:2] / s.probs[:2].sum()  # the natural images keep their sqrt(area) weights
    area = torch.tensor([float(im.shape[-2] * im.shape[-1]) ** 0.5 for im in s.images[:2]], dtype=torch.float64)
    assert torch.allclose(nat, area / area.sum())
    x = s.sample(6, torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 32, 32)
    _assert_data_key_refused_before_output(tmp_path, "dead_leaves: {images: 2, size: 48, share: 1.5}", "dead_leaves.share")


def test_scale_aug_downscales_a_share_of_patches_by_log_uniform_factors(tmp_path):
    """On a linear ramp a crop of side p/s downscaled to p has slope 1/s times the image's: the
    share of rescaled patches is ``prob`` (binomial tolerance) and log(1/s) is uniform on
    [0, -log(min)]. Without ``scale_aug`` the draws are exactly those of the plain sampler."""
    from denoisers_zoo.data import PatchSampler
    from denoisers_zoo.train import _training_sampler

    W, p, n = 400, 24, 600
    ramp = (torch.arange(W, dtype=torch.float32) / W).expand(W, W)[None].contiguous()
    x = PatchSampler([ramp], p, scale_aug={"prob": 0.5, "min": 0.25}).sample(n, torch.Generator().manual_seed(1))
    assert x.shape == (n, 1, p, p) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    inner = x[:, 0, 4:-4, 4:-4]
    slope = torch.maximum((inner[:, :, 1:] - inner[:, :, :-1]).abs().mean((1, 2)),
                          (inner[:, 1:] - inner[:, :-1]).abs().mean((1, 2))) * W  # = 1/s
    rescaled = slope > 1.02
    assert abs(rescaled.float().mean().item() - 0.5) < 4 * (0.25 / n) ** 0.5  # 4 binomial sd
    assert float(slope.max()) < 4.0 * 1.02 and float(slope.min()) > 0.98
    u = torch.log(slope[rescaled]) / math.log(4.0)  # ~ U[0, 1]
    assert abs(float(u.mean()) - 0.5) < 4 * (1 / 12 / len(u)) ** 0.5
    plain = PatchSampler([ramp], p).sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(plain, PatchSampler([ramp], p, scale_aug=None).sample(8, torch.Generator().manual_seed(3)))
    assert _training_sampler({"train": ["coins"], "patch": 32, "scale_aug": {"prob": 1.0, "min": 0.5}}, 1).scale_aug == {"prob": 1.0, "min": 0.5}
    for bad, key in (({"prob": 0.5, "min": 1.5}, "scale_aug.min"), ({"prob": 0.0}, "scale_aug.prob"), ({"factor": 2}, "unknown key")):
        with pytest.raises(ValueError, match=key):
            PatchSampler([ramp], p, scale_aug=bad)
    _assert_data_key_refused_before_output(tmp_path, "scale_aug: {prob: 0.5, min: 2}", "scale_aug.min")


def test_keep_freed_memory_serves_large_blocks_from_the_heap():
    """After keep_freed_memory() a 20 MiB malloc no longer gets its own mmap (glibc's default
    threshold is 128 KiB): mallinfo2's mmapped-bytes counter must not grow. (mallopt's return value
    cannot tell: glibc returns 1 even for unknown options.)"""
    import ctypes
    import ctypes.util
    import platform

    from denoisers_zoo.cpu_alloc import keep_freed_memory

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or \
            tuple(int(v) for v in platform.libc_ver()[1].split(".")[:2]) < (2, 33):
        pytest.skip("mallopt tuning / mallinfo2 are glibc (>= 2.33) only")

    class MallInfo2(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                  "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    assert keep_freed_memory() is True
    before = libc.mallinfo2().hblkhd
    p = libc.malloc(20 * 1024 * 1024)
    assert p
    try:
        assert libc.mallinfo2().hblkhd == before
    finally:
        libc.free(p)


def test_spectral_norm_weights_are_cached_in_eval_mode_and_invalidated_on_change():
    """Eval-mode forwards without autograd reuse the normalised weights (the FFT norm otherwise
    dominates small images) and give bit-identical outputs; an in-place weight change is seen."""
    import denoisers_zoo

    den = denoisers_zoo.load("lipdncnn_gray_s5")
    x = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first, again = den(x, 5 / 255), den(x, 5 / 255)
        assert torch.equal(first, again)
        conv = next(m for m in den.modules() if hasattr(m, "parametrizations"))
        w = conv.parametrizations.weight.original
        w.add_(0.05 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1)))  # in place: new version
        changed = den(x, 5 / 255)
    assert not torch.equal(changed, first)
