"""Plumbing of the benchmarks in ``bench/``: each runs at its tiniest setting (``--smoke``) and
writes JSON with the agreed keys, provenance included (git state, sha256 of the weights used);
the shipped results are not stale. Timings and ratios are NEVER asserted here (noisy; the
benchmarks themselves report them as ratios against an in-run anchor)."""
from __future__ import annotations

import json
import math

import denoisers_zoo
import pytest
import torch

COMMON_KEYS = {"benchmark", "status", "mode", "created_utc", "command", "machine", "provenance", "torch_threads",
               "config", "denoiser", "raw", "ratios", "notes"}
SMOKE = ["--smoke", "--fallback", "untrained", "--lipschitz", "1.0"]


@pytest.fixture(autouse=True)
def _isolate_torch_state():
    """The benches set the thread count and the global seed (scripts); restore both."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng():
        yield
    torch.set_num_threads(threads)


def _load(tmp_path, name: str) -> dict:
    doc = json.loads((tmp_path / f"{name}.json").read_text())
    assert COMMON_KEYS <= set(doc), COMMON_KEYS - set(doc)
    assert doc["benchmark"] == name
    assert doc["mode"] == "smoke"
    assert isinstance(doc["notes"], str) and doc["notes"]
    assert doc["machine"]["torch"] == torch.__version__
    assert doc["denoiser"]["requested"] == denoisers_zoo.default_prior(1)
    git, weights = doc["provenance"]["git"], doc["provenance"]["weights"]
    assert {"commit", "clean"} <= set(git) and git["clean"] in (True, False, None)
    shipped = denoisers_zoo.read_manifest()["models"][doc["denoiser"]["requested"]]["sha256"]
    assert [w["sha256"] for w in weights] == [shipped]
    return doc


def test_sampler_overhead_smoke(tmp_path):
    from bench import bench_sampler_overhead as b

    b.main([*SMOKE, "--out", str(tmp_path)])
    doc = _load(tmp_path, b.NAME)
    for m in ("denoiser", "pnp_ula_run_chain", "pnp_ula_run_chain_burnin", "pnp_ula_step", "skrock_stage", "deepinv_ula", "deepinv_skrock_stage"):
        v = doc["raw"]["seconds_per_unit"][m]
        assert len(v) == doc["config"]["reps"] and all(math.isfinite(t) and t > 0 for t in v)
    for key in ("pnp_ula_run_chain/denoiser", "skrock_stage/denoiser", "deepinv_ula/denoiser", "in_loop", "target"):
        assert key in doc["ratios"]
    assert "pnp_ula_run_chain/denoiser_inside" in doc["ratios"]["in_loop"]
    assert doc["config"]["operator_mismatch_vs_deepinv"] < 1e-5


def test_map_smoke(tmp_path):
    from bench import bench_map as b

    b.main([*SMOKE, "--out", str(tmp_path)])
    doc = _load(tmp_path, b.NAME)
    assert doc["paper"]["P2_map_vs_mmse"] == "could not be checked (docs/algorithms.md §pnp-sgd)"
    assert "could not be checked (docs/algorithms.md §pnp-sgd)" in doc["notes"]
    for kind in ("deblur", "inpainting"):
        methods = doc["raw"]["problems"][kind]["methods"]
        for m in ("ours_map_pnp_sgd", "ours_mmse_skrock", "pnp_gd_deterministic", "deepinv_dpir", "deepinv_pnp_hqs",
                  "deepinv_pnp_pgd", "back_projection"):
            assert m in methods
        assert methods["pnp_gd_deterministic"]["perturbation"] == 0.0
        ws = doc["raw"]["problems"][kind]["warm_start"]
        assert {"init_map", "init_back_projection"} <= set(ws)
        assert {"psnr_minus_ours_map_db", "wall_time_over_ours_map", "mmse_minus_map_db"} <= set(doc["ratios"][kind])


def test_burnin_from_band():
    import numpy as np

    from bench.bench_map import burnin_from_band

    assert burnin_from_band(np.array([-9.0, -5.0, -1.0, -1.2]), -1.5, -0.5) == 3
    assert burnin_from_band(np.array([-9.0, -5.0]), -1.5, -0.5) is None


def test_time_to_target_must_stay_in_band():
    from bench.bench_mmse_speed import time_to_target

    ev = [{"t": t, "psnr_truth": p, "evals": 10 * t, "iteration": t} for t, p in
          [(1, 30.0), (2, 30.96), (3, 31.2), (4, 30.97), (5, 31.02)]]
    r = time_to_target(ev, 31.0, 0.05)
    assert r["reached"] and r["t_s"] == 4  # entered at t=2, left at t=3, back for good at t=4
    assert not time_to_target(ev[:3], 31.0, 0.05)["reached"]


@pytest.mark.slow
def test_mmse_speed_smoke(tmp_path):
    from bench import bench_mmse_speed as b

    b.main([*SMOKE, "--out", str(tmp_path)])
    doc = _load(tmp_path, b.NAME)
    assert {"deepinv_ula_auto/ours", "deepinv_ula_docs/ours"} <= set(doc["ratios"])
    c = doc["raw"]["contenders"]
    assert {"ours", "deepinv_ula_auto", "deepinv_ula_docs"} <= set(c)
    for r in c.values():
        assert "target" in r and "curve" in r
    assert doc["config"]["deepinv_steps"]["docs"] > 100 * doc["config"]["deepinv_steps"]["auto"]
    assert {"psnr_reference_mmse", "psnr_map"} <= set(doc["raw"]["sanity"])
    assert "secondary_vs_reference" in doc["ratios"]["deepinv_ula_auto/ours"]


def test_time_to_answer_smoke(tmp_path):
    """Every contender on every problem (tiny crop, seconds): records, ratios against the new
    default, the targets and the reference's stability check are written."""
    from bench import bench_time_to_answer as b

    b.main([*SMOKE, "--budget-evals", "40", "--out", str(tmp_path)])
    doc = _load(tmp_path, b.NAME)
    anchor = b.anchor_name()
    assert set(doc["raw"]["problems"]) == {f"{i}/{o}" for i in b.IMAGES for o in b.OPERATORS}
    for key, raw in doc["raw"]["problems"].items():
        assert set(raw["contenders"]) == set(b.CONTENDERS)
        assert {"psnr_drift_last_half", "std_drift_last_half", "psnr_truth"} <= set(raw["reference"])
        for c in raw["contenders"].values():
            assert {"answer", "mmse_only", "std_only", "curve", "denoiser_calls", "end_evals"} <= set(c)
            assert c["curve"] and {"psnr_truth", "std_rel_err", "ok"} <= set(c["curve"][-1])
        assert {f"{n}/{anchor}" for n in b.CONTENDERS if n != anchor} == set(doc["ratios"][key])
        assert doc["ratios"][key][f"skrock/{anchor}"]["target"] == ">= 5.0"
    assert doc["config"]["weight_cache_max_abs_diff"] == 0.0


