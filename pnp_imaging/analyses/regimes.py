r"""Dynamical regimes of a diffusion model trained on a data set: speciation and collapse times.

Biroli, Bonnaire, De Bortoli, Mézard, *Dynamical regimes of diffusion models* (2024,
arXiv 2402.18491). Convention of the paper: the forward process is the Ornstein–Uhlenbeck
process :math:`dx = -x\,dt + \sqrt 2\,dW`, so :math:`x(t) = a e^{-t} + \sqrt{\Delta_t} z` with
:math:`\Delta_t = 1 - e^{-2t}` (a DDPM index :math:`t'` maps to :math:`t = -\tfrac12\log\bar\alpha_{t'}`).

* **Speciation** (backward trajectories commit to a class): the noised covariance
  :math:`C_0 e^{-2t} + \Delta_t I` stops being dominated by the noise along the top principal
  direction when :math:`\Lambda e^{-2t_S} = 1`, i.e. :math:`t_S = \tfrac12 \log \Lambda` with
  :math:`\Lambda` the largest eigenvalue of the data covariance (:func:`speciation_time`).
* **Collapse** (the empirical score of the n training points starts to memorise them): the excess
  entropy :math:`f^e(t) = s^{sep}(t) - s^e(t)` of the empirical noised distribution
  :math:`P^e_t = \frac1n\sum_\mu \mathcal N(a_\mu e^{-t}, \Delta_t I)` per dimension, with
  :math:`s^{sep} = \frac{\log n}{d} + \frac12 + \frac12\log(2\pi\Delta_t)`, tends to
  :math:`\alpha = \frac{\log n}{d}` at large t and vanishes below the collapse time
  :math:`t_C` (:func:`excess_entropy_curve`, :func:`collapse_time`). For two Gaussian clusters of
  variance :math:`\sigma^2` in high dimension the paper gives
  :math:`t_C = \tfrac12\log(1 + \sigma^2/(n^{2/d}-1))` (:func:`gaussian_mixture_collapse_time`).

Data are used **as given** (no rescaling): Λ is the top eigenvalue of the (centred, unbiased
``1/(n-1)``) sample covariance; the excess entropy is invariant to translating the data, so no
centring is needed there. Scaling the data by ``c`` multiplies Λ by ``c²`` (adds ``log c`` to
``t_S``) and changes ``t_C``: images read from files are on the ``[0, 1]`` scale, whereas the paper
trains on centred data in ``[-1, 1]`` (scale 2; the CLI's ``--scale``). Equations, choices and
measured figures: ``docs/algorithms.md §regimes``.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["load_dataset", "as_data_matrix", "top_covariance_eigenvalue", "covariance_spectrum", "speciation_time",
           "excess_entropy_curve", "collapse_time", "gaussian_mixture_collapse_time", "default_times", "regimes_summary"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def as_data_matrix(data, name: str = "data") -> np.ndarray:
    """``(n, d)`` float64 matrix from an array of shape ``(n, d)``, ``(n, H, W)`` or ``(n, C, H, W)``
    (one sample per row); checks ``n >= 2`` and finite values."""
    arr = np.asarray(data.detach().cpu() if isinstance(data, torch.Tensor) else data)
    if arr.ndim not in (2, 3, 4):
        raise ValueError(f"{name}: expected shape (n, d), (n, H, W) or (n, C, H, W), got {arr.shape}; "
                         "stack one sample per row along the first axis")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name}: need at least 2 samples of dimension >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or Inf values; remove or fix those samples")
    return arr


def _load_image_folder(folder: Path) -> np.ndarray:
    from pnp_imaging.imageio import read_observation

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"data: folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    images = [read_observation(p).numpy()[0] for p in files]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"data: images in {str(folder)!r} have different shapes {sorted(shapes)}; "
                         "crop or resize them to one shape")
    return np.stack(images)


def load_dataset(path) -> np.ndarray:
    """Data matrix ``(n, d)`` float64 from a folder of images (each read on the ``[0, 1]`` scale,
    ``(C, H, W)`` flattened) or a ``.npy`` of shape ``(n, H, W)``, ``(n, C, H, W)`` or ``(n, d)``
    (values as stored)."""
    p = Path(os.fspath(path))
    if not p.exists():
        raise FileNotFoundError(f"data: {str(p)!r} does not exist; give a folder of images or an .npy file")
    if p.is_dir():
        return as_data_matrix(_load_image_folder(p), f"data {str(p)!r}")
    if p.suffix.lower() != ".npy":
        raise ValueError(f"data: {str(p)!r} is neither a folder of images nor an .npy file")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"data: cannot read {str(p)!r} as .npy ({str(exc).splitlines()[0]})") from None
    return as_data_matrix(arr, f"data {str(p)!r}")


def covariance_spectrum(data, k: int = 1) -> np.ndarray:
    """The ``k`` largest eigenvalues (descending) of the sample covariance ``Xcᵀ Xc / (n - 1)``,
    from the singular values of the centred data (sparse solver when ``min(n, d) > 1000``)."""
    x = as_data_matrix(data)
    xc = x - x.mean(axis=0)
    k = max(1, min(int(k), min(xc.shape)))
    if min(xc.shape) > 1000 and k < min(xc.shape) - 1:
        from scipy.sparse.linalg import svds

        s = np.sort(svds(xc, k=k, return_singular_vectors=False, random_state=0))[::-1]
    else:
        s = np.linalg.svd(xc, compute_uv=False)[:k]
    return s**2 / (x.shape[0] - 1)


def top_covariance_eigenvalue(data) -> float:
    """Λ: the largest eigenvalue of the sample covariance of ``data`` (rows = samples)."""
    return float(covariance_spectrum(data, 1)[0])


def speciation_time(data) -> dict:
    r"""Speciation time :math:`t_S = \tfrac12\log\Lambda` (Biroli et al. 2024, from
    :math:`\Lambda e^{-2t_S} = 1`), with Λ the top covariance eigenvalue of the data as given.

    Returns ``{"Lambda", "t_S", "n", "d"}``. ``t_S <= 0`` (Λ <= 1) means the noise dominates every
    direction from the start of the forward process: no speciation transition.
    """
    x = as_data_matrix(data)
    lam = top_covariance_eigenvalue(x)
    if lam <= 0.0:
        raise ValueError("data: all samples are identical (zero covariance); speciation time undefined")
    return {"Lambda": lam, "t_S": 0.5 * math.log(lam), "n": int(x.shape[0]), "d": int(x.shape[1])}


def _check_times(times) -> np.ndarray:
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.isfinite(t).all() or (t <= 0).any():
        raise ValueError("times: need a non-empty list of finite times > 0 (OU time, Delta_t = 1 - exp(-2t))")
    return t


def _mean_log_excess(centres: torch.Tensor, t: float, n_samples: int, generator, batch: int = 512) -> float:
    """Mean over draws :math:`x = e^{-t}a_\\mu + \\sqrt{\\Delta_t}\\xi` of
    :math:`\\log\\sum_\\nu \\exp(-(\\|x - e^{-t}a_\\nu\\|^2 - \\|x - e^{-t}a_\\mu\\|^2)/(2\\Delta_t))`."""
    n, d = centres.shape
    delta = -math.expm1(-2.0 * t)
    c = math.exp(-t) * centres
    c_sq = (c * c).sum(1)
    total = 0.0
    for start in range(0, n_samples, batch):
        m = min(batch, n_samples - start)
        idx = torch.randint(0, n, (m,), generator=generator)
        xi = torch.randn(m, d, generator=generator, dtype=torch.float64)
        x = c[idx] + math.sqrt(delta) * xi
        sq = (x * x).sum(1, keepdim=True) + c_sq[None] - 2.0 * x @ c.T  # ||x - c_nu||^2
        own = delta * (xi * xi).sum(1, keepdim=True)  # ||x - c_mu||^2
        total += float(torch.logsumexp(-(sq - own) / (2 * delta), 1).sum())
    return total / n_samples


def excess_entropy_curve(data, times, *, n_samples: int = 1000, generator: torch.Generator | None = None) -> np.ndarray:
    r"""Excess entropy :math:`f^e(t) = s^{sep}(t) - s^e(t)` of the empirical noised distribution, per
    dimension, at each of ``times`` (paper SI estimator, code ``src/Experiment_collapse.py``).

    The paper draws :math:`x = e^{-t}a_\mu + \sqrt{\Delta_t}\xi` (μ uniform) and averages
    :math:`\log P^e_t(x)`; substituting :math:`s^{sep}` this is
    :math:`f^e = \tfrac12 + \mathbb E[\mathrm{LSE}_\nu(-\|x - e^{-t}a_\nu\|^2/2\Delta_t)]/d`. Here the own
    point's term :math:`\|x - e^{-t}a_\mu\|^2/2\Delta_t = \|\xi\|^2/2`, whose mean d/2 is known exactly,
    is subtracted per draw instead of on average (a control variate: same expectation, and
    the estimate is >= 0 with no Monte Carlo noise in the memorised regime where the own point
    dominates). ``generator`` (``torch.Generator``; default seeded 0) draws μ and ξ.
    """
    x = as_data_matrix(data)
    t = _check_times(times)
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples: must be an int >= 1, got {n_samples!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    centres = torch.from_numpy(x)
    return np.array([_mean_log_excess(centres, float(ti), n_samples, g) / x.shape[1] for ti in t])


def default_times(t_max: float = 4.0, n: int = 50) -> np.ndarray:
    """Default grid for :func:`collapse_time`: ``n`` times evenly spaced on ``[t_max/n, t_max]``."""
    return np.linspace(t_max / n, t_max, n)


def _last_crossing(times: np.ndarray, ratio: np.ndarray, threshold: float) -> tuple[float, bool]:
    """Last t with ``ratio < threshold``, linearly interpolated to the crossing with the next grid
    point; ``(nan, False)`` if never below, ``(times[-1], True)`` if still below at the end."""
    below = np.nonzero(ratio < threshold)[0]
    if below.size == 0:
        return float("nan"), False
    i = int(below[-1])
    if i == len(times) - 1:
        return float(times[-1]), True
    r0, r1 = ratio[i], ratio[i + 1]
    frac = (threshold - r0) / (r1 - r0) if r1 != r0 else 0.0
    return float(times[i] + frac * (times[i + 1] - times[i])), False


def collapse_time(data, *, times=None, generator: torch.Generator | None = None, threshold: float = 0.05,
                  n_samples: int = 1000) -> dict:
    r"""Collapse time :math:`\hat t_C`: the last time at which :math:`f^e/\alpha` is below
    ``threshold`` (the paper defines :math:`t_C` as the largest t with :math:`f^e = 0`; a small
    threshold makes that measurable with finite n and d), interpolated linearly between grid points.

    Returns ``{"t_C", "times", "f_e", "alpha", "threshold", "censored"}``; ``censored`` is True when
    :math:`f^e/\alpha` is still below the threshold at the last time (``t_C`` is then a lower bound:
    extend ``times``); ``t_C`` is NaN if the ratio is above the threshold everywhere (start earlier).
    """
    if not (0.0 < float(threshold) < 1.0):
        raise ValueError(f"threshold: must be in (0, 1) (a fraction of alpha = log(n)/d), got {threshold!r}")
    x = as_data_matrix(data)
    t = default_times() if times is None else _check_times(times)
    f_e = excess_entropy_curve(x, t, n_samples=n_samples, generator=generator)
    alpha = math.log(x.shape[0]) / x.shape[1]
    t_c, censored = _last_crossing(t, f_e / alpha, float(threshold))
    return {"t_C": t_c, "times": t, "f_e": f_e, "alpha": alpha, "threshold": float(threshold), "censored": censored}


def gaussian_mixture_collapse_time(n: int, d: int, sigma2: float = 1.0) -> float:
    r"""Paper's high-dimensional collapse time for Gaussian clusters of variance σ²:
    :math:`t_C = \tfrac12\log(1 + \sigma^2/(n^{2/d} - 1))`."""
    return 0.5 * math.log1p(sigma2 / math.expm1(2.0 * math.log(n) / d))


def regimes_summary(data, *, times=None, n_samples: int = 1000, threshold: float = 0.05, spectrum_k: int = 30,
                    generator: torch.Generator | None = None) -> dict:
    """Everything ``pnp-imaging analyze regimes`` reports: ``Lambda``, ``t_S``, ``t_C`` (None when not
    found), ``alpha``, ``n``, ``d``, ``threshold``, ``censored``, the ``times`` / ``f_e`` curve and the top
    ``spectrum_k`` covariance eigenvalues (``spectrum``), all JSON-ready."""
    x = as_data_matrix(data)
    out = speciation_time(x)
    c = collapse_time(x, times=times, generator=generator, threshold=threshold, n_samples=n_samples)
    out.update({"t_C": None if math.isnan(c["t_C"]) else c["t_C"], "alpha": c["alpha"], "threshold": c["threshold"],
                "censored": c["censored"], "n_samples": n_samples, "times": [float(t) for t in c["times"]],
                "f_e": [float(f) for f in c["f_e"]], "spectrum": [float(v) for v in covariance_spectrum(x, spectrum_k)]})
    return out
