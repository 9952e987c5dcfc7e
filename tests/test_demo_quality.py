"""Quality of every demo config, on its own image and on a held-out one (``bench/bench_demos.py``).

Slow tests (``make test-slow``): each demo config x {own, held-out} image runs at the demo's
budget and must improve on the observation by the stated margin:

* deblurring (gray, colour, Poisson) and the mismatch demos built on it:
  MMSE PSNR >= PSNR(y) + 3 dB and MAP PSNR >= PSNR(y);
* 50 % inpainting: MMSE PSNR >= 25 dB;
* all: at most 0.5 % of the final chain states' pixels outside [-0.1, 1.1].

About 20-25 minutes per 256x256 gray run and 6-7 per 128x128 colour run on 2 CPU cores
(``bench/results/bench_demos.json`` has the measured wall times). The fast tests check the criterion
function, that every demo config has a criterion and a held-out image, and the plumbing.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from bench import bench_demos as B

DEMOS = B.demo_configs()


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _summary(y=24.0, map_=27.0, mmse=28.0, frac=0.0):
    return {"psnr_y": y, "psnr_map": map_, "psnr_mmse": mmse, "coverage": 0.9, "credible_level": 0.9,
            "image_range": {"fraction": frac, "n_pixels": 0, "low": -0.1, "high": 1.1}}


# --------------------------------------------------------------------------------------------
# fast: the criteria themselves
# --------------------------------------------------------------------------------------------
def test_every_demo_config_has_a_criterion():
    assert DEMOS, "no demo configs found"
    missing = [d for d in DEMOS if d not in B.CRITERIA]
    assert not missing, f"demo configs without a quality criterion in bench.bench_demos.CRITERIA: {missing}"
    assert set(B.CRITERIA.values()) <= {"deblur", "deblur_no_map", "inpainting"}
    assert B.CRITERIA["inpainting"] == "inpainting"
    # only demos whose sampler computes no MAP (diffusion: independent draws from noise) skip the MAP check
    assert all(B.CRITERIA[d] == ("deblur_no_map" if d.startswith(("diffpir", "dps")) else "deblur")
               for d in DEMOS if "deblur" in d or d.startswith("mismatch"))


def test_a_demo_without_map_is_judged_on_its_mmse_only():
    summary = {"psnr_y": 22.0, "psnr_map": None, "psnr_mmse": 26.0, "image_range": {"fraction": 0.0}}
    assert B.check("diffpir_deblur", summary)["verdict"] == "pass"
    assert B.check("deblur_gray", summary)["verdict"] == "fail"  # its MAP is required
    assert B.check("diffpir_deblur", {**summary, "psnr_mmse": 24.0})["verdict"] == "fail"


def test_deblur_criterion_passes_a_good_summary_and_fails_bad_ones():
    good = B.check("deblur_gray", _summary(y=24.0, map_=27.0, mmse=27.0, frac=0.005))
    assert good["verdict"] == "pass" and not good["failed"], good
    assert {c["name"] for c in good["checks"]} == {"mmse_vs_y", "map_vs_y", "image_range"}

    low_mmse = B.check("deblur_gray", _summary(y=24.0, map_=27.0, mmse=26.9))
    assert low_mmse["verdict"] == "fail"
    assert len(low_mmse["failed"]) == 1 and "MMSE PSNR 26.90 dB" in low_mmse["failed"][0]

    low_map = B.check("deblur_rgb", _summary(y=24.0, map_=23.9, mmse=28.0))
    assert low_map["verdict"] == "fail" and "MAP PSNR 23.90 dB" in low_map["failed"][0]

    escaped = B.check("mismatch_kernel", _summary(frac=0.0051))
    assert escaped["verdict"] == "fail" and "0.510 % of the chains" in escaped["failed"][0]

    missing = B.check("poisson_deblur", {**_summary(), "psnr_map": None, "psnr_mmse": float("nan")})
    assert missing["verdict"] == "fail" and len(missing["failed"]) == 2


def test_inpainting_criterion_ignores_psnr_y():
    ok = B.check("inpainting", _summary(y=8.0, map_=7.0, mmse=25.0))  # PSNR(y) of a half-empty y means nothing
    assert ok["verdict"] == "pass", ok
    assert B.check("inpainting", _summary(y=8.0, mmse=24.99))["verdict"] == "fail"
    assert B.check("inpainting", _summary(mmse=30.0, frac=0.02))["verdict"] == "fail"


def test_unknown_config_has_no_criterion():
    with pytest.raises(KeyError, match="CRITERIA"):
        B.check("no_such_demo", _summary())


def test_recheck_recomputes_the_verdict_from_a_rows_figures():
    row = {"config": "deblur_gray", "status": "ok", "psnr_y": 24.0, "psnr_map": 25.0, "psnr_mmse": 26.0,
           "out_of_range_fraction": 0.0, "image_range": [-0.1, 1.1], "verdict": "pass", "failed": []}
    again = B.recheck(row)
    assert again["verdict"] == "fail" and again["failed"] == ["MMSE PSNR 26.00 dB < PSNR(y) 24.00 dB + 3 dB"]
    crashed = {"config": "deblur_gray", "status": "error", "verdict": "fail", "failed": ["run raised X"]}
    assert B.recheck(crashed) == crashed


@pytest.mark.parametrize("config", DEMOS)
def test_held_out_config_keeps_everything_but_the_image(config, tmp_path):
    """The held-out variant: same channels and size as the demo's own image, same operator, noise,
    prior and budget; only ``image`` changes."""
    from pnp_imaging.config import load_config, resolve_config
    from pnp_imaging.imageio import read_image

    own, _ = B.prepare(config, "own", "demo")
    held, info = B.prepare(config, "heldout", "demo")
    raw = load_config(B.CONFIG_DIR / f"{config}.yaml")
    for key in raw:
        if key != "image":
            assert held[key] == raw[key] == own[key], key
    x_own = read_image(resolve_config(own, base_dir=B.CONFIG_DIR).image)
    x_held = read_image(resolve_config(held, base_dir=B.CONFIG_DIR).image)
    assert x_held.shape == x_own.shape
    assert info["image_file"].startswith("data/astronaut")


def test_readme_table_is_rewritten_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{B.TABLE_START}\nold\n{B.TABLE_END}\nafter\n")
    row = {"config": "deblur_gray", "image": "heldout", "image_file": "data/astronaut_gray_256.png", "budget": "demo",
           "sampler": {"n_steps": 300, "chains": 2}, "map_steps": 300, "status": "ok", "denoiser": "lipdncnn_gray_s5",
           "psnr_y": 24.0, "psnr_map": 23.5, "psnr_mmse": 28.0, "coverage": 0.9, "out_of_range_fraction": 0.0,
           "ess_min": 3.0, "rhat_max": 1.5, "wall_s": 600.0, "created_utc": "2026-01-01T00:00:00Z",
           **B.check("deblur_gray", _summary(y=24.0, map_=23.5, mmse=28.0))}
    assert B.update_readme({"rows": [row]}, readme)
    text = readme.read_text()
    assert "old" not in text and text.startswith("# x\n\nbefore\n") and text.endswith(f"{B.TABLE_END}\nafter\n")
    line = next(ln for ln in text.splitlines() if ln.startswith("| deblur_gray"))
    assert "**FAIL**" in line and "MAP PSNR 23.50 dB" in line and "10.0 min" in line
    bare = tmp_path / "no_markers.md"
    bare.write_text("no markers\n")
    assert not B.update_readme({"rows": [row]}, bare) and bare.read_text() == "no markers\n"


def test_bench_smoke_writes_rows(tmp_path):
    """Plumbing only (the --fast budget: figures meaningless): a held-out run writes a row with
    figures, verdict and provenance; the README is not touched (--smoke, non-default --out)."""
    B.main(["--smoke", "--configs", "deblur_gray", "--images", "heldout", "--out", str(tmp_path), "--threads", "1"])
    doc = json.loads((tmp_path / "bench_demos.json").read_text())
    assert {"benchmark", "status", "mode", "created_utc", "command", "machine", "provenance", "torch_threads", "config",
            "denoiser", "raw", "ratios", "notes", "rows"} <= set(doc)
    assert doc["mode"] == "smoke" and doc["benchmark"] == "bench_demos"
    (row,) = doc["rows"]
    assert (row["config"], row["image"], row["budget"], row["status"]) == ("deblur_gray", "heldout", "fast", "ok")
    for key in ("psnr_y", "psnr_map", "psnr_mmse", "coverage", "out_of_range_fraction", "ess_min", "wall_s"):
        assert isinstance(row[key], float) and math.isfinite(row[key]), key
    assert row["verdict"] in ("pass", "fail") and row["criterion"] == "deblur"
    (w,) = row["provenance"]["weights"]
    assert w["model"] == row["denoiser"] and len(w["sha256"]) == 64
    assert "commit" in row["provenance"]["git"]


# --------------------------------------------------------------------------------------------
# slow: every demo config x {own, held-out} at the demo's budget
# --------------------------------------------------------------------------------------------
def _figs(row) -> str:
    def f(v, spec=".2f"):
        return "n/a" if v is None else format(v, spec)

    frac = row.get("out_of_range_fraction")
    return (f"{row['config']} on its {row['image']} image ({row.get('image_file')}): PSNR y {f(row.get('psnr_y'))} dB, "
            f"MAP {f(row.get('psnr_map'))} dB, MMSE {f(row.get('psnr_mmse'))} dB, "
            f"{f(None if frac is None else 100 * frac, '.3f')} % of pixels outside [-0.1, 1.1], "
            f"coverage of the 90% intervals {f(row.get('coverage'), '.3f')}, min ESS {f(row.get('ess_min'), '.1f')}, "
            f"max R-hat {f(row.get('rhat_max'))}, denoiser {row.get('denoiser')}")


@pytest.mark.slow
@pytest.mark.parametrize("image", B.IMAGES)
@pytest.mark.parametrize("config", DEMOS)
def test_demo_quality(config, image):
    row = B.run_one(config, image, "demo")
    assert row["status"] == "ok", f"{config} on {image}: the run raised {row.get('error')}"
    figs = _figs(row)
    y, mp, mm, frac = row["psnr_y"], row["psnr_map"], row["psnr_mmse"], row["out_of_range_fraction"]
    assert row["credible_level"] == pytest.approx(0.9), figs
    assert mm is not None and frac is not None, figs
    if B.CRITERIA[config] == "deblur":
        assert y is not None and mp is not None, figs
        assert mm >= y + B.MMSE_MARGIN_DB, (
            f"MMSE PSNR {mm:.2f} dB < PSNR(y) {y:.2f} + {B.MMSE_MARGIN_DB:g} dB = {y + B.MMSE_MARGIN_DB:.2f} dB; "
            f"{figs}")
        assert mp >= y, f"MAP PSNR {mp:.2f} dB < PSNR(y) {y:.2f} dB; {figs}"
    else:
        assert mm >= B.INPAINTING_MMSE_DB, f"MMSE PSNR {mm:.2f} dB < {B.INPAINTING_MMSE_DB:g} dB; {figs}"
    assert frac <= B.MAX_OUT_OF_RANGE, (
        f"{100 * frac:.3f} % of the chains' pixels outside [-0.1, 1.1] > {100 * B.MAX_OUT_OF_RANGE:g} %; {figs}")
    assert row["verdict"] == "pass", f"check() disagrees: {row['failed']}; {figs}"
