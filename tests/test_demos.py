"""Every demo script runs end to end with its --fast budget (so the demos cannot rot)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pnp_imaging.config import fast_budget

DEMOS = sorted((Path(__file__).resolve().parent.parent / "demos").glob("demo_*.py"))


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
