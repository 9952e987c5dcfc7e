"""Peak memory levers: the denoiser evaluated on the chain batch in chunks (``prior.batch_chunk``)
gives the same output and the same estimates as one call on the whole batch."""
from __future__ import annotations

import denoisers_zoo
import numpy as np
import pytest
import torch

from pnp_imaging import priors
from pnp_imaging.config import ConfigError, resolve_config
from pnp_imaging.priors import ScorePrior, batch_chunk_size

EPS = (5.0 / 255.0) ** 2


class CountingDenoiser(torch.nn.Module):
    """Wraps a denoiser and records the batch size of every call."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []
        for attr in ("name", "channels", "sigma_range", "blind", "lipschitz"):
            setattr(self, attr, getattr(inner, attr))

    def forward(self, x, sigma):
        self.calls.append(x.shape[0])
        return self.inner(x, sigma)


def _batch(chains: int, size: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(chains, 1, size, size, generator=g, dtype=dtype)


@pytest.mark.parametrize("name,size,dtype", [("lipdncnn_gray_s5", 48, torch.float32),
                                             ("lipdncnn_gray_s5", 48, torch.float64),
                                             ("drunet_gray", 128, torch.float32)])
def test_chunked_denoiser_equals_whole_batch_bit_for_bit(name, size, dtype):
    """From these sizes up (every feature map >= 16²) torch's CPU convolution computes each
    image of a batch the same way whatever the batch size; smaller: next test."""
    den = CountingDenoiser(denoisers_zoo.load(name).to(dtype=dtype).eval())
    x = _batch(3, size, dtype)
    whole = ScorePrior(den, eps=EPS, lipschitz=1.0, batch_chunk=None).denoise(x)
    assert den.calls == [3]
    den.calls.clear()
    chunked = ScorePrior(den, eps=EPS, lipschitz=1.0, batch_chunk=2).denoise(x)
    assert den.calls == [2, 1]  # uneven last chunk
    assert chunked.dtype == whole.dtype and torch.equal(chunked, whole)
    if name == "drunet_gray":
        return
    # the score goes through the same path
    den.calls.clear()
    assert torch.equal(ScorePrior(den, eps=EPS, lipschitz=1.0, batch_chunk=1).score(x),
                       ScorePrior(den, eps=EPS, lipschitz=1.0, batch_chunk=None).score(x))
    assert den.calls == [1] * 3 + [3]


def test_tiny_images_agree_to_one_ulp():
    """On small feature maps (lipdncnn below 32², DRUNet below 128², whose deepest level is 8x
    smaller) torch's CPU convolution picks its algorithm by the batch size too, so chunks may
    differ in the last bits (measured 1.5e-7 at 16² for lipdncnn, 4.8e-7 at 48² for DRUNet,
    float32); ``batch_chunk="auto"`` only splits batches of more than 2^19 pixels."""
    den = denoisers_zoo.load("lipdncnn_gray_s5").eval()
    x = _batch(5, 16)
    whole = ScorePrior(den, eps=EPS, lipschitz=1.0, batch_chunk=None).denoise(x)
    chunked = ScorePrior(den, eps=EPS, lipschitz=1.0, batch_chunk=1).denoise(x)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=4 * torch.finfo(torch.float32).eps)


def test_auto_chunk_follows_the_pixel_budget(monkeypatch):
    assert batch_chunk_size(None, (8, 1, 512, 512)) is None
    assert batch_chunk_size(3, (8, 1, 512, 512)) == 3
    assert batch_chunk_size("auto", (8, 1, 256, 256)) == 8  # 2^19 pixels: one call
    assert batch_chunk_size("auto", (8, 1, 512, 512)) == 2
    assert batch_chunk_size("auto", (8, 1, 1024, 1024)) == 1  # never below one chain
    assert batch_chunk_size("auto", (8, 3, 256, 256)) == 2
    monkeypatch.setattr(priors, "AUTO_CHUNK_PIXELS", 2 * 16 * 16)
    den = CountingDenoiser(denoisers_zoo.load("lipdncnn_gray_s5").eval())
    out = ScorePrior(den, eps=EPS, lipschitz=1.0).denoise(_batch(5, 16))  # default: auto
    assert den.calls == [2, 2, 1] and out.shape == (5, 1, 16, 16)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "all"])
def test_bad_batch_chunk_is_a_one_line_error(bad):
    with pytest.raises(ValueError, match="batch_chunk") as err:
        ScorePrior(lambda x, s: x, eps=EPS, batch_chunk=bad)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="prior.batch_chunk") as err:
        resolve_config({"image": "data/cameraman.png", "prior": {"batch_chunk": bad}})
    assert "\n" not in str(err.value)


def test_config_batch_chunk_reaches_the_prior():
    from pnp_imaging.api import build_components

    for value in ("auto", None, 3):
        cfg = resolve_config({"image": "data/cameraman.png", "prior": {"batch_chunk": value}})
        assert cfg.to_dict()["prior"]["batch_chunk"] == value
        assert build_components(cfg, generator=torch.Generator().manual_seed(0)).prior.batch_chunk == value


@pytest.mark.parametrize("sampler", ["skrock", "pnp-kinetic-exp"])
def test_estimates_identical_with_and_without_chunks(sampler, tmp_path):
    """The whole sampling pipeline (chains, statistics, traces) gives the same bits."""
    import pnp_imaging
    from pnp_imaging.imageio import read_image, write_image
    from pnp_imaging.problem import Problem

    write_image(tmp_path / "crop.png", read_image("data/cameraman.png")[..., 100:140, 100:140])
    problem = Problem.from_config({"image": str(tmp_path / "crop.png"),
                                   "operator": {"type": "blur", "kernel": "uniform", "size": 5},
                                   "noise": {"type": "gaussian", "sigma": 0.02}},
                                  generator=torch.Generator().manual_seed(0))
    den = denoisers_zoo.load("lipdncnn_gray_s5").eval()
    posts = []
    for chunk in (None, 1):
        prior = ScorePrior(den, eps=EPS, lipschitz=1.0, batch_chunk=chunk)
        posts.append(pnp_imaging.sample(problem, prior, sampler, generator=torch.Generator().manual_seed(1),
                                        n_steps=12, n_burnin=2, chains=3,
                                        **({"stages": 3} if sampler == "skrock" else {})))
    a, b = posts
    for key in ("mmse", "std", "lower", "upper"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert torch.equal(a.mmse, b.mmse) and not torch.equal(a.mmse, a.mmse.mean().expand_as(a.mmse))


def test_bfloat16_mode_runs_the_network_in_bfloat16_and_returns_the_chains_dtype():
    """bfloat16 keeps 8 significant bits (relative rounding 2^-9 = 2e-3 per operation), so the
    output moves by ~1e-3 on [0, 1] images but not by more than 2e-2; the full mode is untouched."""
    dtype = torch.float32
    den = denoisers_zoo.load("lipdncnn_gray_s5").eval()
    seen = []
    den.net.body[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = _batch(3, 32, dtype)
    full = ScorePrior(den, eps=EPS, lipschitz=1.0).denoise(x)
    reduced = ScorePrior(den, eps=EPS, lipschitz=1.0, precision="bfloat16").denoise(x)
    assert seen == [dtype, torch.bfloat16]
    assert reduced.dtype == dtype and full.dtype == dtype
    gap = float((reduced - full).abs().max())
    assert 1e-5 < gap < 2e-2, gap
    with pytest.raises(ValueError, match="float32 chains"):  # autocast would silently do nothing
        ScorePrior(den.double(), eps=EPS, lipschitz=1.0, precision="bfloat16").denoise(x.double())


def test_bad_precision_is_a_one_line_error():
    with pytest.raises(ValueError, match="precision") as err:
        ScorePrior(lambda x, s: x, eps=EPS, precision="float8")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="prior.precision"):
        resolve_config({"image": "data/cameraman.png", "prior": {"precision": "half"}})
    with pytest.raises(ConfigError, match="float32 chains"):
        resolve_config({"image": "data/cameraman.png", "dtype": "float64", "prior": {"precision": "bfloat16"}})
    assert resolve_config({"image": "data/cameraman.png", "prior": {"precision": "bfloat16"}}).prior.precision == \
        "bfloat16"


def test_reservoir_mcse_by_blocks_equals_one_pass(monkeypatch):
    """The per-pixel MCSE computed by blocks of pixels (bounded float64 copies) gives the same
    numbers as one pass over all pixels, bit for bit (each pixel's figure uses its own series)."""
    from pnp_imaging.diagnostics import mcse_mean_pixels
    from pnp_imaging.stats import DrawReservoir

    g = torch.Generator().manual_seed(5)
    res = DrawReservoir((3, 1, 9, 7), capacity=8, keep_draws=False)
    walk = torch.zeros(3, 1, 9, 7)
    for _ in range(40):  # AR(1) draws: correlated, so the ESS is not trivial
        walk = 0.8 * walk + torch.randn(3, 1, 9, 7, generator=g)
        res.update(walk)
    series = res.means[: res.n_slots].double().numpy().reshape(res.n_slots, 3, -1).transpose(1, 0, 2)
    one_pass = mcse_mean_pixels(series).reshape(1, 9, 7)
    monkeypatch.setattr(DrawReservoir, "MCSE_BLOCK", 10)  # 63 pixels: 7 blocks, the last one ragged
    blocks = res.mcse_mean().numpy()
    assert np.isfinite(one_pass).all() and np.array_equal(blocks, one_pass)


def test_checkpoint_state_shares_the_statistics_and_round_trips(tmp_path):
    """``state_dict(copy=False)`` (what a checkpoint writes) holds no copy of the statistics'
    buffers, and saved/loaded it restores the same estimates as the copying state."""
    from pnp_imaging.stats import PosteriorStats

    g = torch.Generator().manual_seed(2)
    stats = PosteriorStats((2, 1, 6, 5), quantile_every=1)
    for _ in range(30):
        stats.update(torch.randn(2, 1, 6, 5, generator=g))
    shared, copied = stats.state_dict(copy=False), stats.state_dict()
    live = stats.reservoir.means.untyped_storage().data_ptr()
    assert shared["reservoir"]["means"].untyped_storage().data_ptr() == live
    assert copied["reservoir"]["means"].untyped_storage().data_ptr() != live
    assert shared["moments"]["mean"].data_ptr() == stats.moments.mean.data_ptr()
    assert shared["quantiles"]["q"].data_ptr() == stats.quantile_estimator.q.ctypes.data
    torch.save(shared, tmp_path / "s.pt")
    back = PosteriorStats((2, 1, 6, 5), quantile_every=1)
    back.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert back.reservoir.n_slots == stats.reservoir.n_slots > 4
    for name in ("mmse", "std", "mcse_mean"):
        assert torch.equal(getattr(back, name)(), getattr(stats, name)()), name
    assert all(torch.equal(a, b) for a, b in zip(back.credible_interval(), stats.credible_interval()))
