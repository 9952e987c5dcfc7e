r"""The cloning experiment of Biroli, Bonnaire, De Bortoli & Mézard, "Dynamical regimes of diffusion
models" (2024, arXiv 2402.18491): when does a diffusion model decide the class of its output
(speciation, :math:`t_S = \tfrac12\log\Lambda`), and when does it commit to one training point
(collapse, :math:`t_C`)?

Conventions (the paper's): forward Ornstein–Uhlenbeck process :math:`dx = -x\,dt + \sqrt2\,dW`, so
:math:`x(t) = a e^{-t} + \sqrt{\Delta_t} z` with :math:`\Delta_t = 1 - e^{-2t}`; backward process
:math:`-dy = (y + 2F(y, t))\,dt + d\xi` (``dξ`` of variance ``2 dt``) with the score
:math:`F = \nabla \log P_t`, integrated here by Euler–Maruyama with a uniform step ``h``:
:math:`y_{t-h} = y_t + h\,(y_t + 2F(y_t, t)) + \sqrt{2h}\,\xi`.

**A denoiser D(x, σ) as the score.** Rescaling, :math:`x(t) e^{t} = a + \sqrt{e^{2t} - 1}\, z`: the
noised point is the data plus Gaussian noise of std :math:`\sigma_a(t) = \sqrt{\Delta_t}\,e^{t} =
\sqrt{e^{2t}-1}` (inverse: :math:`t = \tfrac12\log(1 + \sigma_a^2)`). With the data in the OU's units
``a = scale·(u − offset)`` for images ``u`` on the denoiser's [0, 1] scale, the MMSE denoiser gives
:math:`E[a\mid x(t)] = \mathrm{scale}\,(D(x e^{t}/\mathrm{scale} + \mathrm{offset},\
\sigma_a(t)/\mathrm{scale}) - \mathrm{offset})` and Tweedie's formula the score
:math:`F(x, t) = (e^{-t} E[a\mid x(t) = x] - x) / \Delta_t` (:func:`denoiser_score`).

**Cloning** (the paper's protocol): one backward trajectory per pair runs from ``x(T) ~ N(0, I)``;
at each time ``t`` of a grid it is split: a clone continues from the same point with independent
noise, the original trajectory continues with its own. Both end at ``t_end`` (one step ``h``) and are
mapped to the data by :math:`E[a\mid x(t_{end})]`. :math:`\varphi(t)` = P(both endpoints in the same
class); :math:`\varphi_C(t)` = P(both endpoints have the same nearest training point). The paper
reads the speciation transition where φ crosses 0.775 and compares it with :math:`t_S`; the
exact score of a two-Gaussian mixture gives :math:`\varphi(t)` in closed form
(:func:`two_gaussian_clone_agreement`; φ(t_S) = 0.775 for unit mean and variance in any dimension).
Per trajectory, :math:`\hat t_C` = the largest split time below which every clone ends at the same
nearest training point as the trajectory itself (the paper's "last time the nearest training point
changes", read on the clones). Derivation, digits scaling and defaults: ``docs/algorithms.md §cloning``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

__all__ = ["ou_delta", "sigma_of_ou_time", "ou_time_of_sigma", "two_gaussian_score", "two_gaussian_clone_agreement",
           "empirical_score", "denoiser_score", "posterior_mean", "backward_em", "clone_pairs", "crossing_time",
           "collapse_times", "pc1_class_sides", "sample_backward", "sample_digits", "agreement", "digits_in_ou_units", "measure_clones",
           "run_cloning_experiment", "PAPER_THRESHOLD", "DIGITS_SCALE", "ScoreFn"]

#: φ at which the paper reads the speciation transition (φ(t_S) of two unit Gaussians)
PAPER_THRESHOLD = 0.775
#: a score ``F(x, t)``: x ``(B, d)``, t a float OU time > 0 -> ``∇ log P_t(x)``, ``(B, d)``
ScoreFn = Callable[[torch.Tensor, float], torch.Tensor]


def ou_delta(t: float) -> float:
    """:math:`\\Delta_t = 1 - e^{-2t}`, the variance of the noise part of x(t)."""
    return -math.expm1(-2.0 * float(t))


def sigma_of_ou_time(t: float) -> float:
    """Noise std of the rescaled point :math:`x(t) e^{t} = a + \\sigma z`: :math:`\\sqrt{e^{2t} - 1}`."""
    if not t > 0:
        raise ValueError(f"OU time must be > 0, got {t}")
    return math.sqrt(math.expm1(2.0 * float(t)))


def ou_time_of_sigma(sigma: float) -> float:
    """Inverse of :func:`sigma_of_ou_time`: :math:`t = \\tfrac12 \\log(1 + \\sigma^2)`."""
    return 0.5 * math.log1p(float(sigma) ** 2)


def posterior_mean(score: ScoreFn, x: torch.Tensor, t: float) -> torch.Tensor:
    """Tweedie: :math:`E[a \\mid x(t) = x] = e^{t}(x + \\Delta_t F(x, t))`."""
    return math.exp(t) * (x + ou_delta(t) * score(x, t))


def two_gaussian_score(m: torch.Tensor, sigma2: float = 1.0) -> ScoreFn:
    """Exact score of :math:`P_t` for data :math:`\\tfrac12 N(m, \\sigma^2 I) + \\tfrac12 N(-m, \\sigma^2 I)`:
    :math:`F = (m e^{-t}/\\Gamma_t) \\tanh(e^{-t} m\\cdot x / \\Gamma_t) - x/\\Gamma_t`,
    :math:`\\Gamma_t = \\Delta_t + \\sigma^2 e^{-2t}` (Biroli et al. 2024, the Gaussian-mixture model)."""
    m = m.reshape(-1)

    def score(x: torch.Tensor, t: float) -> torch.Tensor:
        gamma = ou_delta(t) + sigma2 * math.exp(-2.0 * t)
        proj = torch.tanh(math.exp(-t) * (x @ m.to(x.dtype)) / gamma)
        return (math.exp(-t) / gamma) * proj[:, None] * m.to(x.dtype) - x / gamma

    return score


def two_gaussian_clone_agreement(t: float, *, d: int, mu: float = 1.0, sigma: float = 1.0, n_grid: int = 20001) -> float:
    r"""Closed-form φ(t) for clones of the exact two-Gaussian backward process (Biroli et al. 2024):
    :math:`\varphi = \tfrac12\int [G_+^2 + G_-^2]/[G_+ + G_-]\,dy`, :math:`G_\pm = N(y; \pm|m|e^{-t}, \Gamma_t)`,
    :math:`|m| = \mu\sqrt d` (1-D trapezoidal quadrature along m; the other directions do not matter)."""
    gamma = ou_delta(t) + sigma**2 * math.exp(-2.0 * t)
    c = mu * math.sqrt(d) * math.exp(-t)
    y = np.linspace(-c - 12 * math.sqrt(gamma), c + 12 * math.sqrt(gamma), int(n_grid))
    gp = np.exp(-((y - c) ** 2) / (2 * gamma)) / math.sqrt(2 * math.pi * gamma)
    gm = np.exp(-((y + c) ** 2) / (2 * gamma)) / math.sqrt(2 * math.pi * gamma)
    integrand = np.divide(gp**2 + gm**2, gp + gm, out=np.zeros_like(y), where=(gp + gm) > 0)
    return float(0.5 * np.trapezoid(integrand, y))


def empirical_score(data: torch.Tensor) -> ScoreFn:
    r"""Exact score of the empirical (memorising) measure of the n points ``data`` ``(n, d)``:
    :math:`E[a\mid x(t)] = \sum_\mu w_\mu a_\mu`, :math:`w = \mathrm{softmax}_\mu(-\|x - e^{-t}a_\mu\|^2 / (2\Delta_t))`."""
    data = data.reshape(data.shape[0], -1)

    def score(x: torch.Tensor, t: float) -> torch.Tensor:
        a = data.to(x.dtype)
        logits = -torch.cdist(x, math.exp(-t) * a).pow(2) / (2.0 * ou_delta(t))
        mean = torch.softmax(logits, dim=1) @ a
        return (math.exp(-t) * mean - x) / ou_delta(t)

    return score


def denoiser_score(denoiser, *, scale: float, offset: float, image_shape: tuple[int, ...]) -> ScoreFn:
    """Score of :math:`P_t` from a denoiser ``D(u, σ)`` on the [0, 1] scale, for data in the OU's
    units ``a = scale·(u − offset)`` (module docstring: :math:`\\sigma = \\sigma_a(t)/\\mathrm{scale}`).
    ``image_shape`` is the ``(C, H, W)`` the flat ``(B, d)`` points are reshaped to."""
    if not scale > 0:
        raise ValueError(f"denoiser_score: scale must be > 0, got {scale}")

    def score(x: torch.Tensor, t: float) -> torch.Tensor:
        u = (x * math.exp(t) / scale + offset).reshape(x.shape[0], *image_shape)
        with torch.no_grad():
            den = denoiser(u, sigma_of_ou_time(t) / scale).reshape(x.shape[0], -1).to(x.dtype)
        return (math.exp(-t) * scale * (den - offset) - x) / ou_delta(t)

    return score


def backward_em(score: ScoreFn, x: torch.Tensor, k_from: int, k_to: int, step: float,
                generator: torch.Generator) -> torch.Tensor:
    """Euler–Maruyama for :math:`-dy = (y + 2F)dt + d\\xi` from time ``k_from·step`` down to ``k_to·step``."""
    for k in range(int(k_from), int(k_to), -1):
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x + step * (x + 2.0 * score(x, k * step)) + math.sqrt(2.0 * step) * noise
    return x


def _check_clone_args(t_grid, T: float, step: float, n_pairs: int) -> list[int]:
    """Grid times as step indices (descending, distinct), after the checks."""
    if not step > 0 or not T > step:
        raise ValueError(f"clone_pairs: need 0 < step < T, got step={step}, T={T}")
    if int(n_pairs) < 1:
        raise ValueError(f"clone_pairs: n_pairs must be >= 1, got {n_pairs}")
    ks = sorted({int(round(float(t) / step)) for t in t_grid}, reverse=True)
    if not ks or ks[-1] < 2 or ks[0] * step > T:
        raise ValueError(f"clone_pairs: split times must lie in [2*step, T] = [{2 * step}, {T}], got {list(t_grid)}")
    return ks


def clone_pairs(score: ScoreFn, *, dim: int, t_grid, n_pairs: int, T: float, step: float,
                generator: torch.Generator, dtype=torch.float64) -> dict:
    """Run the cloning protocol (module docstring). Returns ``{"t": split times (ascending),
    "original": (n, d) endpoints of the unsplit trajectories, "clones": (K, n, d) endpoints of the
    clones split at each time}``; endpoints are :math:`E[a\\mid x(t_{end})]` at ``t_end = step``."""
    ks = _check_clone_args(t_grid, T, step, n_pairs)
    k_T = int(round(T / step))
    x = torch.randn(int(n_pairs), int(dim), generator=generator, dtype=dtype)  # x(T) ~ N(0, I): P_T for large T
    starts, k_now = [], k_T
    for k in ks:
        x = backward_em(score, x, k_now, k, step, generator)
        starts.append(x.clone())
        k_now = k
    finish = lambda y, k: posterior_mean(score, backward_em(score, y, k, 1, step, generator), step)  # noqa: E731
    original = finish(x, k_now)
    clones = [finish(s, k) for s, k in zip(starts, ks)]
    order = list(range(len(ks)))[::-1]
    return {"t": [round(ks[i] * step, 12) for i in order], "original": original, "clones": torch.stack([clones[i] for i in order])}


def crossing_time(t, phi, threshold: float = PAPER_THRESHOLD) -> float | None:
    """First time (ascending ``t``) where the decreasing curve ``phi`` falls below ``threshold``,
    linearly interpolated between grid points; None if it never crosses on the grid."""
    t, phi = np.asarray(t, dtype=float), np.asarray(phi, dtype=float)
    below = np.nonzero(phi < threshold)[0]
    if below.size == 0 or below[0] == 0:
        return None
    i = below[0]
    frac = (phi[i - 1] - threshold) / (phi[i - 1] - phi[i])
    return float(t[i - 1] + frac * (t[i] - t[i - 1]))


def collapse_times(t, same_nearest: torch.Tensor) -> np.ndarray:
    """Per trajectory :math:`\\hat t_C`: the largest split time ``t[k]`` such that the clones split at
    every ``t[j] <= t[k]`` end at the trajectory's own nearest training point (0 if even the first
    does not). ``same_nearest``: ``(K, n)`` booleans, ``t`` ascending."""
    t = np.asarray(t, dtype=float)
    ok = np.cumprod(same_nearest.cpu().numpy().astype(bool), axis=0)  # still frozen up to k
    last = ok.sum(axis=0)  # number of leading grid times where the index is frozen
    return np.where(last > 0, t[np.maximum(last - 1, 0)], 0.0)


def sample_backward(score: ScoreFn, *, dim: int, n: int, T: float, step: float, generator: torch.Generator,
                    dtype=torch.float64) -> torch.Tensor:
    """``n`` samples of the diffusion model: :math:`E[a\\mid x(t_{end})]` after the backward process from
    ``x(T) ~ N(0, I)`` down to ``t_end = step`` (the unsplit trajectories of :func:`clone_pairs`)."""
    if not step > 0 or not T > step or int(n) < 1:
        raise ValueError(f"sample_backward: need n >= 1 and 0 < step < T, got n={n}, step={step}, T={T}")
    x = torch.randn(int(n), int(dim), generator=generator, dtype=dtype)
    return posterior_mean(score, backward_em(score, x, int(round(T / step)), 1, step, generator), step)


def agreement(same: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Share of pairs that agree at each split time (``same``: ``(K, n)`` booleans) and its binomial
    standard error :math:`\\sqrt{\\varphi(1-\\varphi)/n}`."""
    phi = same.double().mean(1).cpu().numpy()
    return phi, np.sqrt(phi * (1.0 - phi) / same.shape[1])


