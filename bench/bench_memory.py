"""Issue 5 — memory of ``run_chain`` is flat in ``n_steps``.

For each sampler (``"pnp-ula"``, ``"skrock"``: ``pnp_imaging.samplers.build_kernel``, the
denoiser of ``--denoiser``, by default the library's prior) and two run lengths ``n_short < n_long`` (same image,
chains, burn-in), a **fresh subprocess** builds the problem and kernel, runs a short warm-up
chain (burn-in + 2 steps) (allocator caches, numba compilation of the quantile estimator), then:

* reads ``VmRSS`` (``rss_before``), resets the kernel's peak-RSS counter (``echo 5 >
  /proc/self/clear_refs``; recorded in ``hwm_reset``) and starts ``tracemalloc``;
* runs ``run_chain(n_steps=n, n_burnin=burnin, thin=1)``;
* reads ``VmHWM`` (peak RSS since the reset), ``ru_maxrss`` and the tracemalloc peak.

``peak_increment = VmHWM - rss_before`` is the extra resident memory the run needed; the
ratio ``peak_increment(n_long) / peak_increment(n_short)`` (medians over repeats, runs
interleaved short/long/long/short ...) should be ≈ 1: memory flat in ``n_steps``. The only
O(n_steps) allocation is the trace buffer, ``n_steps × n_traces × chains`` float64 scalars
(``trace_buffer_bytes``, a few kB), negligible next to the image-sized buffers.

Caveats: torch's CPU allocations are invisible to tracemalloc (it sees Python objects and
numpy arrays only), so RSS is the primary metric; RSS increments of a few MB are within
allocator noise (``noise_floor_bytes``: the largest spread between repeats of one length), so
the ratio is also reported on the absolute peak (``VmHWM``), and ``extra_bytes_long_minus_short``
should be compared with that noise floor.
"""
from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time

import torch

from bench import _common as C

NAME = "bench_memory"


def settings(args) -> dict:
    if args.smoke:
        d = dict(size=16, chains=1, repeats=1, lengths={"pnp-ula": (5, 20)}, burnin=2)
    elif args.quick:
        d = dict(size=64, chains=1, repeats=2, lengths={"pnp-ula": (50, 200), "skrock": (10, 40)}, burnin=5)
    else:
        d = dict(size=64, chains=1, repeats=3, lengths={"pnp-ula": (50, 200), "skrock": (20, 80)}, burnin=10)
    if args.size:
        d["size"] = args.size
    if args.chains:
        d["chains"] = args.chains
    if args.repeats:
        d["repeats"] = args.repeats
    return d


def build_parser():
    ap = C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=None, help="image crop size (default 64)")
    ap.add_argument("--chains", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None, help="subprocesses per (sampler, length)")
    ap.add_argument("--part", choices=("flat", "large", "both"), default="both",
                    help="flat: run_chain memory vs n_steps at 64²; large: peak RSS of CLI runs at 512² and 1024² "
                         "(8 chains) with the per-component breakdown; both (default). A single part keeps the "
                         "other part's figures of the existing JSON")
    ap.add_argument("--large-sizes", dest="large_sizes", default=None,
                    help="comma-separated image sizes of the large part (default 512,1024; quick 256)")
    ap.add_argument("--large-samplers", dest="large_samplers", default=None,
                    help="comma-separated samplers of the large part (default skrock,auto)")
    ap.add_argument("--merge", nargs="*", default=None,
                    help="instead of measuring: merge the large parts of these bench_memory.json files (each run "
                         "with other --large-sizes/--large-samplers) into --out's JSON")
    ap.add_argument("--child", default=None, help=argparse_hidden())
    ap.add_argument("--probe", default=None, help=argparse_hidden())
    return ap


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


