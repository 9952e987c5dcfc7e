"""MCMC convergence diagnostics: pure functions on numpy arrays of shape ``(chain, draw)``.

Follows Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding, and
localization: an improved R-hat for assessing convergence of MCMC", Bayesian Analysis 16(2),
and matches ArviZ (``arviz.ess``, ``arviz.rhat``, ``arviz.mcse``) to floating-point accuracy
(tested in ``tests/test_diagnostics.py``).

Input contract (all functions):

- ``x`` is array-like of shape ``(chain, draw)``; a 1-D array is one chain. Extra trailing
  dimensions ``(chain, draw, *shape)`` are allowed and give results of shape ``shape``.
- **NaN contract:** if any value of a variable is NaN (or ±Inf), its result is NaN. Too few
  draws (fewer than 4 per chain) also give NaN. Split R-hat is computed for a single chain too
  (its two halves; ArviZ returns NaN there); ``rhat(method="identity")`` needs 2 chains.
- A **constant** variable (max − min below float resolution) has ESS = ``chain*draw`` (as
  ArviZ) and R-hat = NaN (0/0 variance ratio); it is reported as such, never as converged.
- Odd numbers of draws: the split halves are the first and last ``draw//2`` draws (the middle
  draw is dropped), as ArviZ.

Printing is separate: :func:`summarize` returns a dict, :func:`verdicts` plain-language
warnings, :func:`format_summary` a text table.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

__all__ = [
    "autocovariance",
    "autocorrelation",
    "split_chains",
    "rank_normalize",
    "ess",
    "rhat",
    "mcse_mean",
    "ess_mean_pixels",
    "mcse_mean_pixels",
    "summarize",
    "verdicts",
    "quantity_verdict",
    "MIN_ESS",
    "MAX_RHAT",
    "format_summary",
    "image_range",
    "ESS_METHODS",
    "RHAT_METHODS",
]

ESS_METHODS = frozenset({"bulk", "tail", "mean", "identity"})
RHAT_METHODS = frozenset({"rank", "split", "identity"})
_MIN_DRAWS = 4


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _as_chains(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        raise ValueError("x must have shape (chain, draw) or (draw,); got a scalar")
    if a.ndim == 1:
        a = a[None, :]
    return a


def _vectorize(fn, a: np.ndarray, **kw):
    """Apply ``fn`` (taking a 2-D (chain, draw) array) over trailing dimensions."""
    if a.ndim == 2:
        return fn(a, **kw)
    rest = a.shape[2:]
    flat = a.reshape(a.shape[0], a.shape[1], -1)
    out = np.array([fn(flat[:, :, i], **kw) for i in range(flat.shape[2])], dtype=np.float64)
    return out.reshape(rest)


def _invalid(a: np.ndarray, min_chains: int = 1) -> bool:
    return (
        (not np.all(np.isfinite(a)))
        or a.shape[1] < _MIN_DRAWS
        or a.shape[0] < min_chains
    )


def autocovariance(x, axis: int = -1) -> np.ndarray:
    """Biased (``1/n``) autocovariance at every lag along ``axis``, by zero-padded FFT."""
    from scipy.fft import next_fast_len  # lazy: keeps `import pnp_imaging.samplers` light

    a = np.asarray(x, dtype=np.float64)
    axis = axis % a.ndim
    n = a.shape[axis]
    m = next_fast_len(2 * n)
    a = a - a.mean(axis=axis, keepdims=True)
    f = np.fft.rfft(a, n=m, axis=axis)
    f *= np.conjugate(f)
    cov = np.fft.irfft(f, n=m, axis=axis)
    cov = np.take(cov, np.arange(n), axis=axis)
    return cov / n


def autocorrelation(x, axis: int = -1) -> np.ndarray:
    """Autocorrelation at every lag along ``axis`` (FFT); NaN for a constant series."""
    cov = autocovariance(x, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.take(cov, [0], axis=axis % cov.ndim)


def split_chains(x) -> np.ndarray:
    """Split each chain into its first and last ``draw//2`` draws: ``(2*chain, draw//2)``."""
    a = _as_chains(x)
    half = a.shape[1] // 2
    return np.concatenate([a[:, :half], a[:, a.shape[1] - half :]], axis=0)