#: scale of the digits in the OU's units: ``a = DIGITS_SCALE · (u − mean pixel)``, i.e. the [−1, 1]
#: range of the paper's image experiments, centred (the paper centres its data per channel)
DIGITS_SCALE = 2.0
#: default split times for the digits: dense at small t, where the digits' t_C (~0.1) lies, up to ~3 t_S
DIGITS_T_GRID = (0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.17, 0.22, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.1, 1.4)


def digits_in_ou_units(*, split_seed: int = 0) -> dict:
    """The digits train split in the OU's units, ``a = 2 (u − ū)`` with ``u`` = pixel / 16 in [0, 1]
    and ``ū`` its mean over the train split: ``{"train": (n, 64) float64, "scale": 2, "offset": ū,
    "class_side": pc1_class_sides(...)}``."""
    from pnp_imaging.analyses.digits import load_digits_images, load_digits_labels

    u = load_digits_images("train", seed=split_seed).reshape(-1, 64).double()
    offset = float(u.mean())
    a = DIGITS_SCALE * (u - offset)
    return {"train": a, "scale": DIGITS_SCALE, "offset": offset,
            "class_side": pc1_class_sides(a, load_digits_labels("train", seed=split_seed))}


def pc1_class_sides(a: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Two super-classes of the digits, for comparing with the two-class theory [our adaptation]:
    class ``c`` is on side ``True`` when its mean lies on the positive side of the top principal
    direction of ``a`` (the direction whose variance Λ sets :math:`t_S`). Returns ``(10,)`` booleans."""
    centred = a - a.mean(0)
    pc1 = torch.linalg.eigh(centred.T @ centred)[1][:, -1]
    means = torch.stack([centred[labels == c].mean(0) for c in range(10)])
    return (means @ pc1) > 0


def _endpoint_images(a: torch.Tensor, setup: dict) -> torch.Tensor:
    """OU-unit endpoints ``(..., 64)`` back to ``(m, 1, 8, 8)`` digits in [0, 1] (clamped)."""
    u = a.reshape(-1, 64) / setup["scale"] + setup["offset"]
    return u.clamp(0.0, 1.0).reshape(-1, 1, 8, 8).float()


def sample_digits(n: int, *, seed: int = 0, denoiser: str = "digits_edm", step: float = 0.01,
                  T: float = 4.0) -> torch.Tensor:
    """``n`` digits ``(n, 1, 8, 8)`` in [0, 1] from the zoo's ``denoiser`` used as a diffusion model
    (:func:`sample_backward` in the units of :func:`digits_in_ou_units`; clamped to [0, 1])."""
    import denoisers_zoo

    setup = digits_in_ou_units()
    score = denoiser_score(denoisers_zoo.load(denoiser), scale=setup["scale"], offset=setup["offset"],
                           image_shape=(1, 8, 8))
    a = sample_backward(score, dim=64, n=n, T=T, step=step, generator=torch.Generator().manual_seed(int(seed)),
                        dtype=torch.float32)
    return _endpoint_images(a, setup)


def measure_clones(result: dict, *, setup: dict, classifier) -> dict:
    """φ(t) (same predicted class), φ_C(t) (same nearest training point) with binomial errors, and
    the per-trajectory :math:`\\hat t_C` (:func:`collapse_times`) of a :func:`clone_pairs` result."""
    k, n = result["clones"].shape[:2]
    with torch.no_grad():
        cls_orig = classifier(_endpoint_images(result["original"], setup)).argmax(1)
        cls_clone = classifier(_endpoint_images(result["clones"], setup)).argmax(1).view(k, n)
    train = setup["train"].to(result["original"].dtype)
    nn_orig = torch.cdist(result["original"], train).argmin(1)
    nn_clone = torch.cdist(result["clones"].reshape(k * n, -1), train).argmin(1).view(k, n)
    phi, phi_se = agreement(cls_clone == cls_orig)
    side = setup["class_side"].to(cls_orig.device)
    phi2, phi2_se = agreement(side[cls_clone] == side[cls_orig])
    phi_c, phi_c_se = agreement(nn_clone == nn_orig)
    t_hat = collapse_times(result["t"], nn_clone == nn_orig)
    return {"t": list(result["t"]), "phi": phi.tolist(), "phi_se": phi_se.tolist(), "phi_C": phi_c.tolist(),
            "phi_C_se": phi_c_se.tolist(), "t_hat_C_mean": float(t_hat.mean()), "t_hat_C_median": float(np.median(t_hat)),
            "t_cross_phi": crossing_time(result["t"], phi), "t_cross_phi_C_0.6": crossing_time(result["t"], phi_c, 0.6),
            "phi_2": phi2.tolist(), "phi_2_se": phi2_se.tolist(), "t_cross_phi_2": crossing_time(result["t"], phi2)}


def _plot_cloning(curves: dict, t_S: float, t_C: float, path) -> None:
    """φ(t) and φ_C(t) for each score (network, empirical), with t_S, t_C and the 0.775 threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, c) in enumerate(curves.items()):
        kw = {"fmt": "o-" if name == "network" else "s--", "ms": 3, "color": f"C{i}"}
        axes[0].errorbar(c["t"], c["phi"], yerr=c["phi_se"], label=f"{name}: 10 classes", **kw)
        axes[0].errorbar(c["t"], c["phi_2"], yerr=c["phi_2_se"], alpha=0.45, label=f"{name}: 2 super-classes", **kw)
        axes[1].errorbar(c["t"], c["phi_C"], yerr=c["phi_C_se"], label=name, **kw)
    axes[0].axhline(PAPER_THRESHOLD, color="gray", lw=0.8, ls=":")
    axes[0].axvline(t_S, color="k", lw=1, label=f"t_S = {t_S:.2f}")
    axes[1].axvline(t_C, color="k", lw=1, label=f"t_C = {t_C:.2f}")
    axes[0].set(xlabel="split time t (OU)", ylabel="φ(t) = P(same class)", title="speciation")
    axes[1].set(xlabel="split time t (OU)", ylabel="φ_C(t) = P(same nearest training digit)", title="collapse")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _check_experiment_args(t_S: float, t_C: float, n_pairs: int, t_grid) -> list[float]:
    if not (np.isfinite(t_S) and np.isfinite(t_C)) or t_S <= 0 or t_C < 0:
        raise ValueError(f"run_cloning_experiment: t_S must be > 0 and t_C >= 0 (OU times), got {t_S}, {t_C}")
    if int(n_pairs) < 2:
        raise ValueError(f"run_cloning_experiment: n_pairs must be >= 2, got {n_pairs}")
    return list(DIGITS_T_GRID) if t_grid is None else [float(t) for t in t_grid]


