"""Mismatch bounds (``pnp_imaging.mismatch``; ``docs/algorithms.md §mismatch``): the TV bound
against exact TV distances (Gaussian chains in closed form, 2-D Gaussian-mixture chains on a
grid), the MCSE, the config checks and the run wiring."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.special import ndtr

import pnp_imaging
from conftest import DATA, one_line
from pnp_imaging.config import ConfigError
from pnp_imaging.mismatch import bounds_with_mcse, drift_differences, mean_and_mcse, relaxation_horizon, tv_bound
from pnp_imaging.mismatch.bounds import tv_from_kl


def _gauss_tv(dm: float, sd: float) -> float:
    """TV between N(m, sd²) and N(m + dm, sd²)."""
    return float(2.0 * ndtr(abs(dm) / (2.0 * sd)) - 1.0)


def test_tv_from_kl_branches_and_bad_input():
    assert tv_from_kl(0.0) == 0.0
    assert tv_from_kl(0.02) == pytest.approx(0.1)  # Pinsker
    assert tv_from_kl(3.0) == pytest.approx(math.sqrt(1 - math.exp(-3.0)))  # Bretagnolle–Huber < 1 < Pinsker
    with pytest.raises(ValueError) as e:
        tv_from_kl(float("nan"))
    assert "kl" in one_line(e)


def test_one_step_constant_is_sharp():
    """One step from a point: the two laws are N(x + δb^i, 2δ); the bound / exact TV must tend to
    √(π/2) = 1.2533 as the drift gap → 0 (a wrong constant in (δ/8) would miss it)."""
    delta, gap = 0.05, 1e-3
    exact = _gauss_tv(delta * gap, math.sqrt(2 * delta))
    bound = tv_bound(gap ** 2, horizon_time=delta)
    assert bound / exact == pytest.approx(math.sqrt(math.pi / 2), rel=1e-4)


def test_bound_holds_for_linear_gaussian_chains():
    """X_{k+1} = X_k + δ(−a X_k + c_i) + √(2δ) Z (1-D, same start): the laws stay Gaussian with the
    same variance, mean gap g_n = δ(c₁ − c₂) Σ_{j<n} (1 − aδ)^j; E(b¹ − b²)² = (c₁ − c₂)² exactly."""
    delta, a, dc = 0.1, 0.5, 0.3
    var, gap = 0.0, 0.0
    for n in range(1, 301):
        gap = (1 - a * delta) * gap + delta * dc
        var = (1 - a * delta) ** 2 * var + 2 * delta
        exact = _gauss_tv(gap, math.sqrt(var))
        bound = tv_bound(dc ** 2, horizon_time=n * delta)
        assert exact <= bound + 1e-12, n
    assert bound / exact < 20  # at n = 300 the bound is loose (the chains forget) but not absurd


def test_mean_and_mcse_on_ar1():
    """AR(1) with ρ = 0.8: MCSE ≈ sd·√((1 + ρ)/(1 − ρ)/N); τ_int = (1 + ρ)/(1 − ρ) = 9."""
    rng = np.random.default_rng(0)
    rho, chains, n = 0.8, 4, 20000
    x = np.zeros((chains, n))
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho ** 2) * rng.standard_normal(chains)
    mean, mcse, ess = mean_and_mcse(x)
    assert mcse == pytest.approx(math.sqrt(9.0 / (chains * n)), rel=0.15)
    tau, name = relaxation_horizon({"a": x, "b": rng.standard_normal((chains, n))}, n_burnin=0)
    assert name == "a" and tau == pytest.approx(9.0, rel=0.15)
    assert abs(mean) < 4 * mcse


def test_horizon_mcse_tracks_the_spread_of_the_horizon_estimate():
    """AR(1), ρ = 0.8 (τ = 9): over 200 replicate runs of 2 chains × 2000 draws, the mean reported
    MCSE of τ̂ is within [0.6, 1.4]× the replicates' sd of τ̂ (measured 0.83×; the sd itself is
    known to ±5 % from 200 replicates, the band is the estimator's bias from 4 segments)."""
    from pnp_imaging.mismatch import horizon_mcse

    rng = np.random.default_rng(3)
    reps, chains, n, rho = 200, 2, 2000, 0.8
    x = np.zeros((reps, chains, n))
    for t in range(1, n):
        x[:, :, t] = rho * x[:, :, t - 1] + math.sqrt(1 - rho ** 2) * rng.standard_normal((reps, chains))
    taus = np.array([relaxation_horizon({"a": x[r]}, n_burnin=0)[0] for r in range(reps)])
    mcse = np.array([horizon_mcse(x[r], n_burnin=0) for r in range(reps)])
    assert taus.mean() == pytest.approx(9.0, rel=0.1)
    assert 0.6 <= mcse.mean() / taus.std(ddof=1) <= 1.4
    assert math.isnan(horizon_mcse(x[0][:, :10], n_burnin=0))  # halves shorter than 8 draws