def rank_normalize(x) -> np.ndarray:
    """Normal scores of the pooled ranks (average ties), Blom offset 3/8 (Vehtari et al. 2021)."""
    from scipy import special, stats  # lazy import

    a = np.asarray(x, dtype=np.float64)
    r = stats.rankdata(a, method="average", axis=None).reshape(a.shape)
    return special.ndtri((r - 0.375) / (a.size + 0.25))


# --------------------------------------------------------------------------------------------
# ESS
# --------------------------------------------------------------------------------------------
def _ess_raw(a: np.ndarray) -> float:
    """Multi-chain ESS of a 2-D array (Geyer initial positive + monotone sequence)."""
    if not np.all(np.isfinite(a)):
        return math.nan
    if (np.max(a) - np.min(a)) < np.finfo(np.float64).resolution:
        return float(a.size)
    n_chain, n_draw = a.shape
    acov = autocovariance(a, axis=1)
    chain_mean = a.mean(axis=1)
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(chain_mean, ddof=1)

    rho = np.zeros(n_draw)
    rho_even = 1.0
    rho[0] = rho_even
    rho_odd = 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[1] = rho_odd
    t = 1
    while t < (n_draw - 3) and (rho_even + rho_odd) > 0.0:
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if (rho_even + rho_odd) >= 0:
            rho[t + 1] = rho_even
            rho[t + 2] = rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    # initial monotone sequence
    t = 1
    while t <= max_t - 2:
        if (rho[t + 1] + rho[t + 2]) > (rho[t - 1] + rho[t]):
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
            rho[t + 2] = rho[t + 1]
        t += 2
    n_total = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1 : max_t + 2])
    tau = max(tau, 1.0 / np.log10(n_total))
    if np.isnan(rho).any():
        return math.nan
    return float(n_total / tau)


def _ess_2d(a: np.ndarray, method: str, prob) -> float:
    if _invalid(a):
        return math.nan
    if method == "bulk":
        return _ess_raw(rank_normalize(split_chains(a)))
    if method == "mean":
        return _ess_raw(split_chains(a))
    if method == "identity":
        return _ess_raw(a)
    # tail: min of the quantile ESS at prob and 1 - prob (indicator I(x <= q))
    lo, hi = prob
    out = []
    for p in (lo, hi):
        q = np.quantile(a, p)
        out.append(_ess_raw(split_chains((a <= q).astype(np.float64))))
    return float(min(out))


def ess(x, *, method: str = "bulk", prob: float | tuple[float, float] | None = None) -> float | np.ndarray:
    """Effective sample size of ``x`` ``(chain, draw[, *shape])``.

    ``method``: ``"bulk"`` (rank-normalised split-chain ESS, Vehtari et al. 2021),
    ``"tail"`` (min of the ESS of the indicators ``x <= q_p`` for ``p`` = 0.05 and 0.95, or
    ``prob`` / ``1-prob``), ``"mean"`` (split-chain ESS of the raw values, the one behind the MCSE
    of the mean) or ``"identity"`` (no split, no ranks). Geyer's initial monotone sequence
    truncates the autocorrelation sum; ``tau >= 1/log10(N)`` caps ESS at ``N log10 N``.
    See the module docstring for the NaN / constant-input contract.
    """
    if method not in ESS_METHODS:
        raise ValueError(f"method must be one of {sorted(ESS_METHODS)}, got {method!r}")
    if prob is None:
        prob = (0.05, 0.95)
    elif not isinstance(prob, (tuple, list)):
        prob = (float(prob), 1.0 - float(prob))
    return _vectorize(_ess_2d, _as_chains(x), method=method, prob=tuple(prob))


# --------------------------------------------------------------------------------------------
# R-hat
# --------------------------------------------------------------------------------------------
def _rhat_raw(a: np.ndarray) -> float:
    n = a.shape[1]
    chain_mean = a.mean(axis=1)
    within = np.mean(np.var(a, axis=1, ddof=1))
    between = n * np.var(chain_mean, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sqrt((between / within + n - 1) / n))