def test_answer_times_enter_and_stay():
    from bench.bench_time_to_answer import answer_times

    oks = [(True, False), (True, True), (False, True), (True, True), (True, True)]
    recs = [{"t": float(i), "evals": 10 * i, "kept_steps": i + 1, "mmse_ok": m, "std_ok": s, "ok": m and s}
            for i, (m, s) in enumerate(oks)]
    r = answer_times(recs, stay=2.0)
    assert r["answer"]["reached"] and r["answer"]["t_s"] == 3.0 and not r["answer"]["stay_complete"]
    assert r["mmse_only"]["t_s"] == 3.0 and r["std_only"]["t_s"] == 1.0
    assert not answer_times(recs[:3], stay=2.0)["answer"]["reached"]


def test_choices_name_what_is_wrong():
    """The benches' comma-separated name lists: kept in order, blanks dropped, an unknown or empty
    list refused in one line that names the flag and the allowed names."""
    from bench._common import choices

    assert choices("--images", " astronaut,,cameraman ", ("cameraman", "astronaut")) == ["astronaut", "cameraman"]
    with pytest.raises(SystemExit, match=r"--operators: unknown \['blurr'\]; choose from blur, inpainting"):
        choices("--operators", "blur,blurr", ("blur", "inpainting"))
    with pytest.raises(SystemExit, match="--images: unknown ','"):
        choices("--images", ",", ("cameraman",))


