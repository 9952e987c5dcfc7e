"""Every demo script runs end to end with its --fast budget (so the demos cannot rot)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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
    assert saved["n_kept"] == summary["n_kept"] == 4
    if "mismatch" in script.stem:
        assert saved["mismatch"], "mismatch section missing"
