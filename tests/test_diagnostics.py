"""Diagnostics against ArviZ on the same arrays, plus NaN / degenerate / bad-chain cases."""
from __future__ import annotations

import logging
import math
import warnings
import zlib

import numpy as np
import pytest

from pnp_imaging import diagnostics as dg

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    az = pytest.importorskip("arviz")

logging.getLogger("arviz").setLevel(logging.ERROR)
RTOL = 1e-6


def _ar1(rng, n_chain, n_draw, rho, shift=None):
    x = np.zeros((n_chain, n_draw))
    z = rng.standard_normal((n_chain, n_draw))
    for t in range(1, n_draw):
        x[:, t] = rho * x[:, t - 1] + np.sqrt(1 - rho**2) * z[:, t]
    if shift is not None:
        x += np.asarray(shift)[:, None]
    return x


CASES = {
    "iid": lambda rng: rng.standard_normal((4, 500)),
    "ar1_0.9": lambda rng: _ar1(rng, 4, 1000, 0.9),
    "ar1_0.99_odd": lambda rng: _ar1(rng, 3, 777, 0.99),
    "antithetic": lambda rng: _ar1(rng, 2, 400, -0.6),
    "skewed": lambda rng: np.exp(_ar1(rng, 4, 600, 0.7)),
    "bad_chains": lambda rng: _ar1(rng, 4, 500, 0.5, shift=[0.0, 0.0, 3.0, -3.0]),
    "trend": lambda rng: rng.standard_normal((2, 400)) + np.linspace(0, 5, 400)[None],
    "one_chain": lambda rng: _ar1(rng, 1, 800, 0.8),
    "ties": lambda rng: np.round(_ar1(rng, 4, 300, 0.5), 1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_arviz(case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    x = CASES[case](rng)
    assert dg.ess(x, method="bulk") == pytest.approx(float(az.ess(x, method="bulk")), rel=RTOL)
    assert dg.ess(x, method="tail") == pytest.approx(float(az.ess(x, method="tail")), rel=RTOL)
    assert dg.ess(x, method="mean") == pytest.approx(float(az.ess(x, method="mean")), rel=RTOL)
    assert dg.mcse_mean(x) == pytest.approx(float(np.ravel(az.mcse(x, method="mean"))[0]), rel=RTOL)
    if x.shape[0] >= 2:  # ArviZ returns NaN for one chain; we compute split-R-hat there
        assert dg.rhat(x) == pytest.approx(float(az.rhat(x, method="rank")), rel=RTOL)
        assert dg.rhat(x, method="split") == pytest.approx(float(az.rhat(x, method="split")), rel=RTOL)
        assert dg.rhat(x, method="identity") == pytest.approx(
            float(az.rhat(x, method="identity")), rel=RTOL
        )


def test_autocorrelation_matches_direct_and_arviz():
    rng = np.random.default_rng(1)
    x = _ar1(rng, 1, 3000, 0.8)[0]
    ac = dg.autocorrelation(x)
    xc = x - x.mean()
    direct = np.array([np.sum(xc[: len(x) - k] * xc[k:]) for k in range(20)]) / np.sum(xc * xc)
    np.testing.assert_allclose(ac[:20], direct, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ac, az.autocorr(x), rtol=1e-10, atol=1e-12)
    assert ac[0] == 1.0 and abs(ac[1] - 0.8) < 0.05


def test_good_and_bad_verdicts():
    rng = np.random.default_rng(2)
    good = rng.standard_normal((4, 1000))
    bad = _ar1(rng, 4, 1000, 0.5, shift=[0.0, 0.0, 4.0, 4.0])
    slow = _ar1(rng, 4, 1000, 0.999)
    s = dg.summarize({"good": good, "bad": bad, "slow": slow})
    assert s["good"]["rhat"] < 1.01 and s["good"]["ess_bulk"] > 2000
    assert s["bad"]["rhat"] > 1.5
    assert s["slow"]["ess_bulk"] < 100
    msgs = dg.verdicts(s)
    assert not any(m.startswith("good") for m in msgs)
    assert any(m.startswith("bad") and "R-hat" in m for m in msgs)
    assert any(m.startswith("slow") and "effective sample size" in m for m in msgs)
    table = dg.format_summary(s)
    assert "good" in table and "ess_bulk" in table


def test_nan_and_degenerate_contract():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 100))
    x[1, 50] = np.nan
    assert math.isnan(dg.ess(x)) and math.isnan(dg.rhat(x)) and math.isnan(dg.mcse_mean(x))
    short = rng.standard_normal((2, 3))
    assert math.isnan(dg.ess(short)) and math.isnan(dg.rhat(short))
    const = np.ones((3, 50))
    assert dg.ess(const) == 150.0 and dg.ess(const) == float(az.ess(const))
    assert math.isnan(dg.rhat(const))
    msgs = dg.verdicts(dg.summarize({"c": const, "n": x}))
    assert any(m.startswith("c:") and "constant" in m for m in msgs)
    assert any(m.startswith("n:") and "could not be computed" in m for m in msgs)


def test_vectorised_trailing_dims_and_bad_method():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 200, 2, 5))
    e = dg.ess(x)
    assert e.shape == (2, 5)
    assert e[1, 3] == pytest.approx(dg.ess(x[:, :, 1, 3]))
    assert dg.rhat(x).shape == (2, 5)
    with pytest.raises(ValueError, match="method must be one of"):
        dg.ess(x, method="nope")
    with pytest.raises(ValueError, match="method must be one of"):
        dg.rhat(x, method="bulk")