def test_time_to_answer_box_option():
    """``--box``: each family's own box, or one box handed to every sampler (and deepinv's clip)."""
    from bench.bench_time_to_answer import _box, _box_option

    assert _box("family") is None and _box("-1,2") == [-1.0, 2.0]
    for bad in ("1,0", "0", "a,b"):
        with pytest.raises(SystemExit, match="--box"):
            _box(bad)
    assert _box_option({"box": None}, "clip") == {} and _box_option({"box": [0.0, 1.0]}, "box") == {"box": (0.0, 1.0)}


def test_time_to_answer_reference_step(tmp_path):
    """``--ref-option step_fraction=F``: the reference runs at that share of the stability bound,
    here half the default (0.9), so its step is half the same sampler's default step."""
    from bench import bench_time_to_answer as b

    assert b._ref_options(["step_fraction=0.45", "friction=0.1"]) == {"step_fraction": 0.45, "friction": 0.1}
    for bad in ("step_fraction", "=1", "friction=low"):
        with pytest.raises(SystemExit, match="--ref-option"):
            b._ref_options([bad])
    b.main([*SMOKE, "--images", "cameraman", "--operators", "blur", "--contenders", "pnp-lm-exp",
            "--ref-option", "step_fraction=0.45", "--budget-evals", "20", "--out", str(tmp_path)])
    raw = _load(tmp_path, b.NAME)["raw"]["problems"]["cameraman/blur"]
    ref, own = raw["reference"], raw["contenders"]["pnp-lm-exp"]
    assert ref["sampler"] == own["sampler"] == "pnp-lm-exp"
    assert ref["step_size"] == pytest.approx(own["step_size"] / 2, rel=1e-6)


def test_time_to_answer_reference_cache(tmp_path):
    """``--ref-cache DIR``: the first run saves its reference; a second with the same settings
    reads it (same record, contenders judged against the same std map); other reference settings
    make another file."""
    from bench import bench_time_to_answer as b

    def run(out, *extra):
        b.main([*SMOKE, "--images", "cameraman", "--operators", "blur", "--contenders", "pnp-lm-exp",
                "--budget-evals", "20", "--ref-cache", str(tmp_path / "refs"), "--out", str(tmp_path / out), *extra])
        return _load(tmp_path / out, b.NAME)["raw"]["problems"]["cameraman/blur"]["reference"]

    first, second = run("a"), run("b")
    assert "read_from" not in first and second.pop("read_from").startswith(str(tmp_path / "refs"))
    assert second == first
    assert len(list((tmp_path / "refs").glob("reference_cameraman_blur_*.pt"))) == 1
    run("c", "--ref-option", "step_fraction=0.45")
    assert len(list((tmp_path / "refs").glob("reference_cameraman_blur_*.pt"))) == 2


def test_time_to_answer_pooled_reference_runs(tmp_path):
    """``--ref-runs 2`` reuses the cached run 0, adds run 1 (another seed) and pools their draws; a
    file of run 0 without moments (written before pooling existed) is run again for pooling; a
    second pooled invocation reads both runs."""
    import torch

    from bench import bench_time_to_answer as b

    def run(out, *extra):
        b.main([*SMOKE, "--images", "cameraman", "--operators", "blur", "--contenders", "pnp-lm-exp",
                "--budget-evals", "20", "--ref-cache", str(tmp_path / "refs"), "--out", str(tmp_path / out), *extra])
        return _load(tmp_path / out, b.NAME)["raw"]["problems"]["cameraman/blur"]["reference"]

    single = run("a")
    (path,) = (tmp_path / "refs").glob("reference_cameraman_blur_*.pt")
    saved = torch.load(path, weights_only=True)
    assert {"full", "half", "std"} <= set(saved) and saved["full"]["count"] == single["draws"]
    torch.save({k: saved[k] for k in ("key", "std", "record")}, path)  # the older format: std map only
    assert run("b")["draws"] == single["draws"]  # one run: the older file serves
    pooled = run("c", "--ref-runs", "2")
    assert "full" in torch.load(path, weights_only=True)  # run 0 again, now with its moments
    assert pooled["runs"] == 2 and pooled["draws"] == 2 * single["draws"] and pooled["chains"] == 4
    assert pooled["run_records"][0]["psnr_truth"] == single["psnr_truth"]
    assert pooled["psnr_truth"] != single["psnr_truth"]
    assert len(list((tmp_path / "refs").glob("reference_cameraman_blur_*.pt"))) == 2
    again = run("d", "--ref-runs", "2")
    assert all("read_from" in r for r in again["run_records"])
    assert {k: again[k] for k in ("psnr_truth", "draws", "std_drift_last_half")} == \
        {k: pooled[k] for k in ("psnr_truth", "draws", "std_drift_last_half")}