def _rhat_2d(a: np.ndarray, method: str) -> float:
    if _invalid(a):
        return math.nan
    if method == "identity":
        if a.shape[0] < 2:
            return math.nan
        return _rhat_raw(a)
    s = split_chains(a)
    if method == "split":
        return _rhat_raw(s)
    bulk = _rhat_raw(rank_normalize(s))
    folded = np.abs(s - np.median(s))
    tail = _rhat_raw(rank_normalize(folded))
    return float(max(bulk, tail))


def rhat(x, *, method: str = "rank") -> float | np.ndarray:
    """Potential scale reduction of ``x`` ``(chain, draw[, *shape])``.

    ``method="rank"`` (default): max of the rank-normalised split-R-hat of the values and of
    the values folded about the median (Vehtari et al. 2021); ``"split"``: classic split-R-hat;
    ``"identity"``: the original Gelman-Rubin statistic (needs >= 2 chains). Values close to 1
    (< 1.01) are necessary, not sufficient, for convergence. NaN contract: module docstring.
    """
    if method not in RHAT_METHODS:
        raise ValueError(f"method must be one of {sorted(RHAT_METHODS)}, got {method!r}")
    return _vectorize(_rhat_2d, _as_chains(x), method=method)


# --------------------------------------------------------------------------------------------
# MCSE
# --------------------------------------------------------------------------------------------
def _mcse_mean_2d(a: np.ndarray) -> float:
    if _invalid(a):
        return math.nan
    e = _ess_2d(a, "mean", None)
    return float(np.std(a, ddof=1) / np.sqrt(e))


def mcse_mean(x) -> float | np.ndarray:
    """Monte Carlo standard error of the mean: ``sd(x) / sqrt(ESS_mean)`` (as ``arviz.mcse``)."""
    return _vectorize(_mcse_mean_2d, _as_chains(x))


