"""GPU check: chain throughput on GPU and CPU, and the demo's time to a converged answer.

``python -m bench.gpu_check OUT [--budget-s 120] [--demo-budget-s 660] [--finetune-minutes 0]``
(at most about 15 minutes with these defaults, model loading included) runs unattended on any machine with a CUDA GPU (and, with ``--smoke``, on a CPU alone, tiny
sizes, to check the plumbing) and writes ``OUT/gpu_check.json``:

* ``throughput``: chain iterations per second (chains × steps / seconds of ``run_chain``,
  statistics and traces included) at ``--size``² gray (default 256, the demo's 9×9 blur,
  σ_y = 1/255, the demo's sampler ``pnp-kinetic-exp`` and prior) with 1, 8 and 32 chains, on
  ``cuda`` and on ``cpu``; ``--budget-s`` is shared by the cells (each runs as many steps as fit,
  at least ``--min-steps``). On ``cuda`` the network runs on the GPU and the operators, chains and
  statistics on the CPU: what ``device: cuda`` does in a config today. The ratio
  ``cuda/cpu`` per chain count is measured in the same run.
* ``demo``: ``pnp-imaging demo --set device=cuda`` (runs until its diagnostics pass, or its
  10-minute cap), killed after ``--demo-budget-s``: the stop reason, its sampling time and wall
  time from ``summary.json``.
* ``finetune`` (only with ``--finetune-minutes M > 0``): the zoo's GPU fine-tune recipes
  (``denoisers_zoo/recipes/*_gpu.yaml``), one after the other, ``M`` minutes of training each
  (``python -m denoisers_zoo.train RECIPE --device cuda --max-wall-minutes M``), their exit codes
  and log paths; the trained weights stay in ``training_scratch/<recipe>/``. Each recipe starts
  from the ``init_from`` weights its header names, which must be in ``training_scratch/``.

Jobs run one after another (processes sharing one GPU time-slice it, which slows small
latency-bound jobs such as a chain calling a network thousands of times). The JSON is rewritten
after every job, so a run killed by its caller keeps what was measured.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench import _common as C

CHAINS = (1, 8, 32)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output folder (gpu_check.json, logs, the demo's run folder)")
    ap.add_argument("--budget-s", type=float, default=120.0, help="seconds shared by the throughput cells")
    ap.add_argument("--demo-budget-s", type=float, default=660.0, help="wall-clock limit of the demo run")
    ap.add_argument("--finetune-minutes", type=float, default=0.0,
                    help="minutes of training per *_gpu.yaml recipe (0: skip the fine-tunes)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--chains", default=",".join(map(str, CHAINS)), help="comma-separated chain counts")
    ap.add_argument("--min-steps", type=int, default=5)
    ap.add_argument("--cpu-threads", type=int, default=0, help="torch threads for the CPU cells (0: torch default)")
    ap.add_argument("--smoke", action="store_true", help="CPU only, tiny sizes: checks the plumbing")
    return ap


def _devices(smoke: bool) -> list[str]:
    if smoke:
        return ["cpu"]
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA GPU (use --smoke for a CPU plumbing check)")
    return ["cuda", "cpu"]


def _kernel(size: int, device: str):
    """The demo's problem at ``size``² and its sampler, the network on ``device``."""
    from pnp_imaging.priors import ScorePrior
    from pnp_imaging.samplers import build_kernel

    x = C.load_image(C.ROOT / "data" / "cameraman.png", size)
    problem = C.blur_problem(x)
    den, info = C.load_denoiser("lipdncnn_gray_s5", "error", device=device)
    prior = ScorePrior(den, eps=(5.0 / 255.0) ** 2, lipschitz=float(getattr(den, "lipschitz", None) or 1.0))
    return build_kernel("pnp-kinetic-exp", problem, prior), problem, info


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput_cell(size: int, device: str, chains: int, budget_s: float, min_steps: int) -> dict:
    """Chain iterations/s of ``run_chain`` with ``chains`` chains (after a warm-up run)."""
    from pnp_imaging.samplers import dispersed_init, run_chain

    kernel, problem, info = _kernel(size, device)
    g = torch.Generator().manual_seed(0)
    x0 = dispersed_init(problem.initial_guess(), chains, spread=0.05, generator=g)
    run = lambda n: run_chain(kernel, kernel.init(x0), n_steps=n, n_burnin=n // 2, thin=1, generator=g)  # noqa: E731
    run(8)  # warm-up: allocator caches, numba compilation of the quantile estimator
    t0 = time.perf_counter()
    run(4)
    _sync(device)
    per_step = (time.perf_counter() - t0) / 4
    steps = max(min_steps, int(budget_s / max(per_step, 1e-6)))
    t0 = time.perf_counter()
    run(steps)
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"device": device, "chains": chains, "steps": steps, "seconds": seconds,
            "chain_iterations_per_s": chains * steps / seconds, "network_device": info.get("network_device", "cpu"),
            "network_device_name": info.get("network_device_name")}


