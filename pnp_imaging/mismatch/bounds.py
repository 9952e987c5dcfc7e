r"""Computable mismatch bounds: pure functions of numbers (``docs/algorithms.md §mismatch``).

Two PnP-ULA chains with the same step δ and the same start,

    X¹_{k+1} ~ N(X¹_k + δ b¹(X¹_k), 2δ I),     X²_{k+1} ~ N(X²_k + δ b²(X²_k), 2δ I),

have path laws whose KL divergence is, by the chain rule (one Gaussian KL per step,
``KL(N(m¹, 2δI) ‖ N(m², 2δI)) = ‖m¹ − m²‖²/(4δ)`` with ``m¹ − m² = δ(b¹ − b²)``),

    KL(path¹_n ‖ path²_n) = (δ/4) Σ_{k<n} E ‖b¹(X¹_k) − b²(X¹_k)‖².

The laws after ``n`` steps are images of the paths, so the data-processing inequality and
Pinsker's (``TV ≤ √(KL/2)``) and the Bretagnolle–Huber (``TV ≤ √(1 − e^{−KL})``) inequalities give

    TV(law¹_n, law²_n) ≤ min(1, √(KL/2), √(1 − e^{−KL})),   KL ≤ (T/4) m,   T = nδ,

where ``m`` is the mean of ``‖b¹ − b²‖²`` along chain 1. Started from chain 1's stationary law
π¹ (so that every ``X¹_k ~ π¹``), ``m = E_{π¹}‖b¹ − b²‖²``, the square of the *drift
pseudometric*. For a function ``f`` with values in ``[lo, hi]`` (a pixel clipped to the box C),
``|E¹f − E²f| ≤ (hi − lo) · TV`` (centre ``f`` at ``(lo + hi)/2`` before ``|∫g d(μ−ν)| ≤ 2 sup|g| TV``).
The same formula with ``T`` the time horizon bounds the two Langevin diffusions (Girsanov).
"""
from __future__ import annotations

import math

import numpy as np

from pnp_imaging import diagnostics

__all__ = ["tv_from_kl", "tv_bound", "mmse_bound", "mean_and_mcse", "relaxation_horizon", "horizon_mcse",
           "bounds_with_mcse"]


def tv_from_kl(kl: float) -> float:
    """Best of Pinsker ``√(KL/2)``, Bretagnolle–Huber ``√(1 − e^{−KL})`` and the trivial 1.

    >>> round(tv_from_kl(0.02), 4), tv_from_kl(50.0) < 1.0
    (0.1, True)
    """
    kl = float(kl)
    if not kl >= 0.0:
        raise ValueError(f"kl: must be a number >= 0, got {kl!r}")
    return min(1.0, math.sqrt(kl / 2.0), math.sqrt(-math.expm1(-kl)))


def tv_bound(drift_sq_mean: float, *, horizon_time: float) -> float:
    r"""``TV ≤ tv_from_kl((T/4) · E‖b¹ − b²‖²)`` for the laws after time ``T = nδ`` (module docstring).

    >>> tv_bound(8.0, horizon_time=0.1)  # KL = 0.2: Pinsker gives sqrt(0.1)
    0.31622776601683794
    """
    if not (drift_sq_mean >= 0.0 and horizon_time >= 0.0):
        raise ValueError(f"tv_bound: drift_sq_mean and horizon_time must be >= 0, got {drift_sq_mean}, {horizon_time}")
    return tv_from_kl(horizon_time * drift_sq_mean / 4.0)


def mmse_bound(tv: float, box: tuple[float, float] | None) -> float | None:
    """``|E¹f − E²f| ≤ (hi − lo) · TV`` for ``f`` valued in the box ``[lo, hi]`` (None without a box)."""
    if box is None:
        return None
    lo, hi = (float(v) for v in box)
    return (hi - lo) * float(tv)


