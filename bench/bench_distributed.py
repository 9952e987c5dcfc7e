"""Issue 22 — distributed-merge overhead: 2 gloo ranks against 1 process, same total chains.

Both contenders are the CLI (``pnp-imaging run CONFIG --distributed``, ``--sampler`` (default
SK-ROCK; ``pnp-ula``, one network call per step, gives the largest overhead share), the denoiser of
``--denoiser``, checkpoints every ``checkpoint_every`` = 25 steps, no MAP): the **anchor** is one
process running all chains (a world of one: per-chain streams, nothing to merge), the
**contender** ``python -m torch.distributed.run --nproc_per_node 2`` with the chains split in two.
Runs alternate anchor/contender, each in a fresh process group, ``--threads`` torch threads per
process.

Figures (rank 0's ``summary.json`` timings):

* ``merge_overhead_share`` = (time in the checkpoint barriers + the final barrier, gather and
  merge) / the sampling loop's wall time of the 2-rank run (rank 0's figures) — the cost of being distributed (target
  ≤ 5 % at 256² with checkpoints every 25 steps). The barrier time includes waiting for the slower
  rank, i.e. load imbalance.
* ``loop_wall_2ranks/1process``: the sampling loop's wall time, 2 ranks over 1 process (0.5 is
  the ideal split; needs 2 free cores).
* ``estimates_max_abs_diff``: largest |MMSE difference| between the two (float64 round-off of
  the network's batch size; the run is float32 unless ``--dtype float64``).

On a machine with few free cores the loop ratio mostly measures contention; the overhead share
is the figure this benchmark is for.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from bench import _common as C

NAME = "bench_distributed"


def settings(args) -> dict:
    if args.smoke:
        d = dict(size=16, chains=2, n_steps=10, every=5, repeats=1)
    elif args.quick:
        d = dict(size=64, chains=4, n_steps=100, every=25, repeats=2)
    else:
        d = dict(size=256, chains=4, n_steps=100, every=25, repeats=2)
    return C.apply_overrides(d, args)


def build_parser():
    ap = C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0])
    C.add_int_options(ap, {"size": "image crop size (default 256; quick 64)", "chains": "total chains (default 4)",
                           "n_steps": "SK-ROCK steps (default 100)", "every": "checkpoint every (default 25)",
                           "repeats": "runs per contender (default 2)"})
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--sampler", default="skrock", help="sampler family (default skrock)")
    return ap


def _config(args, s: dict, folder: Path) -> Path:
    from pnp_imaging.imageio import write_image

    write_image(folder / "crop.png", C.load_image(args.image, s["size"]))
    cfg = {"seed": args.seed, "image": str(folder / "crop.png"), "dtype": args.dtype, "device": "cpu",
           "operator": {"type": "blur", "kernel": "uniform", "size": 9, "boundary": "circular"},
           "noise": {"type": "gaussian", "sigma": C.SIGMA_Y}, "prior": {"denoiser": args.denoiser},
           "map": {"enabled": False}, "checkpoint_every": s["every"],
           "sampler": {"type": args.sampler, "n_steps": s["n_steps"], "n_burnin": s["n_steps"] // 5,
                       "chains": s["chains"]}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cfg: Path, out: Path, ranks: int, threads: int) -> dict:
    """One CLI run; returns rank 0's timings and the process wall time."""
    run = ["-m", "pnp_imaging", "run", str(cfg), "--distributed", "--out", str(out), "--quiet"]
    if ranks > 1:
        run = ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), *run]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(threads, 1)), "PYTHONPATH": str(C.ROOT)}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, *run], cwd=C.ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{ranks}-rank run failed: {p.stderr.strip().splitlines()[-1:]}")
    t = json.loads((out / "summary.json").read_text())["timings"]
    with np.load(out / "estimates.npz") as e:
        mmse = e["mmse"].copy()
    return {"process_wall_s": wall, "loop_s": t["sampling_s"] + t["callbacks_s"] + t["checkpoint_s"],
            "barrier_s": t["callbacks_s"], "merge_s": t.get("merge_s", 0.0), "checkpoint_s": t["checkpoint_s"],
            "mmse": mmse}


def measure(args, s: dict, folder: Path) -> dict:
    cfg = _config(args, s, folder)
    runs: dict[str, list[dict]] = {"1process": [], "2ranks": []}
    for rep in range(s["repeats"]):
        order = ("1process", "2ranks") if rep % 2 == 0 else ("2ranks", "1process")
        for name in order:
            C.log(f"{NAME}: {name} run {rep + 1}/{s['repeats']}")
            runs[name].append(_run(cfg, folder / f"{name}_{rep}", 1 if name == "1process" else 2, args.threads))
    return runs


def ratios(runs: dict, at_target: bool) -> dict:
    two, one = runs["2ranks"], runs["1process"]
    shares = [(r["barrier_s"] + r["merge_s"]) / r["loop_s"] for r in two]
    loop = [a["loop_s"] / b["loop_s"] for a, b in zip(two, one)]
    diff = max(float(np.abs(a["mmse"] - b["mmse"]).max()) for a in two for b in one)
    return {"merge_overhead_share": C.median(shares), "merge_overhead_share_max": max(shares),
            "loop_wall_2ranks/1process": C.median(loop), "estimates_max_abs_diff": diff,
            "target": "merge_overhead_share <= 0.05 at 256^2, checkpoints every 25 steps",
            "met": (C.median(shares) <= 0.05) if at_target else None}


def main(argv=None) -> int:
    import tempfile

    args, machine, s = C.start(build_parser(), argv, settings)
    den = C.load_denoiser(args.denoiser, "error")[1]  # the CLI loads the same zoo weights (sha256 recorded)
    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        runs = measure(args, s, Path(tmp))
    r = ratios(runs, at_target=s["size"] >= 256 and s["every"] == 25)
    raw = {k: [{kk: vv for kk, vv in run.items() if kk != "mmse"} for run in v] for k, v in runs.items()}
    notes = (f"{s['size']}^2 gray, {s['chains']} chains, {s['n_steps']} {args.sampler} steps, checkpoint every "
             f"{s['every']}, {args.threads} thread(s) per process, {os.cpu_count()} logical CPUs")
    config = {**s, "dtype": args.dtype, "sampler": args.sampler}
    path = C.write_result(NAME, args, config=config, denoiser=den, raw=raw, ratios=r, notes=notes,
                          machine_start=machine)
    C.log(f"{NAME}: overhead share {r['merge_overhead_share']:.3f}, loop ratio {r['loop_wall_2ranks/1process']:.2f} "
          f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
