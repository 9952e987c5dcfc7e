"""Figures and a self-contained HTML report for ``pnp-imaging analyze regimes --out DIR``.

Same house style as :mod:`pnp_imaging.report`: PNG figures written next to ``report.html``, which
embeds them (base64) so the file can be mailed on its own; the numbers are in ``regimes.json``.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from pnp_imaging.report import _CSS, _fmt, _img_tag, _plt, _savefig

__all__ = ["write_regimes_report", "REGIMES_FIGURES"]

#: figure file name -> caption, in report order.
REGIMES_FIGURES = {
    "excess_entropy.png": "Excess entropy per dimension of the empirical noised distribution, f^e/α against the "
                          "OU time t: ≈0 while the empirical score memorises the training points (t < t_C), → 1 "
                          "at large t. Dashed: the threshold defining t_C; dotted: t_S.",
    "spectrum.png": "Top eigenvalues of the data covariance. Along an eigenvalue λ the noised covariance "
                    "λe^{-2t} + Δ_t exceeds the noise level until t = ½ log λ; the largest gives t_S.",
}


def _entropy_figure(summary: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    t = np.asarray(summary["times"])
    ax.plot(t, np.asarray(summary["f_e"]) / summary["alpha"], "o-", ms=3, label="f^e / α (empirical score)")
    ax.axhline(summary["threshold"], color="gray", ls="--", lw=1, label=f"threshold {summary['threshold']:g}")
    if summary["t_C"] is not None:
        ax.axvline(summary["t_C"], color="C3", lw=1.2, label=f"t_C = {summary['t_C']:.3g}")
    if t[0] <= summary["t_S"] <= t[-1]:
        ax.axvline(summary["t_S"], color="C2", ls=":", lw=1.5, label=f"t_S = {summary['t_S']:.3g}")
    ax.set_xlabel("OU time t  (dx = -x dt + √2 dW)")
    ax.set_ylabel("f^e / α")
    ax.legend(fontsize=8)
    return fig


def _spectrum_figure(summary: dict):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    spec = np.asarray(summary["spectrum"])
    ax.semilogy(np.arange(1, spec.size + 1), spec, "o-", ms=3)
    ax.axhline(1.0, color="gray", ls="--", lw=1, label="λ = 1 (no transition below)")
    ax.set_xlabel("rank")
    ax.set_ylabel("covariance eigenvalue")
    ax.set_title(f"Λ = {summary['Lambda']:.4g},  t_S = ½ log Λ = {summary['t_S']:.3g}", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _numbers_table(summary: dict, source: str) -> list[str]:
    rows = [("data", source), ("n samples × d", f"{summary['n']} × {summary['d']}"), ("Λ (top covariance eigenvalue)", summary["Lambda"]),
            ("t_S = ½ log Λ", summary["t_S"]), ("t_C (collapse)", summary["t_C"] if summary["t_C"] is not None else "not found"),
            ("α = log(n)/d", summary["alpha"]), ("threshold on f^e/α", summary["threshold"]),
            ("Monte Carlo draws per time", summary["n_samples"])]
    out = ["<h2>Numbers</h2><table><tr><th>quantity</th><th>value</th></tr>"]
    out += [f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows]
    out.append("</table>")
    if summary["censored"]:
        out.append("<p class='warn'>f^e/α is still below the threshold at the last time: t_C is only a lower bound; "
                   "rerun with a larger --t-max.</p>")
    return out


def write_regimes_report(summary: dict, out_dir, *, source: str = "") -> Path:
    """Write ``regimes.json``, the figures of :data:`REGIMES_FIGURES` and ``report.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "regimes.json").write_text(json.dumps(summary, indent=1))
    _savefig(_entropy_figure(summary), out / "excess_entropy.png")
    _savefig(_spectrum_figure(summary), out / "spectrum.png")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>dynamical regimes</title><style>{_CSS}</style></head><body>",
             "<h1>pnp_imaging — dynamical regimes of a diffusion model on this data</h1>",
             "<p>Speciation time t_S (backward trajectories commit to a class) and collapse time t_C (the "
             "empirical score starts to memorise the training points), Biroli, Bonnaire, De Bortoli, Mézard 2024 "
             "(arXiv 2402.18491), in the Ornstein–Uhlenbeck time of dx = −x dt + √2 dW, data as given.</p>",
             *_numbers_table(summary, source)]
    for name, caption in REGIMES_FIGURES.items():
        parts.append(f"<figure>{_img_tag(out / name, name)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def _cloning_rows(summary: dict) -> list[tuple[str, str, str, str]]:
    emp = summary.get("empirical_score") or {}
    return [("speciation, 2 super-classes", _fmt(summary["t_S"]), _fmt(summary.get("t_speciation_measured_2_classes")),
             _fmt(emp.get("t_speciation_measured_2_classes"))),
            ("speciation, 10 classes", _fmt(summary["t_S"]), _fmt(summary.get("t_speciation_measured")),
             _fmt(emp.get("t_speciation_measured"))),
            ("collapse (mean per-trajectory t̂_C)", _fmt(summary["t_C"]), _fmt(summary.get("t_collapse_measured")),
             _fmt(emp.get("t_collapse_measured")))]


def write_cloning_report(summary: dict, out_dir) -> Path:
    """``report.html`` of the cloning experiment (``cloning.json`` and ``cloning.png`` already in
    ``out_dir``): predicted and measured times side by side, the figure, the network's samples."""
    out = Path(out_dir)
    head = "<tr><th>time</th><th>predicted</th><th>network</th><th>exact empirical score (memorises)</th></tr>"
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in _cloning_rows(summary))
    samples = summary.get("network_samples") or {}
    keep = ("n_samples", "mean_confidence", "frechet_distance", "tv_to_train_labels", "memorised_fraction")
    sample_rows = "".join(f"<tr><td>{k}</td><td>{_fmt(samples[k])}</td></tr>" for k in keep if k in samples)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cloning experiment</title><style>{_CSS}</style></head><body>",
             "<h1>pnp_imaging — the cloning experiment on the digits</h1>",
             f"<p>Pairs of backward trajectories of <b>{html.escape(str(summary.get('denoiser')))}</b> split at time t "
             f"({summary.get('n_pairs')} pairs per t): speciation is where P(same class) crosses "
             f"{summary.get('threshold')} (Biroli, Bonnaire, De Bortoli, Mézard 2024), collapse where the clones "
             "stop ending on the same training digit. Times in the Ornstein–Uhlenbeck convention, data "
             f"{html.escape(str(summary.get('data_scaling')))}.</p>",
             f"<h2>Predicted and measured</h2><table>{head}{rows}</table>"]
    if (out / "cloning.png").is_file():
        parts.append(f"<figure>{_img_tag(out / 'cloning.png', 'cloning')}<figcaption>P(same class) and P(same nearest "
                     "training digit) against the split time, with t_S and t_C.</figcaption></figure>")
    if sample_rows:
        parts.append(f"<h2>The network's samples</h2><table>{sample_rows}</table>")
    path = out / "report.html"
    path.write_text("\n".join(parts + ["</body></html>"]))
    return path