# --------------------------------------------------------------------------------------------
# child
# --------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(args, spec: dict) -> dict:
    import gc
    import tracemalloc

    from pnp_imaging.priors import ScorePrior
    from pnp_imaging.samplers import TraceConfig, build_kernel, dispersed_init, run_chain

    x_true = C.load_image(args.image, spec["size"])
    problem = C.blur_problem(x_true, seed=args.seed)
    den, _ = C.load_denoiser(args.denoiser, args.fallback)
    kernel = build_kernel(spec["sampler"], problem, ScorePrior(den, eps=C.EPS, lipschitz=spec["lipschitz"]))
    gen = torch.Generator().manual_seed(args.seed)
    x0 = dispersed_init(problem.back_projection(), spec["chains"], spread=0.05, generator=gen)
    # warm-up through the same code paths (burn-in, kept samples): allocator caches, numba, lazy imports
    run_chain(kernel, kernel.init(x0), n_steps=spec["burnin"] + 2, n_burnin=spec["burnin"], thin=1, generator=gen)
    state = kernel.init(x0)
    gc.collect()
    rss_before = _status_kb("VmRSS")
    reset = _reset_hwm()
    hwm_start = _status_kb("VmHWM")
    tracemalloc.start()
    t = time.perf_counter()
    n = spec["n_steps"]
    res = run_chain(kernel, state, n_steps=n, n_burnin=spec["burnin"], thin=1, generator=gen, trace=TraceConfig())
    wall = time.perf_counter() - t
    _, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = _status_kb("VmHWM")
    n_traces = len(res.traces)
    return {
        "sampler": spec["sampler"], "n_steps": n, "n_burnin": spec["burnin"], "n_kept": res.n_kept,
        "chains": spec["chains"], "rss_before": rss_before, "hwm_reset": reset, "hwm_at_start": hwm_start,
        "hwm_after": hwm, "rss_after": _status_kb("VmRSS"),
        "peak_increment": (hwm - rss_before) if (hwm is not None and rss_before is not None) else None,
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "tracemalloc_peak_bytes": tm_peak, "n_traces": n_traces,
        "trace_buffer_bytes": n * n_traces * spec["chains"] * 8, "wall_s": wall, "status": res.status,
    }


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------
def _common_argv(args) -> list[str]:
    return ["--denoiser", args.denoiser, "--fallback", args.fallback, "--threads", str(args.threads),
            "--seed", str(args.seed), "--image", str(args.image)]