def test_bounds_with_mcse_adds_the_horizon_error_in_quadrature():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 1.0, size=(2, 400))
    exact = bounds_with_mcse(values, n_steps=100, step_size=0.001, box=(-1.0, 2.0))
    both = bounds_with_mcse(values, n_steps=100, step_size=0.001, box=(-1.0, 2.0), n_steps_mcse=10.0)
    # Pinsker branch: TV ∝ √(n m), so a relative error r of n gives r/2 of TV (to first order)
    from_horizon = exact["tv_bound"] * (math.sqrt(1.1) - math.sqrt(0.9)) / 2
    assert both["tv_bound_mcse"] == pytest.approx(math.hypot(exact["tv_bound_mcse"], from_horizon), rel=1e-9)
    assert both["horizon_steps_mcse"] == 10.0 and both["mmse_bound_mcse"] == pytest.approx(3 * both["tv_bound_mcse"])


def test_bounds_with_mcse_propagates_the_error():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 1.0, size=(2, 400))
    out = bounds_with_mcse(values, n_steps=10, step_size=0.01, box=(-1.0, 2.0))
    m = values.mean()
    assert out["drift_pseudometric"] == pytest.approx(math.sqrt(m))
    assert out["tv_bound"] == pytest.approx(math.sqrt(0.1 * m / 8))
    assert out["mmse_bound"] == pytest.approx(3.0 * out["tv_bound"])
    rel = out["drift_pseudometric_mcse"] / out["drift_pseudometric"]
    assert out["tv_bound_mcse"] / out["tv_bound"] == pytest.approx(rel, rel=1e-3)  # TV ∝ √m on the Pinsker branch
    assert bounds_with_mcse(values, n_steps=10, step_size=0.01, box=None)["mmse_bound"] is None


def test_drift_differences_with_exact_gaussian_denoisers():
    """D^i(x) = x v_i/(v_i + ε) (prior N(0, v_i)): b¹ − b² = (α/ε)(D¹ − D²) in closed form."""
    from denoisers_zoo.exact import GaussianDenoiser
    from pnp_imaging.priors import ScorePrior

    shape, eps, alpha = (1, 4, 4), 0.01, 0.7
    p1 = ScorePrior(GaussianDenoiser.isotropic(0.0, 0.04, shape), eps=eps, alpha=alpha)
    p2 = ScorePrior(GaussianDenoiser.isotropic(0.0, 0.09, shape), eps=eps, alpha=alpha)
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = drift_differences(x, p1, p2, None, None, batch=4)
    dd = x * (0.04 / 0.05 - 0.09 / 0.10)
    torch.testing.assert_close(out["denoiser_sq"], (dd ** 2).flatten(1).sum(1))
    torch.testing.assert_close(out["drift_sq"], (alpha / eps) ** 2 * (dd ** 2).flatten(1).sum(1))
    assert float(out["drift_map"].sum()) == pytest.approx(float(out["drift_sq"].mean()))


