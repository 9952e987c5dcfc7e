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
    ap.add_argument("--child", default=None, help=argparse_hidden())
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


def _spawn(args, spec: dict) -> dict:
    cmd = [sys.executable, "-m", "bench.bench_memory", *_common_argv(args), "--child", json.dumps(spec)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(C.ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.run(cmd, cwd=C.ROOT, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        tail = p.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        return {**spec, "error": f"child exited {p.returncode}: {tail[0]}"}
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
        "are allocator noise." + ("" if not failed else f" {len(failed)} child run(s) FAILED, see raw.runs.")
    )


def main(argv: list[str] | None = None) -> dict:
    args, machine, cfg = C.start(build_parser(), argv, settings)
    if args.child:
        print(json.dumps(child(args, json.loads(args.child))), flush=True)
        return {}
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
    failed = [r for r in runs if "error" in r]
    config = {**cfg, "lengths": {k: list(v) for k, v in cfg["lengths"].items()}, "image": str(args.image),
              "operator": "blur uniform 9x9 circular", "sigma_y": C.SIGMA_Y, "eps": C.EPS, "lipschitz": L_info,
              "dtype": "float32"}
    C.write_result(NAME, args, config=config, denoiser=den_info, raw={"runs": runs, "medians": summary,
                                                                       "bench_wall_s": wall},
                   ratios=ratios, notes=_notes(failed), status="ok" if not failed else "partial", machine_start=machine)
    return {"ratios": ratios}


if __name__ == "__main__":
    main(sys.argv[1:])
