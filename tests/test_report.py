"""Report figures from a hand-made results folder (no sampling): which figures are written,
and that no panel's title, tick labels or colorbar runs into a neighbouring panel."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from pnp_imaging import report


def _results_folder(path: Path, *, truth: bool = True, map_: bool = True, scales=(1, 2, 4, 8),
                    samples: bool = True) -> Path:
    """The files :func:`pnp_imaging.api.run` writes that the report reads, with small arrays whose
    value ranges give long tick labels (0.0150, 0.0025, ...), the case that used to overlap."""
    rng = np.random.default_rng(0)
    shape = (1, 32, 32)
    x = rng.uniform(0.2, 0.8, shape)
    std = rng.uniform(0.01, 0.11, shape)
    est = {"y": x + rng.normal(0, 0.05, shape), "mmse": x + rng.normal(0, 0.02, shape), "std": std,
           "lower": x - 1.6 * std, "upper": x + 1.6 * std}
    if truth:
        est["x_true"] = x
    if map_:
        est["map"] = x + rng.normal(0, 0.03, shape)
    if samples:  # 3 draws: a grid row with one empty cell
        est["samples"] = x[None] + rng.normal(0, 0.05, (3, *shape))
    for k in scales:
        est[f"multiscale_std_{k}"] = rng.uniform(0.002, 0.002 + 0.014 / k, (1, 32 // k, 32 // k))
    path.mkdir(parents=True)
    np.savez_compressed(path / "estimates.npz", **est)
    values = np.cumsum(rng.normal(size=(2, 12, 3)), axis=1)  # [chains, steps, n_traces]
    np.savez_compressed(path / "traces.npz", names=np.asarray(["proj0", "proj1", "loglik"]), values=values)
    summary = {"sampler": "skrock", "denoiser": "drunet_gray", "n_kept": 10, "chains": 2, "n_burnin": 2,
               "credible_level": 0.9, "warnings": [], "psnr_mmse": 25.0}
    if truth:
        summary["coverage"] = 0.73
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def _overlapping_axes(fig) -> list[str]:
    """Pairs of visible axes (colorbars included) whose drawn extents, labels and titles
    included, share more than one pixel."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(ax, ax.get_tightbbox(renderer)) for ax in fig.axes if ax.get_visible()]
    bad = []
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        inter = type(box_a).intersection(box_a, box_b)
        if inter is not None and inter.width * inter.height > 1.0:
            bad.append(f"{a.get_label() or a.get_title()!r} / {b.get_label() or b.get_title()!r}")
    return bad


@pytest.mark.parametrize("name", list(report.FIGURES))
def test_no_panel_runs_into_its_neighbour(tmp_path, name):
    res = report.load_results(_results_folder(tmp_path / "run"))
    fig = report._FIGURE_MAKERS[name](res)
    try:
        assert _overlapping_axes(fig) == []
    finally:
        report._plt().close(fig)


def test_write_figures_writes_every_figure_in_report_order(tmp_path):
    run = _results_folder(tmp_path / "run")
    assert list(report._FIGURE_MAKERS) == list(report.FIGURES)
    assert report.write_figures(run) == list(report.FIGURES)
    assert all((run / name).stat().st_size > 1000 for name in report.FIGURES)


def test_figures_that_need_truth_or_map_are_left_out_without_them(tmp_path):
    run = _results_folder(tmp_path / "run", truth=False, map_=False, scales=(), samples=False)
    assert report.write_figures(run) == ["images.png", "uncertainty.png", "traces.png"]
    html = report.render_report(run).read_text()
    assert html.count("<img ") == 3


def test_multiscale_panels_wrap_to_rows_of_at_most_three(tmp_path):
    res = report.load_results(_results_folder(tmp_path / "run", scales=(1, 2, 4, 8, 16)))
    fig = report._multiscale_std_figure(res)
    try:
        images = [ax for ax in fig.axes if ax.get_visible() and ax.images and ax.get_title()]
        rows = {round(ax.get_position().y0, 3) for ax in images}
        assert len(images) == 5 and len(rows) == 2
    finally:
        report._plt().close(fig)


def test_report_states_the_samplers_known_bias(tmp_path):
    from pnp_imaging.samplers import get_sampler

    run = _results_folder(tmp_path / "run")
    html_text = report.render_report(run, regenerate_figures=False).read_text()
    assert "Known bias of skrock" in html_text
    assert get_sampler("skrock").bias.split(" (")[0] in html_text


def test_every_sampler_family_states_its_known_bias():
    """The report's one sentence exists for every registered family, the diffusion ones included."""
    from pnp_imaging.samplers import get_sampler
    from pnp_imaging.samplers.kernel import sampler_names

    missing = [n for n in sampler_names() if not get_sampler(n).bias.strip()]
    assert not missing, f"no bias sentence for {missing}"