def mean_and_mcse(values) -> tuple[float, float, float]:
    """``(mean, mcse, ess)`` of a ``(chain, draw)`` array of autocorrelated values
    (``diagnostics.ess(method="mean")``; MCSE = sd/√ESS). NaN MCSE with fewer than 4 draws."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"values: expected (chain, draw), got shape {a.shape}")
    mean = float(a.mean())
    if a.shape[1] < 4:
        return mean, math.nan, math.nan
    return mean, float(diagnostics.mcse_mean(a)), float(diagnostics.ess(a, method="mean"))


def relaxation_horizon(traces: dict[str, np.ndarray], n_burnin: int) -> tuple[float, str]:
    """Integrated autocorrelation time, in iterations, of the slowest traced quantity after
    burn-in: ``τ = chains · draws / ESS_mean`` (max over traces; ``slow`` is the slowest
    direction, ``docs/algorithms.md §traces``). Returns ``(τ, trace name)``; ``(nan, "")`` if none."""
    best, name = math.nan, ""
    for key, tr in traces.items():
        a = np.asarray(tr, dtype=np.float64)[:, n_burnin:]
        if a.ndim != 2 or a.shape[1] < 4 or not np.all(np.isfinite(a)):
            continue
        tau = a.size / float(diagnostics.ess(a, method="mean"))
        if math.isfinite(tau) and not tau <= best:
            best, name = tau, key
    return best, name


def horizon_mcse(trace, n_burnin: int) -> float:
    """Monte Carlo standard error of the horizon ``τ = chains · draws / ESS_mean`` of one trace
    ``(chain, draw)``, from the spread of ``τ`` estimated on each half of each chain (batch
    means over ``2·chains`` segments): ``MCSE ≈ sd(τ_segment)/√segments``, since the variance of
    an autocorrelation-time estimate falls like 1/length (Sokal 1997, eq. (3.19)). A rough
    figure with few chains (4 segments for 2 chains): on AR(1) draws (τ = 9, 2 chains × 2000) it
    averaged 0.83× the true sd of τ̂ over 200 replicates (median 0.64×; ``tests/test_mismatch.py``).
    NaN when a segment is too short (< 8 draws)."""
    a = np.asarray(trace, dtype=np.float64)[:, n_burnin:]
    half = a.shape[1] // 2 if a.ndim == 2 else 0
    if half < 8 or not np.all(np.isfinite(a)):
        return math.nan
    taus = [half / float(diagnostics.ess(seg[None, :], method="mean"))
            for chain in a for seg in (chain[:half], chain[half:2 * half])]
    taus = np.asarray(taus)
    if not np.all(np.isfinite(taus)):
        return math.nan
    return float(taus.std(ddof=1) / math.sqrt(taus.size))


def bounds_with_mcse(drift_sq, *, n_steps: float, step_size: float, box,
                     n_steps_mcse: float = 0.0) -> dict[str, float | None]:
    """All bound figures from per-state ``‖b¹ − b²‖²`` values ``(chain, draw)`` of chain 1.

    MCSEs from the ESS of the values (``m`` = their mean): the pseudometric ``√m`` has MCSE
    ``mcse_m/(2√m)`` (delta method); the TV and MMSE bounds carry ``m ± mcse_m`` and the horizon
    ``n_steps ± n_steps_mcse`` (:func:`horizon_mcse`) through the bound (half the spread of
    each) and add the two in quadrature (independent estimates: the states' drift gap and the
    trace's autocorrelation). ``n_steps_mcse = 0`` takes the horizon as exact.
    """
    m, mcse_m, ess_m = mean_and_mcse(drift_sq)
    t = float(n_steps) * float(step_size)
    d = math.sqrt(m)
    d_mcse = mcse_m / (2.0 * d) if d > 0 else (0.0 if mcse_m == 0 else math.nan)
    tv = tv_bound(m, horizon_time=t)
    tv_mcse = math.hypot(_half_spread(lambda e: tv_bound(max(m + e, 0.0), horizon_time=t), mcse_m),
                         _half_spread(lambda e: tv_bound(m, horizon_time=max(t + e * float(step_size), 0.0)),
                                      float(n_steps_mcse)))
    mmse = mmse_bound(tv, box)
    return {"drift_pseudometric": d, "drift_pseudometric_mcse": d_mcse, "ess": ess_m, "horizon_steps": float(n_steps),
            "horizon_steps_mcse": float(n_steps_mcse), "horizon_time": t, "kl_bound": t * m / 4.0,
            "tv_bound": tv, "tv_bound_mcse": tv_mcse,
            "mmse_bound": mmse, "mmse_bound_mcse": mmse_bound(tv_mcse, box) if mmse is not None else None}


def _half_spread(f, err: float) -> float:
    """``(f(+err) − f(−err))/2`` (absolute value): the error ``err`` of an input carried through ``f``;
    NaN when ``err`` is NaN or negative."""
    if not err >= 0.0:
        return math.nan
    return abs(f(err) - f(-err)) / 2.0
