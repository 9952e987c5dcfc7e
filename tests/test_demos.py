"""Every demo script runs end to end with its --fast budget (so the demos cannot rot)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pnp_imaging.config import fast_budget

#: demos made of several runs (no config of their own; tested below on their own outputs)
SWEEPS = {"demo_mismatch_sweep"}
DEMOS = sorted(p for p in (Path(__file__).resolve().parent.parent / "demos").glob("demo_*.py") if p.stem not in SWEEPS)


def test_all_demo_configs_have_a_script():
    configs = {p.stem for p in (DEMOS[0].parent / "configs").glob("*.yaml")}
    scripts = {p.stem.removeprefix("demo_") for p in DEMOS}
    assert configs == scripts


@pytest.mark.parametrize("script", DEMOS, ids=[p.stem for p in DEMOS])
def test_demo_runs_fast(script, tmp_path):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    summary = module.main(["--fast", "--quiet", "--out", str(out)])
    assert (out / "report.html").is_file()
    saved = json.loads((out / "summary.json").read_text())
    budget = fast_budget()["sampler"]
    assert saved["n_kept"] == summary["n_kept"] == budget["n_steps"] - budget["n_burnin"]
    if "mismatch" in script.stem:
        assert saved["mismatch"], "mismatch section missing"


@pytest.mark.parametrize("config", sorted((DEMOS[0].parent / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_resolve_from_any_working_directory(config, tmp_path, monkeypatch):
    """Relative paths in a config are resolved against the config file's folder, so
    ``pnp-imaging run demos/configs/X.yaml`` works from the repository root (and anywhere else)."""
    from pnp_imaging.config import resolve_config

    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(config)
    assert Path(cfg.image).is_file()


def test_mismatch_sweep_fast(tmp_path):
    """The sweep's --fast mode (16 × 16 crop, 2 points per family): JSON, figure and report appear,
    the no-mismatch points have pseudometric exactly 0 (the two chains share every random number,
    so the measured MMSE distance is 0 too) and the mismatched ones a positive pseudometric, finite
    bounds in their ranges and a measured distance within the (possibly trivial) MMSE bound."""
    import math

    script = DEMOS[0].parent / "demo_mismatch_sweep.py"
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "sweep"
    module.main(["--fast", "--quiet", "--out", str(out)])
    doc = json.loads((out / "sweep.json").read_text())
    assert (out / "sweep.png").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "<table>" in page
    points = doc["points"]
    assert [p["family"] for p in points] == ["operator"] * 2 + ["prior"] * 2
    for p in points:
        for key in ("drift_pseudometric", "tv_bound", "mmse_bound", "mmse_distance_max", "mmse_distance_rms",
                    "psnr_mmse", "other_psnr_mmse"):
            assert math.isfinite(p[key]), (p["label"], key)
        assert 0.0 <= p["tv_bound"] <= 1.0 and 0.0 <= p["mmse_bound"] <= p["box_width"]
        assert p["mmse_distance_rms"] <= p["mmse_distance_max"] <= p["box_width"]
    same_kernel = next(p for p in points if p["label"].startswith("assumed std 2 "))
    same_prior = next(p for p in points if p["label"] == "lipdncnn_gray_s5 vs lipdncnn_gray_s5")
    for p in (same_kernel, same_prior):
        assert p["drift_pseudometric"] == 0.0 and p["tv_bound"] == 0.0 and p["mmse_distance_max"] == 0.0, p["label"]
        assert p["psnr_mmse"] == p["other_psnr_mmse"]
    for p in points:
        if p not in (same_kernel, same_prior):
            assert p["drift_pseudometric"] > 0.0 and p["mmse_distance_max"] > 0.0, p["label"]