# ------------------------------------------------------------------ 2-D mixture, exact on a grid
def _grid_case(h: float, cs, horizons):
    from gmm_grid import DELTA, Grid, tv

    g = Grid(h)
    k1 = g.kernel(g.drift(g.D))
    pi1 = g.stationary(k1)
    rows = []
    for c in cs:
        dc = g.denoiser_c(c)
        k2 = g.kernel(g.drift(dc))
        db2 = ((0.3 / 0.05) ** 2) * ((g.D - dc) ** 2).sum(1)
        p = pi1.copy()
        for n in range(1, max(horizons) + 1):
            p = g.step(p, k2)
            if n in horizons:
                rows.append((c, n, tv(pi1, p), tv_bound(float(pi1 @ db2), horizon_time=n * DELTA)))
    return rows


def test_gmm_grid_bound_holds_from_the_stationary_law():
    """Chains 1 (exact denoiser) and 2 (D_c) started from π¹ (grid-exact): TV(π¹, π¹P₂ⁿ) ≤ bound."""
    rows = _grid_case(0.2, cs=(-0.5, 0.0, 0.5), horizons=(1, 5, 20))
    for c, n, exact, bound in rows:
        assert exact <= bound, (c, n, exact, bound)
    assert any(b < 1.0 and b / e < 60 for _, _, e, b in rows if e > 1e-4)  # not vacuous everywhere


def test_transport_cost_of_a_translation_is_exact():
    """A law moved by whole cells v: W₁ = |v| and W₂² = |v|² (translation is optimal, and |v| =
    |E X − E Y| ≤ W₁ ≤ W₂), up to the LP solver's tolerance; after coarsening by 2 a shift by
    two cells is a shift by one block, so the same values come back."""
    from gmm_grid import Grid, transport_cost

    g = Grid(0.5)
    rng = np.random.default_rng(0)
    p = np.zeros(g.shape)
    p[2:6, 3:9] = rng.random((4, 6))
    q = np.roll(p, (2, 4), axis=(0, 1))  # v = (2, 4) cells = (1.0, 2.0)
    p, q = p.ravel() / p.sum(), q.ravel() / q.sum()
    v2 = 1.0 ** 2 + 2.0 ** 2
    assert transport_cost(p, q, g.X, 1) == pytest.approx(math.sqrt(v2), rel=1e-7)
    assert transport_cost(p, q, g.X, 2) == pytest.approx(v2, rel=1e-7)
    pc, centres = g.coarsen(p, 2)
    qc, _ = g.coarsen(q, 2)
    assert pc.sum() == pytest.approx(1.0) and transport_cost(pc, qc, centres, 2) == pytest.approx(v2, rel=1e-7)
    assert transport_cost(p, p, g.X, 1) == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------ config and run
def _tiny_image(tmp_path):
    from pnp_imaging.imageio import read_image, write_image

    x = read_image(DATA / "cameraman.png")[..., 100:116, 100:116]
    write_image(tmp_path / "tiny.png", x)
    return str(tmp_path / "tiny.png")


def _cfg(image, **mismatch):
    return {"seed": 0, "image": image, "operator": {"type": "blur", "kernel": "gaussian", "size": 5, "std": 1.0},
            "noise": {"type": "gaussian", "sigma": 0.05}, "prior": {"denoiser": "lipdncnn_gray_s5"},
            "map": {"enabled": False}, "sampler": {"type": "pnp-ula", "n_steps": 40, "n_burnin": 10, "chains": 2},
            "mismatch": mismatch}


