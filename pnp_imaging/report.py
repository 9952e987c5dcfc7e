"""Self-contained HTML uncertainty report, rendered from a results folder alone.

``write_figures(run_dir)`` writes the PNG figures; ``render_report(run_dir)`` writes
``report.html`` with every figure embedded (base64), so the file can be mailed on its own.
Both read only what :func:`pnp_imaging.api.run` saved (``summary.json``, ``estimates.npz``,
``traces.npz``, ``config.resolved.yaml``), which is what makes ``pnp-imaging report DIR``
possible after the fact.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_figures", "render_report", "FIGURES"]

#: figure file name -> caption, in report order.
FIGURES = {
    "images.png": "Observation, MAP, MMSE and ground truth (when known).",
    "uncertainty.png": "Per-pixel posterior standard deviation and credible-interval width.",
    "multiscale_std.png": "Multi-scale uncertainty: std of the posterior mean over k×k blocks.",
    "error_vs_std.png": "Absolute error of the MMSE against posterior std (when truth is known).",
    "map_minus_mmse.png": "MAP − MMSE difference map.",
    "traces.png": "Scalar traces (every iteration, all chains) and their autocorrelation.",
    "samples.png": "Posterior draws: the last state of the first chains (for the diffusion samplers, "
                   "independent samples unless particle guidance couples them).",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(img: np.ndarray) -> np.ndarray:
    """[C,H,W] -> [H,W] or [H,W,3] clipped to [0,1] for imshow."""
    img = np.asarray(img)
    if img.ndim == 4:
        img = img[0]
    if img.shape[0] == 1:
        return np.clip(img[0], 0, 1)
    return np.clip(np.moveaxis(img, 0, -1), 0, 1)


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 4:
        img = img[0]
    return img.mean(axis=0)


def load_results(run_dir: str | Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    missing = [n for n in ("summary.json", "estimates.npz") if not (run_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir}: missing {', '.join(missing)}; is this a `pnp-imaging run` output folder?")
    out: dict[str, Any] = {"dir": run_dir}
    out["summary"] = json.loads((run_dir / "summary.json").read_text())
    with np.load(run_dir / "estimates.npz") as data:
        out["estimates"] = {k: data[k] for k in data.files}
    traces = run_dir / "traces.npz"
    if traces.is_file():
        with np.load(traces, allow_pickle=False) as data:
            out["traces"] = {k: data[k] for k in data.files}
    cfg = run_dir / "config.resolved.yaml"
    out["config_text"] = cfg.read_text() if cfg.is_file() else ""
    return out


def _savefig(fig, path: Path) -> None:
    fig.savefig(path, dpi=90, bbox_inches="tight")
    _plt().close(fig)


def _grid(nrows: int, ncols: int, figsize: tuple[float, float]):
    """Figure and a 2-D array of axes under constrained layout, which reserves room for every
    title, tick label and colorbar, so no panel's labels run into its neighbour."""
    return _plt().subplots(nrows, ncols, figsize=figsize, layout="constrained", squeeze=False)


def _image_panel(fig, ax, img: np.ndarray, title: str, *, colorbar: bool = True, **imshow) -> None:
    """One image with its title, no axes and (by default) a slim colorbar with small tick labels."""
    im = ax.imshow(img, **imshow)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    if colorbar:
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=7)


def _level_percent(res: dict) -> int:
    return int(round(100 * res["summary"].get("credible_level", 0.9)))


def _images_figure(res: dict):
    """Observation, MAP, MMSE and ground truth side by side (those that exist)."""
    est = res["estimates"]
    panels = [("observation y", est.get("y"))]
    if "map" in est:
        panels.append((f"MAP{_psnr_label(res, 'map')}", est["map"]))
    panels.append((f"MMSE{_psnr_label(res, 'mmse')}", est["mmse"]))
    if "x_true" in est:
        panels.append(("ground truth", est["x_true"]))
    panels = [(t, im) for t, im in panels if im is not None]
    fig, axes = _grid(1, len(panels), (2.5 * len(panels), 2.8))
    for ax, (title, img) in zip(axes.flat, panels):
        _image_panel(fig, ax, _show(img), title, colorbar=False, cmap="gray", vmin=0, vmax=1)
    return fig