def throughput(args, devices: list[str]) -> dict:
    chains = [int(c) for c in args.chains.split(",") if c.strip()]
    cells = [(d, b) for d in devices for b in chains]
    out = {"size": args.size, "sampler": "pnp-kinetic-exp", "denoiser": "lipdncnn_gray_s5",
           "hot_loop": "network on the device; operators, chains and statistics on the CPU", "cells": []}
    if args.cpu_threads > 0:
        torch.set_num_threads(args.cpu_threads)
    for device, b in cells:
        C.log(f"gpu_check: throughput {device}, {b} chains")
        try:
            out["cells"].append(throughput_cell(args.size, device, b, args.budget_s / len(cells), args.min_steps))
        except Exception as exc:  # noqa: BLE001 — one failed cell must not lose the others
            out["cells"].append({"device": device, "chains": b, "error": f"{type(exc).__name__}: {exc}"[:300]})
    rate = {(c["device"], c["chains"]): c.get("chain_iterations_per_s") for c in out["cells"]}
    out["cuda/cpu"] = {str(b): rate[("cuda", b)] / rate[("cpu", b)] for b in chains
                       if rate.get(("cuda", b)) and rate.get(("cpu", b))}
    return out


def demo(args, out: Path, device: str) -> dict:
    """The demo (until converged) on ``device``; its stop reason and times."""
    folder = out / "demo"
    cmd = [sys.executable, "-m", "pnp_imaging", "demo", "--out", str(folder), "--quiet", "--set", f"device={device}"]
    if args.smoke:
        cmd.append("--fast")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=C.ROOT, capture_output=True, text=True, timeout=args.demo_budget_s)
        code, err = p.returncode, p.stderr[-2000:]
    except subprocess.TimeoutExpired:
        code, err = None, f"killed after {args.demo_budget_s:g} s"
    res = {"device": device, "command": " ".join(cmd[1:]), "exit_code": code, "wall_s": time.perf_counter() - t0}
    summary = folder / "summary.json"
    if code == 0 and summary.is_file():
        s = json.loads(summary.read_text())
        res.update(stop=s.get("stop"), run_wall_s=s.get("wall_s"), ess_min=s.get("ess_min"), rhat_max=s.get("rhat_max"),
                   psnr_mmse=s.get("psnr_mmse"), map_wall_s=(s.get("map") or {}).get("wall_s"))
    else:
        res["stderr_tail"] = err
    return res


def finetune(args, out: Path) -> list[dict]:
    """The zoo's ``*_gpu.yaml`` recipes, one after the other, ``--finetune-minutes`` each."""
    done = []
    for recipe in sorted((C.ROOT / "denoisers_zoo" / "recipes").glob("*_gpu.yaml")):
        log = out / f"finetune_{recipe.stem}.log"
        cmd = [sys.executable, "-m", "denoisers_zoo.train", str(recipe), "--device", "cuda",
               "--max-wall-minutes", str(args.finetune_minutes), "--no-progress"]
        C.log(f"gpu_check: {' '.join(cmd[1:])}")
        with open(log, "w") as f:
            try:
                code = subprocess.run(cmd, cwd=C.ROOT, stdout=f, stderr=subprocess.STDOUT,
                                      timeout=args.finetune_minutes * 60 + 300).returncode
            except subprocess.TimeoutExpired:
                code = None
        done.append({"recipe": recipe.name, "exit_code": code, "log": str(log)})
    return done


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.size, args.budget_s, args.chains, args.min_steps = min(args.size, 32), min(args.budget_s, 10.0), "1,2", 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    devices = _devices(args.smoke)
    doc = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": "smoke" if args.smoke else "full",
           "command": " ".join(["python -m bench.gpu_check", *(argv if argv is not None else sys.argv[1:])]),
           "machine": C.machine_info(), "cuda": _cuda_info(),
           "provenance": C.provenance([C.zoo_weights("lipdncnn_gray_s5")])}
    path = out / "gpu_check.json"
    doc["throughput"] = throughput(args, devices)
    C.write_json(path, doc)
    doc["demo"] = demo(args, out, devices[0])
    C.write_json(path, doc)
    if args.finetune_minutes > 0 and not args.smoke:
        doc["finetune"] = finetune(args, out)
        C.write_json(path, doc)
    C.log(f"gpu_check: wrote {path}")
    return 0


def _cuda_info() -> dict:
    if not torch.cuda.is_available():
        return {"available": False}
    return {"available": True, "device_name": torch.cuda.get_device_name(0), "torch_cuda": torch.version.cuda}


if __name__ == "__main__":
    sys.exit(main())
