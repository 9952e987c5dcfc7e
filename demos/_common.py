"""Shared runner of the demo scripts: load a config next to this file, optionally shrink it
to the ``--fast`` budget (used by the test suite so demos cannot rot), run, print the summary."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: merged over a demo config by --fast: seconds of work, same pipeline
FAST = {
    "map": {"n_steps": 5},
    "sampler": {"n_steps": 6, "n_burnin": 2, "thin": 1, "chains": 2, "stages": 3},
    "checkpoint_every": 3,
}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load(name: str, *, fast: bool) -> dict:
    cfg = yaml.safe_load((HERE / "configs" / f"{name}.yaml").read_text())
    return merge(cfg, FAST) if fast else cfg


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--fast", action="store_true", help="tiny budget (seconds), for smoke tests")
    p.add_argument("--out", default=None, help="output folder (default: runs/<demo name>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(name: str, cfg: dict, args) -> dict:
    import pnp_imaging

    out = args.out or str(ROOT / "runs" / name)
    result = pnp_imaging.run(cfg, out_dir=out, progress=not args.quiet, base_dir=ROOT)
    s = result.summary
    keys = ("psnr_y", "psnr_map", "psnr_mmse", "coverage", "ess_min", "rhat_max", "wall_s")
    print(f"{name}: " + ", ".join(f"{k}={s[k]:.4g}" for k in keys if s.get(k) is not None))
    if s.get("mismatch"):
        print(f"{name}: mismatch " + ", ".join(f"{k}={v}" for k, v in s["mismatch"].items() if k != "note"))
    print(f"{name}: report {Path(out) / 'report.html'}")
    return s