def run_cloning_experiment(out_dir, *, t_S: float, t_C: float, n_pairs: int = 400, seed: int = 0, t_grid=None,
                           step: float = 0.01, T: float = 4.0, denoiser: str = "digits_edm",
                           reference: bool = True) -> dict:
    """The cloning experiment on the digits with the zoo's ``denoiser`` as the diffusion model (and,
    with ``reference``, the exact empirical score of the train split, which memorises by construction).

    ``t_S``, ``t_C``: the predicted speciation and collapse times (OU units, data as in
    :func:`digits_in_ou_units`). Writes ``cloning.json``, ``cloning.png`` and ``report.html`` in ``out_dir``; returns
    the summary: measured φ-crossing of 0.775 vs ``t_S``, mean :math:`\\hat t_C` vs ``t_C``, the curves,
    and ``evaluate_samples`` of the network's unsplit endpoints.
    """
    import json
    from pathlib import Path

    import denoisers_zoo
    from pnp_imaging.analyses.digits import evaluate_samples, load_digit_classifier

    grid = _check_experiment_args(t_S, t_C, n_pairs, t_grid)
    setup, classifier = digits_in_ou_units(), load_digit_classifier()
    scores = {"network": denoiser_score(denoisers_zoo.load(denoiser), scale=setup["scale"], offset=setup["offset"],
                                        image_shape=(1, 8, 8))}
    if reference:
        scores["empirical"] = empirical_score(setup["train"])
    curves, samples = {}, None
    for i, (name, score) in enumerate(scores.items()):
        res = clone_pairs(score, dim=64, t_grid=grid, n_pairs=n_pairs, T=T, step=step,
                          generator=torch.Generator().manual_seed(int(seed) + i), dtype=torch.float32)
        curves[name] = measure_clones(res, setup=setup, classifier=classifier)
        samples = _endpoint_images(res["original"], setup) if name == "network" else samples
    net = curves["network"]
    summary = {"t_S": float(t_S), "t_speciation_measured": net["t_cross_phi"],
               "t_speciation_measured_2_classes": net["t_cross_phi_2"], "t_C": float(t_C),
               "t_collapse_measured": net["t_hat_C_mean"], "threshold": PAPER_THRESHOLD, "n_pairs": int(n_pairs),
               "seed": int(seed), "step": float(step), "T": float(T), "denoiser": denoiser,
               "data_scaling": f"a = {setup['scale']:g} (pixel/16 - {setup['offset']:.4f})", "curves": curves,
               "network_samples": evaluate_samples(samples, classifier=classifier)}
    if reference:
        emp = curves["empirical"]
        summary["empirical_score"] = {"t_speciation_measured": emp["t_cross_phi"],
                                      "t_speciation_measured_2_classes": emp["t_cross_phi_2"],
                                      "t_collapse_measured": emp["t_hat_C_mean"]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cloning.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot_cloning(curves, t_S, t_C, out / "cloning.png")
    from pnp_imaging.analyses.report import write_cloning_report

    write_cloning_report(summary, out)
    return summary


#: OU times where the digits' collapse curve f^e/α is estimated (t_C ≈ 0.1-0.2 on the digits)
DIGITS_COLLAPSE_TIMES = tuple(round(0.02 * k, 2) for k in range(1, 61))


def run_digits_cloning(out_dir, *, n_pairs: int = 400, seed: int = 0, fast: bool = False) -> dict:
    """The whole experiment on the digits: the predicted ``t_S`` and ``t_C`` of the train split
    (:func:`~pnp_imaging.analyses.regimes.speciation_time`, :func:`~pnp_imaging.analyses.regimes.collapse_time`,
    data as in :func:`digits_in_ou_units`), written to ``regimes.json``, then
    :func:`run_cloning_experiment` against them. ``fast``: a plumbing run of seconds."""
    import json
    from pathlib import Path

    from pnp_imaging.analyses.regimes import collapse_time, speciation_time

    data = digits_in_ou_units()["train"].double().numpy()
    regimes = speciation_time(data)
    collapse = collapse_time(data, times=DIGITS_COLLAPSE_TIMES, n_samples=500 if fast else 4000,
                             generator=torch.Generator().manual_seed(int(seed)))
    regimes.update(t_C=collapse["t_C"], censored=collapse["censored"], alpha=collapse["alpha"],
                   times=list(collapse["times"]), f_over_alpha=(np.asarray(collapse["f_e"]) / collapse["alpha"]).tolist())
    if not np.isfinite(regimes["t_C"]):
        raise ValueError("collapse time not found on the grid (f/alpha above the threshold everywhere)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "regimes.json").write_text(json.dumps(regimes, indent=2, default=float) + "\n")
    kw = dict(n_pairs=8, t_grid=[0.1, 0.6], step=0.05, T=2.0) if fast else dict(n_pairs=n_pairs)
    return run_cloning_experiment(out, t_S=regimes["t_S"], t_C=regimes["t_C"], seed=seed, **kw)