@pytest.mark.parametrize("mismatch, key", [
    ({"denoiser": "drunet_rgb"}, "mismatch.denoiser"),           # 3-channel model on a gray image
    ({"operator": {"type": "blur", "kernel": "gaussian", "size": 5, "std": 1.0}, "run_other": "yes"},
     "mismatch.run_other"),
])
def test_bad_mismatch_section_fails_before_sampling(tmp_path, mismatch, key):
    with pytest.raises(ConfigError) as e:
        pnp_imaging.run(_cfg(_tiny_image(tmp_path), **mismatch), out_dir=tmp_path / "out", progress=False)
    assert one_line(e).startswith(key)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_run_fills_the_mismatch_keys_and_report(tmp_path):
    op2 = {"type": "blur", "kernel": "gaussian", "size": 5, "std": 1.5}
    post = pnp_imaging.run(_cfg(_tiny_image(tmp_path), operator=op2, run_other=True, n_states=16),
                           out_dir=tmp_path / "out", progress=False)
    s = post.summary
    for key in ("mismatch_pseudometric", "mismatch_tv_bound", "mismatch_mmse_bound", "mismatch_mmse_distance"):
        assert math.isfinite(s[key]) and key + "_mcse" in s, key
    m = s["mismatch"]
    assert m["bound_applies_to"] == "the two PnP-ULA chains" and m["horizon_steps"] >= 1
    assert 0.0 <= s["mismatch_tv_bound"] <= 1.0 and s["mismatch_mmse_bound"] == pytest.approx(3 * s["mismatch_tv_bound"])
    assert s["mismatch_mmse_distance"] > 0  # the other operator moves the MMSE
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["mismatch_tv_bound"] == s["mismatch_tv_bound"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Model mismatch" in html and "finite-horizon bound" in html and (tmp_path / "out" / "mismatch_map.png").is_file()


def _gmm_sweep(h: float, cs, denoiser_std: float = math.sqrt(0.05)):
    """Per c: pseudometric d(D*, D_c) under π¹ (grid-exact), the prior-L2 distance (200 000 prior
    draws) and the distances between the two stationary laws: TV, between means, W₁, W₂."""
    from gmm_grid import COVS, Grid, exact_denoiser, transport_cost, tv

    g = Grid(h, denoiser_std=denoiser_std)
    pi1 = g.stationary(g.kernel(g.drift(g.D)))
    rng = np.random.default_rng(0)
    z = rng.standard_normal((200_000, 2))
    comp = rng.integers(0, 2, z.shape[0])
    draws = np.where(comp[:, None] == 0, z @ np.linalg.cholesky(COVS[0]).T, z @ np.linalg.cholesky(COVS[1]).T)
    d_draws = exact_denoiser()(torch.from_numpy(draws), denoiser_std).numpy()
    rows = []
    for c in cs:
        dc = g.denoiser_c(c)
        pi2 = g.stationary(g.kernel(g.drift(dc)))
        d_post = math.sqrt(float(pi1 @ ((g.D - dc) ** 2).sum(1)))
        d_prior = math.sqrt(float(np.mean(np.where(draws[:, 0] > c, 0.0, (d_draws ** 2).sum(1)))))
        p1, centres = g.coarsen(pi1, 5)  # W on blocks of 5 × 5 cells (side 0.5): LP size
        p2, _ = g.coarsen(pi2, 5)
        rows.append((c, d_post, d_prior, tv(pi1, pi2), float(np.linalg.norm(pi1 @ g.X - pi2 @ g.X)),
                     transport_cost(p1, p2, centres, 1), math.sqrt(transport_cost(p1, p2, centres, 2))))
    return np.array(rows)


@pytest.mark.slow
def test_gmm_pseudometric_tracks_the_distance_between_chains():
    """Renaud et al. (2024)'s cross-mixture study, c ∈ linspace(−5, 5, 50), exact on a 0.1 grid
    (Wasserstein distances: exact transport LP between the laws summed over 0.5 × 0.5 blocks).
    Measured Pearson over c, posterior-L2 (prior-L2): stationary TV 0.935 (0.898), distance
    between means 0.940 (0.896), W₁ 0.940 (0.896), W₂ 0.937 (0.903), W₂² 0.950 (0.889); the
    notebook reports 0.977 (0.887) for W₂² on 1000 samples with its √ε denoiser. All distances
    saturate (chain 2 in the other arm of the cross) while d keeps growing, which caps Pearson;
    none of TV, W₁, W₂ reaches 0.95, W₂² (not a metric) is at 0.950 for block sides 0.4 to 1.0.
    The relation is monotone (Spearman ≥ 0.97)."""
    from scipy.stats import spearmanr

    r = _gmm_sweep(0.1, np.linspace(-5, 5, 50))
    distances = {"TV": r[:, 3], "mean": r[:, 4], "W1": r[:, 5], "W2": r[:, 6], "W2^2": r[:, 6] ** 2}
    for name, dist in distances.items():
        post, prior = np.corrcoef(r[:, 1], dist)[0, 1], np.corrcoef(r[:, 2], dist)[0, 1]
        rho = spearmanr(r[:, 1], dist).statistic
        print(f"{name}: pearson posterior-L2 {post:.4f}, prior-L2 {prior:.4f}, spearman {rho:.4f}")
        assert post >= 0.92 and post > prior and rho >= 0.95, name
    assert np.corrcoef(r[:, 1], distances["W2^2"])[0, 1] >= 0.945  # measured 0.9499-0.9500


@pytest.mark.slow
def test_gmm_notebook_denoiser_explains_the_published_correlation():
    """The same sweep with the notebook's denoiser, built for noise variance √ε while the drift
    divides by ε (an inconsistent model, kept only to explain the published numbers): W₂² gives
    Pearson 0.977, the notebook's value (measured 0.9773; TV 0.964, W₁ 0.968, W₂ 0.966), so the
    gap to our 0.950 comes from the denoiser, not from the grid or the distance."""
    r = _gmm_sweep(0.1, np.linspace(-5, 5, 50), denoiser_std=0.05 ** 0.25)
    w2_sq = np.corrcoef(r[:, 1], r[:, 6] ** 2)[0, 1]
    print(f"notebook denoiser: pearson W2^2 {w2_sq:.4f}, TV {np.corrcoef(r[:, 1], r[:, 3])[0, 1]:.4f}")
    assert 0.97 <= w2_sq <= 0.985 and w2_sq > np.corrcoef(r[:, 2], r[:, 6] ** 2)[0, 1]


@pytest.mark.slow
def test_gmm_bound_holds_in_every_case():
    """Every c of the sweep and horizons 1..200 (grid h = 0.1), from π¹: the bound holds in 100 %
    of the cases; prints the ratio bound / exact TV where the bound is below 1."""
    rows = _grid_case(0.1, cs=np.linspace(-2, 4, 25), horizons=(1, 2, 5, 10, 20, 50, 100, 200))
    assert all(e <= b for _, _, e, b in rows)
    ratios = [b / e for _, _, e, b in rows if b < 1 and e > 1e-6]
    print(f"{len(rows)} cases, bound < 1 in {len(ratios)}; ratio bound/exact TV: min {min(ratios):.2f}, "
          f"median {np.median(ratios):.1f}, max {max(ratios):.0f}")
    assert len(ratios) >= 10


@pytest.mark.parametrize("n_draws", [5, 37, 1000])
def test_state_reservoir_spreads_its_states_over_a_run_of_any_length(n_draws):
    """A run-until-converged run stops before its planned length: the kept states must still cover
    the whole run evenly (the planned n_kept is not used), between half and all of the capacity."""
    from types import SimpleNamespace

    from pnp_imaging.mismatch.distances import StateReservoir

    res = StateReservoir(n_kept=10_000, chains=2, capacity=16)
    for i in range(n_draws):
        res(i, SimpleNamespace(x=torch.full((2, 1, 1, 1), float(i))))
    idx = res.stacked()[::2].flatten().tolist()
    assert idx[0] == 0 and len(set(idx[k + 1] - idx[k] for k in range(len(idx) - 1))) <= 1  # evenly spaced
    assert min(n_draws, 4) <= len(idx) <= 8 and n_draws - 1 - idx[-1] < max(1, res.every)