def test_time_to_answer_pause_and_resume(tmp_path):
    """``--resume-dir``: deepinv's run paused by ``--pause-after`` and resumed gives the records of an
    uninterrupted run (same chain, same noise); the finished anchor is not run again."""
    from bench import bench_time_to_answer as b

    def run(out, *extra):
        b.main([*SMOKE, "--images", "cameraman", "--operators", "blur", "--contenders",
                f"{b.anchor_name()},deepinv_ula", "--budget-evals", "60", "--out", str(tmp_path / out), *extra])
        return _load(tmp_path / out, b.NAME)["raw"]["problems"]["cameraman/blur"]["contenders"]

    whole = run("whole")
    resume = ["--resume-dir", str(tmp_path / "resume")]
    with pytest.raises(SystemExit) as stop:
        run("paused", *resume, "--pause-after", "25")
    assert stop.value.code == 3 and not (tmp_path / "paused").exists()
    with pytest.raises(SystemExit):  # a second pause, the state read back and saved again
        run("paused", *resume, "--pause-after", "20")
    resumed = run("resumed", *resume)
    assert resumed[b.anchor_name()]["read_from"].startswith(str(tmp_path / "resume"))
    a, w = resumed["deepinv_ula"], whole["deepinv_ula"]
    assert [s["iterations"] for s in a["segments"]] == [25, 20, 15] and "segments" not in w
    assert a["denoiser_calls"] == w["denoiser_calls"] == 60
    curve = ("evals", "kept_steps", "draws", "psnr_truth", "std_rel_err")
    assert [[e[k] for k in curve] for e in a["curve"]] == [[e[k] for k in curve] for e in w["curve"]]
    assert a["end_psnr_truth"] == w["end_psnr_truth"] and a["answer"]["reached"] == w["answer"]["reached"]


def test_resume_file_turns_sigterm_into_a_pause(tmp_path):
    """SIGTERM during deepinv's run asks for a pause (handled at the next iteration), and the
    previous handler comes back afterwards."""
    import os
    import signal

    from bench._t2a_resume import ResumeFile

    before = signal.getsignal(signal.SIGTERM)
    resume = ResumeFile(str(tmp_path), {"image": "cameraman", "operator": "blur"})
    handlers = resume.catch_signals()
    try:
        assert not resume.should_pause(0)
        os.kill(os.getpid(), signal.SIGTERM)
        assert resume.should_pause(0)
    finally:
        resume.restore_signals(handlers)
    assert signal.getsignal(signal.SIGTERM) is before
    assert not ResumeFile(None, {"image": "cameraman", "operator": "blur"}).catch_signals()


@pytest.mark.slow
def test_memory_smoke(tmp_path):
    from bench import bench_memory as b

    b.main([*SMOKE, "--out", str(tmp_path)])
    doc = _load(tmp_path, b.NAME)
    runs = doc["raw"]["runs"]
    assert runs and all("error" not in r for r in runs), runs
    assert {"peak_rss_long/short", "peak_increment_long/short", "trace_buffer_bytes_long"} <= set(doc["ratios"]["pnp-ula"])
    large = doc["ratios"]["large"]  # CLI runs with and without batch chunks, and their breakdown
    assert {"32px_skrock_chunk_auto", "32px_skrock_chunk_None", "32px_auto_chunk_auto"} <= set(large)
    cell = large["32px_auto_chunk_auto"]
    assert "error" not in cell, cell
    assert cell["sampler"] == "pnp-kinetic-exp" and cell["peak_rss_gb"] > 0
    assert {"chains", "moments_float64", "p2_markers", "reservoir", "traces", "network_weights",
            "denoiser_call_transient"} <= set(cell["breakdown_gb"])


@pytest.mark.slow
def test_precision_smoke(tmp_path):
    from bench import bench_precision as b

    b.main([*SMOKE, "--out", str(tmp_path)])
    doc = _load(tmp_path, b.NAME)
    r = doc["ratios"]
    assert r["max_abs_mmse_diff_bf16"] > 0 and math.isfinite(r["rms_mmse_diff_bf16/rms_mmse_diff_other_seed"])