# --------------------------------------------------------------------------------------------
# many variables at once (per-pixel MCSE)
# --------------------------------------------------------------------------------------------
def _geyer_pairs(rho_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Geyer's initial positive sequence, vectorised over the last axis: ``rho_t`` ``(lag, d)``
    are the multi-chain autocorrelations of :func:`_ess_raw`. Returns ``(rho, max_t)``, the
    truncated sequence and the last lag kept, exactly as the scalar loop of :func:`_ess_raw`."""
    n_draw, d = rho_t.shape
    rho = np.zeros_like(rho_t)
    rho[0], rho[1] = 1.0, rho_t[1]
    prev_sum, last_even = 1.0 + rho_t[1], np.ones(d)
    active, t_end = np.ones(d, dtype=bool), np.ones(d, dtype=np.int64)
    t = 1
    while t < n_draw - 3:
        active &= prev_sum > 0.0
        if not active.any():
            break
        even, odd = rho_t[t + 1], rho_t[t + 2]
        keep = active & (even + odd >= 0.0)
        rho[t + 1], rho[t + 2] = np.where(keep, even, 0.0), np.where(keep, odd, 0.0)
        t_end, last_even = np.where(active, t + 2, t_end), np.where(active, even, last_even)
        prev_sum = np.where(active, even + odd, prev_sum)
        t += 2
    max_t = t_end - 2
    cols = np.arange(d)
    rho[max_t + 1, cols] = np.where(last_even > 0, last_even, rho[max_t + 1, cols])
    return rho, max_t


def _ess_raw_pixels(a: np.ndarray) -> np.ndarray:
    """:func:`_ess_raw` for every column of ``a`` ``(chain, draw, d)`` at once (finite input)."""
    n_chain, n_draw, d = a.shape
    acov = autocovariance(a, axis=1)
    mean_var = acov[:, 0].mean(0) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus = var_plus + a.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho, max_t = _geyer_pairs(1.0 - (mean_var - acov.mean(0)) / var_plus)
    t = 1
    while t <= max_t.max() - 2:  # initial monotone sequence
        pair, prev = rho[t + 1] + rho[t + 2], (rho[t - 1] + rho[t]) / 2.0
        fix = (t <= max_t - 2) & (pair > 2.0 * prev)
        rho[t + 1], rho[t + 2] = np.where(fix, prev, rho[t + 1]), np.where(fix, prev, rho[t + 2])
        t += 2
    cols = np.arange(d)
    csum = np.concatenate([np.zeros((1, d)), np.cumsum(rho, axis=0)])
    tail = np.where(max_t + 1 < n_draw, rho[np.minimum(max_t + 1, n_draw - 1), cols], 0.0)
    n_total = n_chain * n_draw
    tau = np.maximum(-1.0 + 2.0 * csum[max_t + 1, cols] + tail, 1.0 / np.log10(n_total))
    ess_ = n_total / tau
    constant = (a.max(axis=(0, 1)) - a.min(axis=(0, 1))) < np.finfo(np.float64).resolution
    return np.where(constant, float(n_total), ess_)


def ess_mean_pixels(x) -> np.ndarray:
    """``ess(x[..., j], method="mean")`` for every ``j`` of ``x`` ``(chain, draw, d)`` in one
    vectorised pass (same numbers to round-off, tested): split chains, Geyer's initial positive
    and monotone sequences. NaN contract as :func:`ess`."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"x must have shape (chain, draw, d), got {a.shape}")
    out = np.full(a.shape[2], math.nan)
    good = np.isfinite(a).all(axis=(0, 1))
    if a.shape[1] < _MIN_DRAWS or not good.any():
        return out
    s = split_chains(a)
    out[good] = _ess_raw_pixels(s[:, :, good])
    return out


def mcse_mean_pixels(x) -> np.ndarray:
    """Monte Carlo standard error of each column's mean, ``sd / sqrt(ESS_mean)`` (as
    :func:`mcse_mean`, Vehtari et al. 2021 §3), for ``x`` ``(chain, draw, d)``, vectorised."""
    a = np.asarray(x, dtype=np.float64)
    e = ess_mean_pixels(a)
    sd = a.reshape(-1, a.shape[2]).std(axis=0, ddof=1) if a.shape[0] * a.shape[1] > 1 else np.full(a.shape[2], math.nan)
    return sd / np.sqrt(e)


# --------------------------------------------------------------------------------------------
# summaries and verdicts
# --------------------------------------------------------------------------------------------
def summarize(traces: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per-trace summary: ``{name: {mean, sd, mcse_mean, ess_bulk, ess_tail, rhat, n_chains,
    n_draws}}`` for scalar traces of shape ``(chain, draw)``. Pure; no printing."""
    out: dict[str, dict[str, float]] = {}
    for name, tr in traces.items():
        a = _as_chains(tr)
        if a.ndim != 2:
            raise ValueError(f"traces[{name!r}] must be (chain, draw), got shape {a.shape}")
        finite = bool(np.all(np.isfinite(a)))
        out[name] = {
            "mean": float(np.mean(a)) if finite else math.nan,
            "sd": float(np.std(a, ddof=1)) if finite and a.size > 1 else math.nan,
            "mcse_mean": float(mcse_mean(a)),
            "ess_bulk": float(ess(a, method="bulk")),
            "ess_tail": float(ess(a, method="tail")),
            "rhat": float(rhat(a)),
            "n_chains": int(a.shape[0]),
            "n_draws": int(a.shape[1]),
        }
    return out


#: convergence thresholds (Vehtari et al. 2021): below ESS 100 the MCSE itself is unreliable
MIN_ESS = 100.0
MAX_RHAT = 1.01


def quantity_verdict(d: Mapping[str, float], *, min_ess: float = MIN_ESS, max_rhat: float = MAX_RHAT) -> str:
    """``"ok"`` or the reasons one traced quantity's summary (:func:`summarize`) fails."""
    ess_bulk, r = d.get("ess_bulk"), d.get("rhat")
    bad = []
    if ess_bulk is None or not np.isfinite(ess_bulk) or ess_bulk < min_ess:
        bad.append(f"ESS < {min_ess:g}: too few effective samples")
    if r is not None and np.isfinite(r) and r > max_rhat:
        bad.append(f"R̂ > {max_rhat:g}: chains disagree")
    return "; ".join(bad) if bad else "ok"


def verdicts(
    summary: Mapping[str, Mapping[str, float]],
    *,
    min_ess: float = MIN_ESS,
    max_rhat: float = MAX_RHAT,
) -> list[str]:
    """Plain-language warnings for a :func:`summarize` result; empty list = no warning.

    Flags: ESS (bulk or tail) below ``min_ess`` (default 100: below that the MCSE itself is
    unreliable), R-hat above ``max_rhat`` (default 1.01, Vehtari et al. 2021), and NaN results
    (non-finite trace values, fewer than 4 draws, or a constant trace).
    """
    msgs: list[str] = []
    for name, s in summary.items():
        eb, et, r = s.get("ess_bulk", math.nan), s.get("ess_tail", math.nan), s.get("rhat", math.nan)
        if math.isnan(eb) or math.isnan(et):
            msgs.append(
                f"{name}: ESS could not be computed (non-finite values or fewer than 4 draws); "
                "the chain may have diverged or is too short"
            )
        else:
            low = min(eb, et)
            if low < min_ess:
                which = "bulk" if eb <= et else "tail"
                msgs.append(
                    f"{name}: effective sample size is only {low:.0f} ({which}; want >= {min_ess:.0f}): "
                    "estimates and intervals are unreliable; run longer chains or more chains"
                )
        if math.isnan(r):
            if s.get("n_draws", 0) >= _MIN_DRAWS and not (math.isnan(eb)):
                msgs.append(f"{name}: R-hat is undefined (constant trace); check that the chain moves")
        elif r > max_rhat:
            msgs.append(
                f"{name}: R-hat = {r:.3f} > {max_rhat}: chains disagree (not converged or stuck in "
                "different modes); run longer, or check the initialisation and the step size"
            )
    return msgs


def image_range(states, *, low: float = -0.1, high: float = 1.1, max_fraction: float = 2e-3) -> dict:
    """Share of the chains' pixels outside the image range ``[low, high]`` (images live on
    [0, 1]; the margin leaves room for posterior noise) and where they are.

    Why: a PnP prior can leave some directions unconfined — seen on cameraman 256² with the 9x9
    blur, where stripes along the thin tripod legs (frequencies the blur nearly removes, patterns
    a denoiser keeps as texture) grew in every chain until they hit the sampler's box [-1, 2]
    within ~100 SK-ROCK steps. Scalar traces show this only as a large R-hat; this check names the
    cause and the region. ``states``: ``[chains, C, H, W]`` (e.g. the final chain states).
    Returns ``fraction``, ``n_pixels``, ``rows`` / ``cols`` (first and last index of the offending
    pixels over all chains, or None) and ``warning`` (a sentence, or None when the fraction is
    at most ``max_fraction``).
    """
    import torch

    x = torch.as_tensor(states).detach()
    bad = (x < low) | (x > high)
    frac = float(bad.double().mean()) if bad.numel() else 0.0
    out: dict = {"fraction": frac, "n_pixels": int(bad.sum()), "low": low, "high": high, "rows": None,
                 "cols": None, "warning": None}
    if int(bad.sum()):
        where = bad.reshape(-1, *bad.shape[-2:]).any(dim=0).nonzero()
        out["rows"] = [int(where[:, 0].min()), int(where[:, 0].max())]
        out["cols"] = [int(where[:, 1].min()), int(where[:, 1].max())]
    if frac > max_fraction:
        out["warning"] = (
            f"image range: {100 * frac:.2f}% of the chains' pixels are outside [{low:g}, {high:g}] "
            f"(rows {out['rows'][0]}-{out['rows'][1]}, cols {out['cols'][0]}-{out['cols'][1]}): the prior "
            "does not hold some patterns the operator cannot see (e.g. stripes along thin edges under blur); "
            "the MMSE and intervals there are unreliable - compare with the MAP, or use a denoiser trained "
            "to remove such patterns")
    return out


def format_summary(summary: Mapping[str, Mapping[str, float]]) -> str:
    """Fixed-width text table of a :func:`summarize` result."""
    cols = ("mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "rhat")
    width = max([len(n) for n in summary] + [5])
    lines = [f"{'trace':<{width}} " + " ".join(f"{c:>10}" for c in cols)]
    for name, s in summary.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{s[c]:>10.4g}" for c in cols))
    return "\n".join(lines)