def _uncertainty_figure(res: dict):
    """Per-pixel posterior std and credible-interval width."""
    est = res["estimates"]
    width = (f"{_level_percent(res)}% interval width" if not res["summary"].get("guidance")
             else "spread of guided draws (not a credible interval)")
    panels = [("posterior std", _gray(est["std"])), (width, _gray(est["upper"] - est["lower"]))]
    fig, axes = _grid(1, 2, (7.5, 3.4))
    for ax, (title, img) in zip(axes.flat, panels):
        _image_panel(fig, ax, img, title, cmap="magma")
    return fig


def _multiscale_std_figure(res: dict):
    """Std of the posterior mean over k×k blocks, one panel per scale, at most 3 per row."""
    est = res["estimates"]
    scales = sorted(int(k.split("_")[-1]) for k in est if k.startswith("multiscale_std_"))
    if not scales:
        return None
    nrows = -(-len(scales) // 3)
    ncols = -(-len(scales) // nrows)
    fig, axes = _grid(nrows, ncols, (3.3 * ncols, 3.0 * nrows))
    for ax, k in zip(axes.flat, scales):
        _image_panel(fig, ax, _gray(est[f"multiscale_std_{k}"]), f"{k}×{k} blocks", cmap="magma")
    for ax in axes.flat[len(scales):]:
        ax.set_visible(False)
    return fig


def _error_vs_std_figure(res: dict):
    """|MMSE − truth| map and a scatter of the error against the posterior std (needs the truth)."""
    est = res["estimates"]
    if "x_true" not in est:
        return None
    abs_err = np.abs(est["mmse"] - est["x_true"])
    fig, axes = _grid(1, 2, (8.0, 3.4))
    _image_panel(fig, axes[0, 0], _gray(abs_err), "|MMSE − truth|", cmap="magma")
    err, std = abs_err.ravel(), est["std"].ravel()
    idx = np.random.default_rng(0).choice(err.size, size=min(err.size, 4000), replace=False)
    ax = axes[0, 1]
    ax.scatter(std[idx], err[idx], s=2, alpha=0.4)
    lim = float(max(std[idx].max(), 1e-12))
    ax.plot([0, lim], [0, lim], "k--", lw=0.8, label="error = std")
    ax.set_xlabel("posterior std")
    ax.set_ylabel("|error|")
    cov = res["summary"].get("coverage")
    ax.set_title(f"coverage of {_level_percent(res)}% intervals: {cov:.3f}" if cov is not None else "", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def _map_minus_mmse_figure(res: dict):
    """MAP − MMSE difference on a symmetric diverging scale (needs the MAP)."""
    est = res["estimates"]
    if "map" not in est:
        return None
    diff = _gray(est["map"] - est["mmse"])
    lim = float(np.abs(diff).max()) or 1.0
    fig, axes = _grid(1, 1, (3.8, 3.4))
    _image_panel(fig, axes[0, 0], diff, "MAP − MMSE", cmap="RdBu_r", vmin=-lim, vmax=lim)
    return fig


def _traces_figure(res: dict):
    """Each scalar trace (all chains, burn-in marked) next to its autocorrelation after burn-in."""
    tr = res.get("traces")
    if tr is None or "values" not in tr or not tr["values"].size:
        return None
    from pnp_imaging.diagnostics import autocorrelation

    values = tr["values"]  # [chains, steps, n_traces]
    names = [str(n) for n in tr["names"]]
    n = values.shape[-1]
    burn = int(res["summary"].get("n_burnin", 0))
    fig, axes = _grid(n, 2, (9, 1.9 * n))
    for i in range(n):
        for c in range(values.shape[0]):
            axes[i, 0].plot(values[c, :, i], lw=0.6, label=f"chain {c}")
            kept = values[c, burn:, i]
            if kept.size > 4:
                acf = autocorrelation(kept)
                lags = min(len(acf), 200)
                axes[i, 1].plot(np.arange(lags), acf[:lags], lw=0.8)
        axes[i, 0].axvline(burn, color="k", ls=":", lw=0.8)
        axes[i, 0].set_ylabel(names[i], fontsize=7)
        axes[i, 1].axhline(0, color="k", lw=0.5)
        axes[i, 1].set_ylim(-0.2, 1.0)
    axes[0, 0].set_title("traces (dotted: end of burn-in)", fontsize=9)
    axes[0, 1].set_title("autocorrelation after burn-in", fontsize=9)
    axes[-1, 0].set_xlabel("iteration")
    axes[-1, 1].set_xlabel("lag")
    return fig


#: figure file name -> function of the loaded results returning a figure, or None when the
def _samples_figure(res: dict):
    """A grid of the saved posterior draws (``estimates.npz`` ``samples``), four per row."""
    draws = res["estimates"].get("samples")
    if draws is None or len(draws) == 0:
        return None
    ncols = min(4, len(draws))
    nrows = -(-len(draws) // ncols)
    fig, axes = _grid(nrows, ncols, (2.3 * ncols, 2.4 * nrows))
    for i, ax in enumerate(axes.flat):
        if i < len(draws):
            _image_panel(fig, ax, _show(draws[i][None]), f"draw {i + 1}", colorbar=False, cmap="gray", vmin=0, vmax=1)
        else:
            ax.axis("off")
    return fig


#: run lacks what the figure needs. Same keys, same order as :data:`FIGURES`.
_FIGURE_MAKERS = {
    "images.png": _images_figure,
    "uncertainty.png": _uncertainty_figure,
    "multiscale_std.png": _multiscale_std_figure,
    "error_vs_std.png": _error_vs_std_figure,
    "map_minus_mmse.png": _map_minus_mmse_figure,
    "traces.png": _traces_figure,
    "samples.png": _samples_figure,
}


def write_figures(run_dir: str | Path) -> list[str]:
    """Write the report's PNG figures into ``run_dir``; returns the file names written."""
    res = load_results(run_dir)
    written: list[str] = []
    for name, make in _FIGURE_MAKERS.items():
        fig = make(res)
        if fig is not None:
            _savefig(fig, Path(run_dir) / name)
            written.append(name)
    return written


def _psnr_label(res: dict, which: str) -> str:
    value = res["summary"].get(f"psnr_{which}")
    return f" ({value:.2f} dB)" if value is not None else ""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.5em 1em;margin:.4em 0}
.ok{background:#e7f5e9;border:1px solid #8cc79a;padding:.5em 1em;margin:.4em 0}
figure{margin:1em 0} figcaption{font-size:.85em;color:#555} img{max-width:100%}
pre{background:#f6f6f6;padding:.8em;font-size:.8em;overflow-x:auto}
"""


def _header(s: dict) -> list[str]:
    return [
        f"<!doctype html><html><head><meta charset='utf-8'><title>pnp_imaging report</title><style>{_CSS}</style></head><body>",
        "<h1>pnp_imaging — posterior sampling report</h1>",
        f"<p>Sampler <b>{_fmt(s.get('sampler'))}</b>, denoiser <b>{_fmt(s.get('denoiser'))}</b>, "
        f"{_fmt(s.get('n_kept'))} kept samples × {_fmt(s.get('chains'))} chains, step size δ = {_fmt(s.get('step_size'))}, "
        f"wall time {_fmt(s.get('wall_s'))} s.</p>",
        *_bias_sentence(s.get("sampler")),
    ]


def _stop_line(s: dict) -> list[str]:
    """One sentence on how a run-until-converged run ended (nothing for a fixed-length run)."""
    stop = s.get("stop") or {}
    rule = stop.get("until")
    if not rule:
        return []
    target = f"min ESS ≥ {rule['ess']:g} and max R̂ ≤ {rule['rhat']:g} on every traced quantity"
    budget = f"n_steps = {stop.get('n_steps_max')}" + (f", {rule['max_minutes']:g} min" if rule.get("max_minutes") else "")
    how = {"converged": f"<b>stopped converged</b>: {target} reached",
           "max_minutes": f"<b>stopped on budget</b> (time, {budget}) before {target}",
           "n_steps": f"<b>stopped on budget</b> (iterations, {budget}) before {target}"}.get(stop.get("reason"),
                                                                                              html.escape(str(stop.get("reason"))))
    cls = "ok" if stop.get("reason") == "converged" else "warn"
    return [f"<div class='{cls}'>Run until converged: {how}, after {stop.get('iterations')} iterations "
            f"({_fmt(stop.get('elapsed_s'))} s of sampling).</div>"]


def _bias_sentence(name) -> list[str]:
    """The sampler family's known bias (``SamplerSpec.bias``), one sentence."""
    from pnp_imaging.samplers import get_sampler

    try:
        bias = get_sampler(str(name)).bias
    except ValueError:
        return []
    return [f"<p><i>Known bias of {html.escape(str(name))}:</i> {html.escape(bias)}</p>"] if bias else []


def _verdict_section(s: dict) -> list[str]:
    from pnp_imaging.diagnostics import MAX_RHAT, MIN_ESS

    parts = ["<h2>Verdict</h2>", *_stop_line(s)]
    warnings = s.get("warnings") or []
    if not warnings:
        return parts + [f"<div class='ok'>No warning: every tracked quantity has ESS ≥ {MIN_ESS:g} and "
                        f"R̂ ≤ {MAX_RHAT:g}, and the chains stayed in the image range.</div>"]
    parts.append(
        "<div class='warn'><b>Not converged or not trustworthy — treat the MMSE and the intervals as unreliable.</b> "
        f"Smallest effective sample size {_fmt(s.get('ess_min'))} (want ≥ {MIN_ESS:g}), largest split-R̂ "
        f"{_fmt(s.get('rhat_max'))} (want ≤ {MAX_RHAT:g}). Run longer chains (sampler.n_steps) or more chains "
        "(sampler.chains); the warnings below name any other cause.</div>")
    parts.append(f"<details open><summary>{len(warnings)} warnings</summary><ul>")
    parts.extend(f"<li>{html.escape(w)}</li>" for w in warnings)
    return parts + ["</ul></details>"]


def _draws_section(s: dict) -> list[str]:
    """How independent the draws are: their diversity and, under particle guidance, the statement
    that guided draws are not i.i.d. posterior samples (so no intervals or coverage from them)."""
    diversity, guidance = s.get("sample_diversity"), s.get("guidance") or 0.0
    if diversity is None and not guidance:
        return []
    parts = ["<h2>Draws</h2>"]
    if diversity is not None:
        parts.append(f"<p>Sample diversity (mean RMS distance between the last states of two chains): "
                     f"{_fmt(diversity)}.</p>")
    if guidance:
        parts.append(f"<div class='warn'>Particle guidance (weight c = {_fmt(guidance)}) pushes the draws of a "
                     "batch apart to cover more modes: they are <b>not i.i.d. posterior draws</b>. Their mean is "
                     "reported, but their spread is no credible interval, so no coverage is computed from them. "
                     "Compare the diversity above with an unguided run (guidance 0) to see the gain.</div>")
    return parts


def _table(title: str, rows, header=("quantity", "value")) -> list[str]:
    """An HTML table section: ``rows`` are tuples of already formatted cells."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return [f"<h2>{title}</h2><table><tr>{head}</tr>", *body, "</table>"] if body else []


_METRICS = ("psnr_y", "psnr_map", "psnr_mmse", "ssim_map", "ssim_mmse", "coverage", "ess_min", "rhat_max",
            "mcse_mmse_rms", "mcse_mmse_p99", "mcse_mmse_max")
_METADATA = ("seed", "versions", "timings", "started", "n_steps", "n_burnin", "thin", "map", "start")


def _figures_section(run_dir: Path) -> list[str]:
    return [f"<figure>{_img_tag(run_dir / name, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"
            for name, caption in FIGURES.items() if (run_dir / name).is_file()]


def _metadata_section(s: dict, config_text: str) -> list[str]:
    rows = []
    if s.get("denoiser_card"):
        link = html.escape(s["denoiser_card"])
        rows.append(("denoiser model card", f"<a href='{link}'>{link}</a>"))
    for key in (k for k in _METADATA if k in s):
        value = json.dumps(s[key], default=str) if isinstance(s[key], dict) else s[key]
        rows.append((key, _fmt(value)))
    parts = ["<h2>Run metadata</h2><table>", *(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows), "</table>"]
    if config_text:
        parts.append(f"<h3>Resolved config</h3><pre>{html.escape(config_text)}</pre>")
    return parts


# ---------------------------------------------------------------------- model mismatch
_MISMATCH_ROWS = (("drift pseudometric √E‖b¹−b²‖² (± MCSE)", "drift_pseudometric"),
                  ("posterior-L2 pseudometric d(D¹, D²) (Renaud et al. 2024)", "d_posterior_l2"),
                  ("‖A¹ − A²‖₂", "operator_norm_difference"), ("horizon n (steps) = ⌈τ_int⌉", "horizon_steps"),
                  ("TV bound after n steps", "tv_bound"), ("per-pixel MMSE bound (hi − lo)·TV", "mmse_bound"),
                  ("measured max |MMSE¹ − MMSE²|", "mmse_distance_max"), ("measured RMS MMSE¹ − MMSE²", "mmse_distance_rms"))


def _mismatch_reading(m: dict) -> str:
    """The plain-language paragraph under the mismatch table."""
    tv, n = m.get("tv_bound"), m.get("horizon_steps")
    text = (f"If both models were sampled with this sampler's step from the same start, drawn from the posterior "
            f"sampled here, their laws after n = {_fmt(n)} steps (about one integrated autocorrelation time of the "
            f"slowest traced direction, {html.escape(str(m.get('tau_trace')))}) differ in total variation by at most "
            f"{_fmt(tv)}; the bound holds for {html.escape(str(m.get('bound_applies_to')))}. ")
    if tv is not None and tv >= 1.0:
        text += "That is the trivial value 1: the bound says nothing for this mismatch and horizon. "
    elif m.get("mmse_bound") is not None:
        text += f"So no pixel's posterior mean (clipped to the box) can move by more than {_fmt(m['mmse_bound'])}. "
    text += ("It is a finite-horizon bound: it does not bound the distance between the two stationary posteriors, "
             "which also depends on how fast the second chain forgets its start.")
    if m.get("mmse_distance_max") is not None:
        text += (f" The second chain, run here, moved the MMSE by up to {_fmt(m['mmse_distance_max'])} "
                 f"(± {_fmt(m.get('mmse_distance_max_mcse'))}).")
    return text


def _mismatch_figure(run_dir: Path) -> list[str]:
    path = run_dir / "mismatch.npz"
    if not path.is_file():
        return []
    with np.load(path) as data:
        maps = [(t, data[k]) for k, t in (("denoiser_rms", "RMS of D¹ − D² per pixel"),
                                          ("drift_rms", "RMS of b¹ − b² per pixel")) if k in data.files]
    fig, axes = _grid(1, len(maps), (3.2 * len(maps), 3.0))
    for ax, (title, img) in zip(axes.flat, maps):
        _image_panel(fig, ax, img, title, cmap="magma")
    _savefig(fig, run_dir / "mismatch_map.png")
    caption = "Where the two models differ, averaged over the kept chain states (E over the sampled posterior)."
    return [f"<figure>{_img_tag(run_dir / 'mismatch_map.png', caption)}<figcaption>{caption}</figcaption></figure>"]


def _mismatch_section(run_dir: Path, m: dict | None) -> list[str]:
    """Numbers with MCSE, the plain-language reading, warnings and the per-pixel maps."""
    if not m:
        return []
    rows = [(label, _fmt(m[k]) + (f" ± {_fmt(m[k + '_mcse'])}" if m.get(k + "_mcse") is not None else ""))
            for label, k in _MISMATCH_ROWS if m.get(k) is not None]
    parts = _table("Model mismatch", rows) + [f"<p>{_mismatch_reading(m)}</p>"]
    parts += [f"<div class='warn'>{html.escape(w)}</div>" for w in m.get("warnings") or []]
    return parts + _mismatch_figure(run_dir)


def render_report(run_dir: str | Path, *, regenerate_figures: bool = True) -> Path:
    """Write ``run_dir/report.html`` (self-contained) and return its path."""
    from pnp_imaging._io import atomic_write_text

    run_dir = Path(run_dir)
    if regenerate_figures:
        write_figures(run_dir)
    res = load_results(run_dir)
    s = res["summary"]
    diag = s.get("diagnostics") or {}
    parts = _header(s) + _verdict_section(s)
    parts += _table("Figures of merit", [(k, _fmt(s[k])) for k in _METRICS if s.get(k) is not None])
    parts += _figures_section(run_dir) + _draws_section(s)
    parts += _table("Convergence diagnostics",
                    [(html.escape(n), _fmt(d.get("ess_bulk")), _fmt(d.get("ess_tail")), _fmt(d.get("rhat")),
                      html.escape(d.get("verdict", ""))) for n, d in diag.items()],
                    header=("trace", "bulk ESS", "tail ESS", "split-R̂", "verdict"))
    parts += _mismatch_section(run_dir, s.get("mismatch"))
    parts += _metadata_section(s, res["config_text"]) + ["</body></html>"]
    return atomic_write_text(run_dir / "report.html", "\n".join(parts))