def test_run_all_discovers_the_benchmarks():
    from bench.run_all import OURS, discover

    assert set(OURS) <= set(discover())


def test_load_denoiser_falls_back_to_untrained(tmp_path, monkeypatch):
    """Missing zoo weights: same architecture, untrained, announced in the info dict."""
    from bench._common import load_denoiser

    monkeypatch.setenv("DENOISERS_ZOO_MANIFEST", str(tmp_path / "manifest.json"))  # empty zoo
    den, info = load_denoiser("drunet_gray", "untrained")
    assert info["source"] == "untrained" and info["trained"] is False
    assert "NOT" in info["message"]
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert den(x, 0.02).shape == x.shape
    with pytest.raises(SystemExit):
        load_denoiser("drunet_gray", "error")


def test_denoisers_smoke_pins_and_restores_cores(tmp_path):
    """``--cores 1`` runs the network and BM3D on one core (recorded) and gives the caller its
    cores back afterwards."""
    import os

    from bench import bench_denoisers as b

    before = os.sched_getaffinity(0)
    b.main(["--smoke", "--models", "lipdncnn_gray_s5", "--cores", "1", "--out", str(tmp_path)])
    assert os.sched_getaffinity(0) == before
    doc = json.loads((tmp_path / "denoisers.json").read_text())
    assert len(doc["config"]["cpu_affinity"]) == 1
    assert doc["raw"]["lipdncnn_gray_s5"]


def test_denoisers_result_records_every_model_weights(tmp_path):
    """bench_denoisers names the weights of each model it evaluated (and the right module)."""
    from bench import bench_denoisers as b

    b.main(["--smoke", "--models", "lipdncnn_gray_s5", "--out", str(tmp_path)])
    doc = json.loads((tmp_path / "denoisers.json").read_text())
    assert doc["command"].startswith("python -m bench.bench_denoisers")
    [w] = doc["provenance"]["weights"]
    assert w["model"] == "lipdncnn_gray_s5"
    assert w["sha256"] == denoisers_zoo.read_manifest()["models"]["lipdncnn_gray_s5"]["sha256"]


def test_stale_verdicts():
    """A result is stale when a recorded sha256 is not the shipped one, or its network has no
    weights file; nested (per-row) provenance counts too."""
    from bench.stale import verdict

    models = {"m": {"sha256": "a" * 64, "file": "m.pt"}}
    rec = lambda sha: {"provenance": {"weights": [{"model": "m", "sha256": sha, "source": "x"}]}}  # noqa: E731
    assert verdict(rec("a" * 64), models)[0] == "fresh"
    assert verdict(rec("b" * 64), models)[0] == "stale"
    assert verdict(rec(None), models)[0] == "stale"
    assert verdict({"rows": [rec("a" * 64), rec("b" * 64)]}, models)[0] == "stale"
    assert verdict({"provenance": {"weights": [{"model": "gone", "sha256": "a" * 64}]}}, models)[0] == "stale"
    assert verdict({}, models)[0] == "unknown"


def test_shipped_results_are_not_stale():
    """Every result in bench/results/ (evidence/ aside) was computed with the shipped weights:
    after retraining a model, re-run its benchmarks or remove their results."""
    from bench.stale import scan

    found = scan()
    assert found
    stale = {k: why for k, (status, why) in found.items() if status != "fresh"}
    assert not stale, stale


@pytest.mark.slow
def test_distributed_smoke(tmp_path):
    """2 gloo ranks against 1 process through the CLI (about a minute: four interpreter starts)."""
    from bench import bench_distributed as b

    b.main([*SMOKE, "--out", str(tmp_path)])
    doc = _load(tmp_path, b.NAME)
    assert set(doc["raw"]) == {"1process", "2ranks"}
    assert 0 <= doc["ratios"]["merge_overhead_share"] <= 1
    assert doc["ratios"]["estimates_max_abs_diff"] < 1e-4  # float32 round-off of the network's batch size
    assert doc["ratios"]["met"] is None  # the target is stated for 256², not the smoke size


