"""Shared runner of the demo scripts: load a config next to this file, optionally shrink it
to the ``--fast`` budget (used by the test suite so demos cannot rot), run, print the summary."""
from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = HERE / "configs"


def load(name: str, *, fast: bool) -> dict:
    """The demo's config (``demos/configs/<name>.yaml``), shrunk to the ``--fast`` budget if asked."""
    from pnp_imaging.config import load_config, with_fast_budget

    cfg = load_config(CONFIGS / f"{name}.yaml")
    return with_fast_budget(cfg) if fast else cfg


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--fast", action="store_true", help="tiny budget (seconds), for smoke tests")
    p.add_argument("--out", default=None, help="output folder (default: runs/<demo name>)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def run(name: str, cfg: dict, args) -> dict:
    import pnp_imaging

    out = args.out or str(ROOT / "runs" / name)
    result = pnp_imaging.run(cfg, out_dir=out, progress=not args.quiet, base_dir=CONFIGS)  # paths: config's folder
    s = result.summary
    keys = ("psnr_y", "psnr_map", "psnr_mmse", "coverage", "ess_min", "rhat_max", "wall_s")
    print(f"{name}: " + ", ".join(f"{k}={s[k]:.4g}" for k in keys if s.get(k) is not None))
    if s.get("mismatch"):
        print(f"{name}: mismatch " + ", ".join(f"{k}={v}" for k, v in s["mismatch"].items() if k != "note"))
    print(f"{name}: report {Path(out) / 'report.html'}")
    return s
