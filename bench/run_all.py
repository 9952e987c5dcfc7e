"""Run every benchmark (``make bench``): ``python -m bench.run_all [--quick] [--only a,b] ...``.

Each ``bench/bench_*.py`` module runs in its own subprocess (independent memory peaks, one
failure does not stop the others). The modules in ``OURS`` (``bench_sampler_overhead``,
``bench_memory``, ``bench_mmse_speed``, ``bench_time_to_answer``, ``bench_map``, ``bench_demos``,
``bench_distributed``, ``bench_precision``; ``bench_demos`` ignores the
denoiser flags, as each demo config names its prior) receive ``--quick/--smoke``, ``--out``,
``--denoiser``, ``--fallback``, ``--lipschitz``, ``--threads``; any other ``bench_*.py`` (e.g.
``bench_denoisers``, owned separately; convention: its CLI is built on
``bench._common.base_parser``) receives ``--quick`` / ``--smoke``, ``--out`` and ``--threads``. A summary (status, exit code, wall time, stderr tail of each) goes to
``<out>/run_all.json`` with the provenance (git state, weights) of the results it collected, and
every figure of every result (each a ratio against its anchor measured in the same run) goes to
one markdown table, ``<out>/results.md``; the exit code is non-zero if any benchmark failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import _common as C

OURS = ("bench_sampler_overhead", "bench_memory", "bench_mmse_speed", "bench_time_to_answer", "bench_map", "bench_demos",
        "bench_distributed", "bench_precision")


def discover() -> list[str]:
    here = Path(__file__).resolve().parent
    found = sorted(p.stem for p in here.glob("bench_*.py"))
    return [n for n in OURS if n in found] + [n for n in found if n not in OURS]


def _parser():
    ap = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated module names (default: all bench_*.py)")
    ap.add_argument("--out", default=str(C.RESULTS_DIR))
    ap.add_argument("--denoiser", default=C.default_denoiser())
    ap.add_argument("--fallback", default="auto")
    ap.add_argument("--lipschitz", default="card")
    ap.add_argument("--threads", type=int, default=1)
    return ap


def _selected(args) -> list[str]:
    names = discover()
    if not args.only:
        return names
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise SystemExit(f"--only: unknown {unknown}; available: {names}")
    return wanted


def _command(name: str, args, mode: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", f"bench.{name}", *mode, "--out", args.out, "--threads", str(args.threads)]
    if name == "bench_denoisers" and args.threads == 1:
        cmd += ["--cores", "1"]  # BM3D's library threads get the same single core as the network
    if name in OURS:
        cmd += ["--denoiser", args.denoiser, "--fallback", args.fallback, "--lipschitz", args.lipschitz]
    return cmd


def _result_path(name: str, out: str) -> Path:
    return Path(out) / f"{'denoisers' if name == 'bench_denoisers' else name}.json"


def _weights_used(runs: dict, out: str) -> list[dict]:
    """The weights records of the results the runs wrote (each once)."""
    seen: dict = {}
    for name, run in runs.items():
        path = _result_path(name, out)
        if run["returncode"] == 0 and path.is_file():
            for w in json.loads(path.read_text()).get("provenance", {}).get("weights", []):
                seen.setdefault((w.get("model"), w.get("sha256")), w)
    return list(seen.values())


def _leaves(obj, prefix: str = ""):
    """``(dotted key, value)`` for every number, bool or short string in a nested ratios dict."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, f"{prefix}{key}.")
        return
    if isinstance(obj, float):
        yield prefix[:-1], f"{obj:.4g}"
    elif isinstance(obj, (bool, int, str)) and obj is not None and len(str(obj)) <= 80:
        yield prefix[:-1], str(obj)


def markdown_table(runs: dict, out: str) -> str:
    """One row per figure of each benchmark's ``ratios`` (its status and mode in the first row)."""
    lines = ["| benchmark | status | mode | figure | value |", "|---|---|---|---|---|"]
    for name, run in runs.items():
        path = _result_path(name, out)
        if run["returncode"] != 0 or not path.is_file():
            why = f"failed (exit {run['returncode']})" if run["returncode"] else "no result file"
            lines.append(f"| {name} | {why} | | | |")
            continue
        doc = json.loads(path.read_text())
        rows = list(_leaves(doc.get("ratios", {}))) or [("(no ratios)", "")]
        for k, (key, value) in enumerate(rows):
            head = f"{name} | {doc.get('status', '')} | {doc.get('mode', '')}" if k == 0 else " | | "
            lines.append(f"| {head} | {key.replace('|', '/')} | {value.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mode = ["--smoke"] if args.smoke else (["--quick"] if args.quick else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = str(C.ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    summary = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": mode, "runs": {}}
    names = _selected(args)
    for name in names:
        cmd = _command(name, args, mode)
        C.log(f"run_all: {' '.join(cmd[1:])}")
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=C.ROOT, env=env, stderr=subprocess.PIPE, text=True)
        tail = p.stderr.strip().splitlines()[-5:]
        if p.returncode != 0:
            C.log(f"run_all: {name} FAILED (exit {p.returncode}): {tail[-1] if tail else ''}")
        summary["runs"][name] = {"cmd": cmd[1:], "returncode": p.returncode, "wall_s": time.perf_counter() - t,
                                 "stderr_tail": tail, "result": str(_result_path(name, args.out))}
    summary["provenance"] = C.provenance(_weights_used(summary["runs"], args.out))
    C.write_json(Path(args.out) / "run_all.json", summary)
    (Path(args.out) / "results.md").write_text(markdown_table(summary["runs"], args.out))
    failed = sum(r["returncode"] != 0 for r in summary["runs"].values())
    C.log(f"run_all: {len(names) - failed}/{len(names)} ok; summary in {Path(args.out) / 'run_all.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