def test_run_all_writes_a_markdown_table_of_every_figure(tmp_path):
    from bench.run_all import markdown_table

    (tmp_path / "bench_x.json").write_text(json.dumps(
        {"status": "ok", "mode": "quick", "ratios": {"a/b": 0.5, "nested": {"c/d": 2.0, "met": True}, "skip": None}}))
    table = markdown_table({"bench_x": {"returncode": 0}, "bench_y": {"returncode": 2}}, str(tmp_path))
    lines = table.splitlines()
    assert lines[0].startswith("| benchmark |") and len(lines) == 2 + 3 + 1
    assert "| bench_x | ok | quick | a/b | 0.5 |" in lines
    assert any("nested.c/d | 2 |" in ln for ln in lines) and any("nested.met | True" in ln for ln in lines)
    assert "| bench_y | failed (exit 2) | | | |" in lines


@pytest.mark.slow
def test_gpu_check_cpu_smoke(tmp_path):
    """The GPU check's plumbing on the CPU alone (tiny sizes; about a minute with the demo's --fast)."""
    from bench import gpu_check

    assert gpu_check.main([str(tmp_path), "--smoke"]) == 0
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["mode"] == "smoke" and doc["provenance"]["weights"][0]["model"] == "lipdncnn_gray_s5"
    cells = doc["throughput"]["cells"]
    assert [(c["device"], c["chains"]) for c in cells] == [("cpu", 1), ("cpu", 2)]
    assert all(c["chain_iterations_per_s"] > 0 for c in cells)
    assert doc["demo"]["exit_code"] == 0 and doc["demo"]["stop"]["reason"] in ("converged", "max_minutes", "n_steps")


def test_diffusion_bench_smoke(tmp_path):
    """Each contender on one problem (16² crop, the demos' --fast budget): its row, and ratios
    against the Langevin anchor computed from the rows of the same run."""
    from bench import bench_diffusion as b

    b.main(["--smoke", "--images", "astronaut", "--problems", "inpainting", "--contenders", "diffpir,pnp-dm",
            "--out", str(tmp_path)])
    doc = json.loads((tmp_path / f"{b.NAME}.json").read_text())  # several weights: not _load's one-model checks
    assert COMMON_KEYS <= set(doc) and doc["mode"] == "smoke"
    (p,) = doc["raw"]["problems"]
    assert set(p["rows"]) == {"pnp", "diffpir", "pnp-dm"} and p["crop"] == 16
    for r in p["rows"].values():
        assert not r.get("error") and r["calls_per_chain"] > 0 and 0.0 <= r["coverage_90"] <= 1.0
    ratios = doc["ratios"]["astronaut/inpainting"]
    assert set(ratios) == {"diffpir", "pnp-dm"}
    gap = p["rows"]["diffpir"]["psnr_mean"] - p["rows"]["pnp"]["psnr_mean"]
    assert ratios["diffpir"]["psnr_gap_db"] == pytest.approx(gap)
    assert p["rows"]["diffpir"]["sampler"] == "diffpir" and p["rows"]["pnp"]["sampler"] == "pnp-kinetic-exp"
    shipped = {n: m["sha256"] for n, m in denoisers_zoo.read_manifest()["models"].items()}
    used = {w["model"]: w["sha256"] for w in doc["provenance"]["weights"]}
    assert set(used) == {"lipdncnn_gray_s5", "drunet_gray", "edm_gray"}  # fullrange_gray = its two parts
    assert all(used[n] == shipped[n] for n in used)


def test_time_to_answer_own_warm_start(tmp_path):
    """``--start-steps``: the contenders start from a shorter PnP-SGD run whose calls are charged
    to them instead of the MAP's; the reference keeps the MAP of ``--map-steps``."""
    from bench import bench_time_to_answer as b

    common = [*SMOKE, "--images", "cameraman", "--operators", "blur", "--contenders", b.anchor_name(),
              "--map-steps", "6", "--budget-evals", "30"]
    first = {}
    for extra in ([], ["--start-steps", "2"]):
        out = tmp_path / str(len(extra))
        b.main([*common, *extra, "--out", str(out)])
        doc = _load(out, b.NAME)
        raw = doc["raw"]["problems"]["cameraman/blur"]
        assert raw["map"]["denoiser_calls"] == 6
        assert ("2-iteration PnP-SGD run of their own" in doc["notes"]) == bool(extra)
        first[len(extra)] = raw["contenders"][b.anchor_name()]["curve"][0]
    assert raw["start"]["denoiser_calls"] == 2
    assert first[0]["kept_steps"] == first[2]["kept_steps"]
    assert first[0]["evals"] - first[2]["evals"] == 6 - 2