def test_image_range_flags_only_real_excursions_and_locates_them():
    """Posterior-noise-sized excursions pass; a striped patch at the box edge is flagged with its
    rows/cols (the tripod-leg failure seen on cameraman 256²)."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = (0.5 + 0.02 * torch.randn(2, 1, 64, 64, generator=g)).clamp_(0, 1)
    x[0, 0, 0, 0] = 1.3  # one stray pixel: 1/8192 < 2e-3
    ok = dg.image_range(x)
    assert ok["warning"] is None and ok["n_pixels"] == 1 and ok["rows"] == [0, 0]
    stripes = torch.tensor([-1.0, 2.0]).repeat(8)  # 16 alternating values
    x[1, 0, 40:50, 10:26] = stripes  # 160 pixels of 8192: 2 %
    bad = dg.image_range(x)
    assert bad["n_pixels"] == 161 and abs(bad["fraction"] - 161 / 8192) < 1e-12
    assert bad["rows"] == [0, 49] and bad["cols"] == [0, 25]
    assert bad["warning"].startswith("image range: 1.97% of the chains' pixels are outside [-0.1, 1.1] (rows 0-49, cols 0-25)")


def test_ess_and_mcse_per_pixel_equal_the_scalar_functions():
    """The vectorised per-pixel ESS / MCSE (used for the MMSE's MCSE map) give the scalar
    ``ess(method="mean")`` / ``mcse_mean`` of every column to round-off: AR(1) columns with
    phi in (-0.9, 0.99), a constant column, a column whose chains disagree, short and odd chains."""
    from pnp_imaging.diagnostics import ess, ess_mean_pixels, mcse_mean, mcse_mean_pixels

    rng = np.random.default_rng(0)
    for chains, n in ((1, 5), (2, 7), (2, 50), (4, 301), (2, 1000)):
        d = 40
        phi = rng.uniform(-0.9, 0.99, d)
        a = np.zeros((chains, n, d))
        a[:, 0] = rng.standard_normal((chains, d))
        for t in range(1, n):
            a[:, t] = phi * a[:, t - 1] + rng.standard_normal((chains, d))
        a[:, :, 0] = 3.0
        a[:, :, 1] += 2.0 * np.arange(chains)[:, None]
        ref = np.array([ess(a[..., j], method="mean") for j in range(d)])
        np.testing.assert_allclose(ess_mean_pixels(a), ref, rtol=1e-10)
        ref_m = np.array([mcse_mean(a[..., j]) for j in range(d)])
        np.testing.assert_allclose(mcse_mean_pixels(a)[1:], ref_m[1:], rtol=1e-10)
    a[0, 3, 5] = np.nan
    assert np.isnan(ess_mean_pixels(a)[5]) and np.isfinite(ess_mean_pixels(a)[4])
    assert np.isnan(ess_mean_pixels(a[:, :3])).all()
    with pytest.raises(ValueError, match="chain, draw, d"):
        ess_mean_pixels(a[0])
