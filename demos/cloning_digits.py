"""The cloning experiment on the 8x8 digits (Biroli, Bonnaire, De Bortoli, Mezard 2024): the measured
speciation (phi crossing 0.775) and collapse (mean per-trajectory t_C) next to the predicted t_S and t_C.

Run: `python demos/cloning_digits.py [--n-pairs 400] [--seed 0] [--out runs/cloning_digits] [--fast]`
Writes OUT/cloning.json, OUT/cloning.png (phi and phi_C vs the split time) and OUT/regimes.json.
The diffusion model is the zoo's `digits_edm`; the exact empirical score of the train split (which
memorises by construction) is run next to it as the reference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-pairs", type=int, default=400, help="cloned pairs per split time (default 400)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "cloning_digits"))
    ap.add_argument("--fast", action="store_true", help="tiny run (seconds), for smoke tests")
    a = ap.parse_args(argv)
    from pnp_imaging.analyses.cloning import run_digits_cloning

    torch.set_num_threads(1)
    out = Path(a.out)
    res = run_digits_cloning(out, n_pairs=a.n_pairs, seed=a.seed, fast=a.fast)
    regimes = json.loads((out / "regimes.json").read_text())
    print(f"Lambda = {regimes['Lambda']:.3f}")
    fmt = lambda v: "not crossed on the grid" if v is None else f"{v:.3f}"  # noqa: E731
    emp = res.get("empirical_score", {})
    print(f"speciation: predicted t_S = {res['t_S']:.3f}; phi crosses {res['threshold']} at "
          f"{fmt(res['t_speciation_measured_2_classes'])} (2 super-classes), {fmt(res['t_speciation_measured'])} (10 classes)"
          f"   [empirical score: {fmt(emp.get('t_speciation_measured_2_classes'))}, {fmt(emp.get('t_speciation_measured'))}]")
    print(f"collapse:   predicted t_C = {res['t_C']:.3f}; mean per-trajectory t_C = {fmt(res['t_collapse_measured'])}"
          f"   [empirical score: {fmt(emp.get('t_collapse_measured'))}]")
    print(f"wrote {out / 'cloning.json'} and {out / 'cloning.png'}")
    return res


if __name__ == "__main__":
    main()
