"""Speciation and collapse times (pnp_imaging.analyses.regimes) against closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pnp_imaging.analyses.regimes import (
    collapse_time,
    excess_entropy_curve,
    gaussian_mixture_collapse_time,
    load_dataset,
    speciation_time,
    top_covariance_eigenvalue,
)


def two_gaussians(n: int, d: int, seed: int) -> np.ndarray:
    """½N(m, I) + ½N(-m, I), m = (1, ..., 1): the paper's mixture with mu~ = sigma = 1."""
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n, 1))
    return signs * np.ones(d) + rng.standard_normal((n, d))


def test_speciation_time_on_gaussian_data_with_known_spectrum():
    # covariance diag(20, 1, ..., 1) in d = 50: t_S = ½ log 20 = 1.498. With n = 5000 the top sample
    # eigenvalue has relative std sqrt(2/n) = 2% -> t_S error ~ 0.01/1.5 < 1%, well inside 2%.
    rng = np.random.default_rng(0)
    scales = np.ones(50)
    scales[7] = math.sqrt(20.0)
    x = rng.standard_normal((5000, 50)) * scales + 3.0  # an offset: the covariance is centred
    out = speciation_time(x)
    assert abs(out["t_S"] - 0.5 * math.log(20.0)) < 0.02 * 0.5 * math.log(20.0)
    assert out["t_S"] == pytest.approx(0.5 * math.log(out["Lambda"]))
    assert (out["n"], out["d"]) == (5000, 50)


def test_speciation_time_scales_as_documented():
    x = two_gaussians(300, 16, seed=1)
    assert speciation_time(2.0 * x)["t_S"] == pytest.approx(speciation_time(x)["t_S"] + math.log(2.0))


def test_two_gaussian_mixture_figures():
    """d = 64, n = 1000: Lambda = d + 1 = 65 (t_S = 2.09); f^e/alpha ~ 0 in the memorised regime,
    ~ 1 at large t, and the collapse time between 0.5 and 0.95 (theory 0.82)."""
    x = two_gaussians(1000, 64, seed=0)
    s = speciation_time(x)
    assert abs(s["Lambda"] - 65.0) < 4.0  # sample top eigenvalue: std ~ 65 sqrt(2/1000) = 2.9
    assert abs(s["t_S"] - 2.09) < 0.04
    g = torch.Generator().manual_seed(0)
    times = np.array([0.3, 0.65, 1.0, 3.0, 4.0])
    ratio = excess_entropy_curve(x, times, n_samples=1000, generator=g) / (math.log(1000) / 64)
    assert ratio[0] < 0.01 and ratio[1] < 0.06
    assert 0.2 < ratio[2] < 0.45  # theory 0.33
    assert ratio[3] > 0.95 and ratio[4] > 0.97  # -> 1 (theory 1 - O(e^{-2t}))
    c = collapse_time(x, times=np.linspace(0.05, 2.0, 40), generator=g)
    assert 0.5 < c["t_C"] < 0.95 and not c["censored"]
    assert c["alpha"] == pytest.approx(math.log(1000) / 64)


def test_collapse_time_follows_the_formula_in_n_and_d():
    """t_C = ½ log(1 + sigma²/(n^{2/d} - 1)) is the large-d limit; at these finite d the 5%-threshold
    estimate sits 15-25% below it (measured: 0.77-0.85 of it, the finite-d excess entropy rises
    before the limit's kink), so each estimate must lie in [0.65, 1.0] x theory, and the estimates
    must move with n and d as the formula does (later for larger d, earlier for larger n)."""
    cases = [(100, 64), (1000, 64), (1000, 32), (1000, 128)]
    est = {}
    for n, d in cases:
        out = collapse_time(two_gaussians(n, d, seed=2), times=np.linspace(0.05, 2.0, 40),
                            n_samples=500, generator=torch.Generator().manual_seed(3))
        theory = gaussian_mixture_collapse_time(n, d)
        est[n, d] = out["t_C"]
        assert 0.65 * theory < out["t_C"] < theory, (n, d, out["t_C"], theory)
    assert est[1000, 32] < est[1000, 64] < est[1000, 128]
    assert est[1000, 64] < est[100, 64]


def test_gaussian_mixture_collapse_formula_values():
    # the paper's GM collapse setups (n = 20,000; d = 256, 1024, 4096): 1.30, 1.98, 2.67
    got = [gaussian_mixture_collapse_time(20_000, d) for d in (256, 1024, 4096)]
    assert np.allclose(got, [1.30, 1.98, 2.67], atol=0.006)


def test_load_dataset_layouts_and_folder(tmp_path):
    from pnp_imaging.imageio import write_image

    arr = np.random.default_rng(0).random((5, 2, 4, 3))
    for shape in [(5, 24), (5, 8, 3), (5, 2, 4, 3)]:
        np.save(tmp_path / "a.npy", arr.reshape(shape))
        got = load_dataset(tmp_path / "a.npy")
        assert got.shape == (5, 24) and got.dtype == np.float64
        assert np.allclose(got, arr.reshape(5, 24))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"{i}.png", torch.full((1, 1, 6, 5), i / 4))
    got = load_dataset(folder)
    assert got.shape == (3, 30) and np.allclose(got[:, 0], [0, 0.25, 0.5], atol=1 / 255)


def test_bad_inputs_give_one_line_errors(tmp_path):
    cases = []
    np.save(tmp_path / "vec.npy", np.ones(7))
    np.save(tmp_path / "one.npy", np.ones((1, 7)))
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan], [1.0, 2.0]]))
    for name, exc, words in [("vec.npy", ValueError, "shape"), ("one.npy", ValueError, "at least 2"),
                             ("nan.npy", ValueError, "NaN"), ("missing.npy", FileNotFoundError, "does not exist")]:
        with pytest.raises(exc, match=words) as info:
            load_dataset(tmp_path / name)
        cases.append(str(info.value))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="identical"):
        speciation_time(np.ones((4, 3)))
    with pytest.raises(ValueError, match="times"):
        excess_entropy_curve(np.eye(3), [0.0, 1.0])
    with pytest.raises(ValueError, match="threshold"):
        collapse_time(np.eye(3), threshold=1.5)
    assert all("\n" not in c for c in cases)
    assert top_covariance_eigenvalue(np.array([[0.0], [2.0]])) == pytest.approx(2.0)