def _spawn(args, spec: dict, mode: str = "child") -> dict:
    """Run ``spec`` in a fresh interpreter (``--child`` measurement or ``--probe``); its last
    stdout line is the JSON result, or the spec with an ``error`` naming the exit status."""
    cmd = [sys.executable, "-m", "bench.bench_memory", *_common_argv(args), f"--{mode}", json.dumps(spec)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(C.ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.run(cmd, cwd=C.ROOT, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        tail = p.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        return {**spec, "error": f"{mode} exited {p.returncode}: {tail[0]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _spread(runs: list[dict], sampler: str) -> float | None:
    """Largest spread of ``peak_increment`` between repeats of one (sampler, length): the noise floor."""
    spreads = []
    for n in {r["n_steps"] for r in runs if r["sampler"] == sampler}:
        v = [r["peak_increment"] for r in runs if r["sampler"] == sampler and r["n_steps"] == n
             and r.get("peak_increment") is not None]
        if len(v) > 1:
            spreads.append(max(v) - min(v))
    return max(spreads) if spreads else None


def _spawn_all(args, cfg, lipschitz: float) -> list[dict]:
    """Every (sampler, length, repeat) child, lengths interleaved short/long/long/short ..."""
    runs: list[dict] = []
    for sampler, (n1, n2) in cfg["lengths"].items():
        burnin = min(cfg["burnin"], n1 - 1)
        for r in range(cfg["repeats"]):
            for n in ((n1, n2) if r % 2 == 0 else (n2, n1)):
                spec = {"sampler": sampler, "n_steps": n, "burnin": burnin, "size": cfg["size"],
                        "chains": cfg["chains"], "lipschitz": lipschitz}
                C.log(f"{NAME}: child {sampler} n_steps={n} (repeat {r + 1}/{cfg['repeats']})")
                runs.append({"repeat": r, **_spawn(args, spec)})
    return runs


def _medians(runs: list[dict], sampler: str, n: int) -> dict:
    keys = ("peak_increment", "hwm_after", "rss_before", "tracemalloc_peak_bytes", "trace_buffer_bytes", "wall_s")
    mine = [r for r in runs if r["sampler"] == sampler and r["n_steps"] == n and "error" not in r]
    return {k: C.median([r.get(k) for r in mine]) for k in keys}


def _sampler_ratios(runs: list[dict], sampler: str, n1: int, n2: int) -> tuple[dict, dict]:
    """``(medians per length, long/short ratios)`` of one sampler."""
    a, b = _medians(runs, sampler, n1), _medians(runs, sampler, n2)

    def q(key):
        return (b[key] / a[key]) if (a[key] and b[key] is not None) else None

    increments = (a["peak_increment"], b["peak_increment"])
    return {f"n{n1}": a, f"n{n2}": b}, {
        "lengths": [n1, n2],
        "peak_increment_long/short": q("peak_increment"),
        "peak_rss_long/short": q("hwm_after"),
        "tracemalloc_peak_long/short": q("tracemalloc_peak_bytes"),
        "extra_bytes_long_minus_short": (increments[1] - increments[0]) if None not in increments else None,
        "trace_buffer_bytes_long": b["trace_buffer_bytes"],
        "noise_floor_bytes": _spread(runs, sampler),
        "target": "peak_rss_long/short ~ 1 (flat in n_steps)",
    }


def _notes(failed: list[dict]) -> str:
    return (
        "Measured: per (sampler, n_steps) in a fresh subprocess, after a warm-up run (burn-in + 2 steps): resident-set "
        "increment during run_chain (VmHWM after a clear_refs reset minus VmRSS before; hwm_reset says whether "
        "the reset worked, else VmHWM includes the set-up peak), absolute peak RSS, ru_maxrss, tracemalloc peak "
        "(Python + numpy only: torch CPU tensors are not traced). Ratios long/short of medians over repeats. "
        "The trace buffer is O(n_steps x n_traces x chains) float64 scalars (trace_buffer_bytes) and is the only "
        "allocation growing with n_steps; it is negligible. Not measured: GPU memory, checkpoint I/O, "
        "multi-chain scaling, the denoiser's own working memory vs image size. RSS differences below a few MB "
        "are allocator noise. Large part (ratios.large, raw.large): peak RSS (ru_maxrss from wait4) of the CLI "
        "`pnp-imaging run` at 512² and 1024² gray, 8 chains, a few MAP and sampler steps (the peak is reached in "
        "the first step: the statistics' buffers are written when created), with prior.batch_chunk auto (the "
        "default) and None (one denoiser call on the whole batch, the behaviour before batch_chunk); the breakdown "
        "comes from a probe process building the same run: bytes of each component's tensors/arrays, the runtime "
        "(RSS after imports and set-up), and the transient of one denoiser call on the chain batch (VmHWM after a "
        "reset minus VmRSS); 'other' is the rest of the measured peak (sampler temporaries, MAP, numba, allocator). "
        "Ratios: peak / "
        "bytes of one chain batch, chunked / whole-batch peak." +
        ("" if not failed else f" {len(failed)} child run(s) FAILED, see raw.")
    )


# --------------------------------------------------------------------------------------------
# large images: peak RSS of the CLI run and its per-component breakdown
# --------------------------------------------------------------------------------------------
#: per mode: image sizes, chains, samplers ("auto": the CLI default, pnp-kinetic-exp for this
#: Gaussian deblurring problem), sampler steps per size (memory, not speed, is measured: the peak
#: is reached in the first step), MAP steps, and the batch_chunk settings compared ("auto": the
#: default; None: the whole batch in one denoiser call, the behaviour before batch_chunk existed)
LARGE = {
    "smoke": dict(sizes=[32], chains=2, samplers=["skrock", "auto"], steps={"skrock": 3, "auto": 3}, map_steps=2,
                  chunks=["auto", None], skrock_stages={}, skip=[]),
    "quick": dict(sizes=[256], chains=8, samplers=["skrock", "auto"], steps={"skrock": 3, "auto": 3}, map_steps=2,
                  chunks=["auto", None], skrock_stages={}, skip=[]),
    # SK-ROCK with 3 stages (its peak is that of one stage; the default 10 stages only take longer)
    # and no whole-batch SK-ROCK run at 1024² (the whole-batch peak there is measured with the default sampler)
    "full": dict(sizes=[512, 1024], chains=8, samplers=["skrock", "auto"], steps={"skrock": 3, "auto": 3},
                 map_steps=3, chunks=["auto", None], skrock_stages={"512": 3, "1024": 3}, skip=["1024_skrock_None"]),
}
TARGET_GB = {512: 2.0, 1024: 8.0}  # issue targets: peak RSS of a run with 8 gray chains


def _large_image(size: int, folder) -> str:
    """skimage's 512² camera, bicubic-resized to ``size`` (gray, saved as PNG)."""
    from pathlib import Path

    import numpy as np
    import skimage.data
    from PIL import Image

    path = Path(folder) / f"camera_{size}.png"
    if not path.is_file():
        img = Image.fromarray(np.asarray(skimage.data.camera()))
        (img if size == 512 else img.resize((size, size), Image.BICUBIC)).save(path)
    return str(path)


def _run_config(spec: dict) -> dict:
    """The CLI config of one large-image run (the CLI defaults plus the few settings below)."""
    n = spec["steps"]
    sampler = {"type": spec["sampler"], "n_steps": n, "n_burnin": max(1, n // 3), "chains": spec["chains"]}
    if spec.get("stages"):
        sampler["stages"] = spec["stages"]
    return {"seed": 0, "image": spec["image"], "device": "cpu", "checkpoint_every": 500, "sampler": sampler,
            "prior": {"batch_chunk": spec["batch_chunk"], "denoiser": spec["denoiser"]},
            "map": {"n_steps": spec["map_steps"]}}


def _cli_peak(args, spec: dict, folder) -> dict:
    """Peak RSS (``ru_maxrss`` of the child, from ``wait4``) of ``pnp-imaging run`` on ``spec``."""
    import yaml

    from pathlib import Path

    cfg_path = Path(folder) / f"run_{spec['size']}_{spec['sampler']}_{spec['batch_chunk']}.yaml"
    cfg_path.write_text(yaml.safe_dump(_run_config(spec)))
    cmd = [sys.executable, "-m", "pnp_imaging", "run", str(cfg_path), "--out", str(cfg_path.with_suffix(""))]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(args.threads, 1))}
    env["PYTHONPATH"] = str(C.ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=C.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read().strip().splitlines()
    p.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    out = {"command": " ".join(cmd[1:]), "returncode": code, "wall_s": time.perf_counter() - t,
           "peak_rss_bytes": usage.ru_maxrss * 1024}
    if code != 0:
        out["error"] = err[-1] if err else "(no stderr)"
    return out


def _tensor_bytes(obj, seen: set, depth: int = 0) -> int:
    """Bytes of the distinct tensor/array storages reachable from ``obj`` (attributes,
    containers; depth <= 4), each storage counted once across calls sharing ``seen``."""
    import numpy as np

    if depth > 4 or obj is None:
        return 0
    if isinstance(obj, torch.Tensor):
        st = obj.untyped_storage()
        key = ("t", st.data_ptr())
        if key in seen:
            return 0
        seen.add(key)
        return st.nbytes()
    if isinstance(obj, np.ndarray):
        base = obj if obj.base is None else obj.base
        key = ("n", id(base))
        if key in seen or not isinstance(base, np.ndarray):
            return 0
        seen.add(key)
        return base.nbytes
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, seen, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, seen, depth + 1) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, (type, torch.nn.Module)):
        return sum(_tensor_bytes(v, seen, depth + 1) for v in vars(obj).values())
    return 0


def _call_peak(prior, x) -> dict:
    """Extra resident memory of one ``prior.denoise`` call on the chain batch (VmHWM after a
    reset minus VmRSS before: activations and the output)."""
    import gc

    gc.collect()
    before = _status_kb("VmRSS")
    reset = _reset_hwm()
    t = time.perf_counter()
    prior.denoise(x)
    wall = time.perf_counter() - t
    return {"denoiser_call_peak_bytes": _status_kb("VmHWM") - before, "hwm_reset": reset, "call_wall_s": wall}


def probe(args, spec: dict) -> dict:
    """Per-component bytes of a run of ``spec`` built as the CLI builds it, and the transient
    memory of one denoiser call on the chain batch (measured first, in a fresh heap)."""
    from pnp_imaging.api import build_components
    from pnp_imaging.config import resolve_config
    from pnp_imaging.priors import batch_chunk_size
    from pnp_imaging.samplers import dispersed_init, get_sampler
    from pnp_imaging.stats import PosteriorStats
    from pnp_imaging.traces import ChainRun, TraceConfig

    rss_imports = _status_kb("VmRSS")
    cfg = resolve_config(_run_config(spec))
    parts = build_components(cfg, generator=torch.Generator().manual_seed(0))
    kernel = get_sampler(cfg.sampler.type).build(parts.problem, parts.prior, cfg.sampler.options)
    rss_built = _status_kb("VmRSS")
    start = parts.problem.initial_guess().to(parts.problem.y.dtype)
    x = dispersed_init(start, cfg.sampler.chains, spread=0.05, generator=torch.Generator().manual_seed(0))
    call = _call_peak(parts.prior, x)
    state = kernel.init(x)
    stats = PosteriorStats(tuple(x.shape), probs=(0.05, 0.95), scales=cfg.estimates.scales)
    run = ChainRun(state, cfg.sampler.n_steps, cfg.sampler.n_burnin, 1, stats, TraceConfig(n_random=4))
    seen: set = set()
    comp = {"chains": _tensor_bytes(state, seen), "problem": _tensor_bytes(parts.problem, seen),
            "moments_float64": _tensor_bytes(stats.moments, seen) + _tensor_bytes(stats.multiscale, seen),
            "p2_markers": _tensor_bytes(stats.quantile_estimator, seen),
            "reservoir": _tensor_bytes(stats.reservoir, seen),
            "traces": _tensor_bytes(run, seen),
            "network_weights": sum(t.numel() * t.element_size() for t in
                                   [*parts.denoiser.parameters(), *parts.denoiser.buffers()])}
    return {**spec, "components_bytes": comp, **call, "chunk_used": batch_chunk_size(parts.prior.batch_chunk, x.shape),
            "chain_batch_bytes": x.numel() * x.element_size(), "rss_after_imports": rss_imports,
            "rss_after_build": rss_built, "sampler_resolved": cfg.sampler.type}


def _large_cells(args, plan: dict, folder) -> list[dict]:
    """One CLI run and one probe per (size, sampler, batch_chunk)."""
    cells = []
    for size in plan["sizes"]:
        image = _large_image(size, folder)
        for sampler in plan["samplers"]:
            for chunk in plan["chunks"]:
                if f"{size}_{sampler}_{chunk}" in plan["skip"]:
                    continue
                spec = {"size": size, "sampler": sampler, "batch_chunk": chunk, "chains": plan["chains"],
                        "steps": plan["steps"][sampler], "map_steps": plan["map_steps"], "image": image,
                        "denoiser": args.denoiser,
                        "stages": plan["skrock_stages"].get(str(size)) if sampler == "skrock" else None}
                C.log(f"{NAME}: {size}² {sampler} batch_chunk={chunk}: CLI run, then probe")
                run = _cli_peak(args, spec, folder)
                cells.append({"spec": spec, "run": run, "probe": _spawn(args, spec, "probe")})
    return cells


def _cell_figures(cell: dict) -> dict:
    """Peak, breakdown and ratios of one cell (peak over the bytes of one chain batch)."""
    run, pr = cell["run"], cell["probe"]
    if "error" in run or "error" in pr:
        return {"error": run.get("error") or pr.get("error")}
    comp = pr["components_bytes"]
    peak, anchor = run["peak_rss_bytes"], pr["chain_batch_bytes"]
    known = pr["rss_after_build"] + sum(v for k, v in comp.items() if k not in ("network_weights", "problem"))
    return {"peak_rss_gb": peak / 1e9, "peak_rss/chain_batch": peak / anchor,
            "denoiser_call_peak/chain_batch": pr["denoiser_call_peak_bytes"] / anchor,
            "chunk_used": pr["chunk_used"], "sampler": pr["sampler_resolved"],
            "breakdown_gb": {"runtime_and_setup (imports, weights, problem)": pr["rss_after_build"] / 1e9,
                             **{k: v / 1e9 for k, v in comp.items()},
                             "denoiser_call_transient": pr["denoiser_call_peak_bytes"] / 1e9,
                             "other (sampler temporaries, MAP, allocator)": (peak - known
                                                                             - pr["denoiser_call_peak_bytes"]) / 1e9}}


def _large_ratios(cells: list[dict]) -> dict:
    out = {}
    for cell in cells:
        s = cell["spec"]
        out[f"{s['size']}px_{s['sampler']}_chunk_{s['batch_chunk']}"] = _cell_figures(cell)
    for size, target in TARGET_GB.items():
        for sampler in ("skrock", "auto"):
            after = out.get(f"{size}px_{sampler}_chunk_auto", {})
            before = out.get(f"{size}px_{sampler}_chunk_None", {})
            if "peak_rss_gb" in after:
                out[f"{size}px_{sampler}_target"] = {
                    "target_gb": target, "met": after["peak_rss_gb"] <= target,
                    "peak_chunked/peak_whole_batch": (after["peak_rss_gb"] / before["peak_rss_gb"]
                                                       if "peak_rss_gb" in before else None)}
    return out


def _flat(args, cfg) -> tuple[dict, dict, dict, dict, list]:
    """The 64² part: ``(config, denoiser info, raw, ratios, failed runs)``."""
    # resolve L once in the parent so every child uses the same step sizes
    den, den_info = C.load_denoiser(args.denoiser, args.fallback)
    x_true = C.load_image(args.image, cfg["size"])
    L, L_info = C.resolve_lipschitz(args.lipschitz, den, x_true, math.sqrt(C.EPS), seed=args.seed)
    del den
    t0 = time.perf_counter()
    runs = _spawn_all(args, cfg, L)
    wall = time.perf_counter() - t0
    summary, ratios = {}, {}
    for sampler, (n1, n2) in cfg["lengths"].items():
        summary[sampler], ratios[sampler] = _sampler_ratios(runs, sampler, n1, n2)
    config = {**cfg, "lengths": {k: list(v) for k, v in cfg["lengths"].items()}, "image": str(args.image),
              "operator": "blur uniform 9x9 circular", "sigma_y": C.SIGMA_Y, "eps": C.EPS, "lipschitz": L_info,
              "dtype": "float32"}
    return config, den_info, {"runs": runs, "medians": summary, "bench_wall_s": wall}, ratios, \
        [r for r in runs if "error" in r]


def _large(args) -> tuple[dict, dict, dict, list]:
    """The large-image part: ``(config, raw, ratios, failed cells)``."""
    import tempfile

    plan = LARGE["smoke" if args.smoke else ("quick" if args.quick else "full")]
    plan = {**plan, "sizes": [int(v) for v in args.large_sizes.split(",")] if args.large_sizes else plan["sizes"],
            "samplers": args.large_samplers.split(",") if args.large_samplers else plan["samplers"]}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as folder:
        cells = _large_cells(args, plan, folder)
    for cell in cells:
        cell["spec"]["image"] = f"skimage camera, bicubic {cell['spec']['size']}²"
    failed = [c for c in cells if "error" in c["run"] or "error" in c["probe"]]
    config = {**plan, "denoiser": args.denoiser, "operator": "CLI default (blur uniform 9x9 circular)",
              "threads": args.threads, "targets_gb": TARGET_GB}
    return config, {"cells": cells, "bench_wall_s": time.perf_counter() - t0}, _large_ratios(cells), failed


def _merged_large(paths: list[str]) -> tuple[dict, dict, dict, list]:
    """The large parts of several result files as one: cells concatenated, ratios recomputed,
    each source's command, provenance and machine load kept in ``raw.large.sources``."""
    cells, sources, config = [], [], {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        cells += doc["raw"]["large"]["cells"]
        config = {**doc["config"]["large"], **config}
        sources.append({"file": str(path), "command": doc["command"], "provenance": doc["provenance"],
                        "created_utc": doc["created_utc"], "loadavg_at_end": doc["machine"].get("loadavg_at_end"),
                        "bench_wall_s": doc["raw"]["large"]["bench_wall_s"]})
    config["sizes"] = sorted({c["spec"]["size"] for c in cells})
    config["samplers"] = sorted({c["spec"]["sampler"] for c in cells})
    failed = [c for c in cells if "error" in c["run"] or "error" in c["probe"]]
    return config, {"cells": cells, "sources": sources}, _large_ratios(cells), failed


def _previous(args) -> dict:
    path = os.path.join(args.out, f"{NAME}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> dict:
    args, machine, cfg = C.start(build_parser(), argv, settings)
    if args.child:
        print(json.dumps(child(args, json.loads(args.child))), flush=True)
        return {}
    if args.probe:
        print(json.dumps(probe(args, json.loads(args.probe))), flush=True)
        return {}
    old = _previous(args) if args.part != "both" or args.merge else {}
    config, raw, ratios = dict(old.get("config", {})), dict(old.get("raw", {})), dict(old.get("ratios", {}))
    den_info, failed = old.get("denoiser"), []
    if args.part in ("flat", "both") and not args.merge:
        large_keys = {k: config.get(k) for k in ("large",) if k in config}
        config, den_info, raw_flat, ratios_flat, failed = _flat(args, cfg)
        config.update(large_keys)
        raw = {**raw_flat, **({"large": raw["large"]} if "large" in raw else {})}
        ratios = {**ratios_flat, **({"large": ratios["large"]} if "large" in ratios else {})}
    if args.merge:
        config["large"], raw["large"], ratios["large"], bad = _merged_large(args.merge)
        failed += bad
    elif args.part in ("large", "both"):
        config["large"], raw["large"], ratios["large"], bad = _large(args)
        failed += bad
        den_info = den_info or C.load_denoiser(args.denoiser, args.fallback)[1]
    C.write_result(NAME, args, config=config, denoiser=den_info, raw=raw, ratios=ratios, notes=_notes(failed),
                   status="ok" if not failed else "partial", machine_start=machine)
    return {"ratios": ratios}


if __name__ == "__main__":
    main(sys.argv[1:])
