r"""The diffusion-prior samplers next to PnP-ULA's MMSE, on the same problems, in one run.

``python -m bench.bench_diffusion [--quick|--smoke] [--crop N] [--images cameraman,astronaut]
[--problems blur,inpainting] [--contenders pnp,diffpir,pnp-dm,dps] [--out DIR]``

Problems (each image × each problem): ``cameraman`` (``data/cameraman.png``) and the held-out
``astronaut`` crop of ``bench/bench_demos.py`` (``data/astronaut_gray_256.png``), centre-cropped to
``--crop``; ``blur`` = the deblurring demo's operator and noise (``demos/configs/deblur_gray.yaml``:
circular 9×9 uniform blur, σ_y = 1/255), ``inpainting`` = the inpainting demo's
(``demos/configs/inpainting.yaml``: 50 % of the pixels missing at random, σ_y = 2/255).

Contenders, each with the ``sampler`` (and ``prior``, ``map``) sections of its demo config, so that
the bench measures what the demos ship:

* ``pnp``: the Langevin default (``type: auto``, the likelihood-exact kinetic sampler here, from
  the MAP, run until ESS ≥ 100 and R̂ ≤ 1.01) with the zoo's sampling prior
  (``deblur_gray.yaml`` / ``inpainting.yaml``) — the anchor of the ratios;
* ``diffpir``: DiffPIR with the authors' settings per task (``diffpir_deblur.yaml``: 100 steps,
  λ = 7, ζ = 0.3; ``diffpir_inpainting.yaml``: 100 steps, the authors' inpainting λ = 1, ζ = 1), 25 × 4 draws;
* ``pnp-dm``: the split-Gibbs diffusion MCMC (``pnpdm_deblur.yaml``, run until converged or 120
  sweeps, for both problems);
* ``dps``: DPS (``dps_inpainting.yaml``, 250 steps, 4 × 2 draws, ``scale: auto``, so the authors' value
  for the problem × 1000/250; off by default: about three forward passes per step through
  backpropagation).

Per contender and problem: PSNR/SSIM of the sample mean, coverage of the 90 % intervals (the
share of pixels whose truth lies inside), min ESS and max R̂ (chains only: diffusion draws are
independent), the stop reason, ``calls_per_chain`` (network calls per chain, MAP included:
``map iterations + iterations × calls per iteration``, where a diffusion "iteration" is one draw)
and the wall time. ``ratios`` (per problem, same run): ``psnr_gap_db`` = contender − pnp,
``wall_ratio`` and ``calls_ratio`` = contender / pnp. The issue's targets: DiffPIR within
0.5 dB of pnp in ≤ 100 calls per sample; pnp-dm's coverage in [0.87, 0.93].

Budgets: the full run is the demos' 256² at their budgets (hours on 2 CPU cores); ``--crop``
shrinks the images (the budgets stay); ``--quick`` = 64² crops; ``--smoke`` = 16² crops with the
demo scripts' ``--fast`` budget (plumbing only, figures meaningless).
"""
from __future__ import annotations

import copy
import math
import sys
import tempfile
import time
from pathlib import Path

from bench import _common as C

NAME = "bench_diffusion"
CONFIG_DIR = C.ROOT / "demos" / "configs"
IMAGES = {"cameraman": C.ROOT / "data" / "cameraman.png", "astronaut": C.ROOT / "data" / "astronaut_gray_256.png"}
PROBLEMS = {"blur": "deblur_gray", "inpainting": "inpainting"}
#: the demo config whose sampler (prior, map) sections each contender uses, per problem
CONTENDERS = {
    "pnp": {"blur": "deblur_gray", "inpainting": "inpainting"},
    "diffpir": {"blur": "diffpir_deblur", "inpainting": "diffpir_inpainting"},
    "pnp-dm": {"blur": "pnpdm_deblur", "inpainting": "pnpdm_deblur"},
    "dps": {"blur": "dps_inpainting", "inpainting": "dps_inpainting"},
}
DEFAULT_CONTENDERS = ("pnp", "diffpir", "pnp-dm")
ANCHOR = "pnp"


def build_parser():
    ap = C.base_parser("python -m bench.bench_diffusion", __doc__.split("\n\n")[0])
    ap.add_argument("--crop", type=int, default=None, help="centre crop size (default 256: the demos'; quick 64)")
    ap.add_argument("--images", default=",".join(IMAGES), help=f"comma-separated, from {', '.join(IMAGES)}")
    ap.add_argument("--problems", default=",".join(PROBLEMS), help=f"comma-separated, from {', '.join(PROBLEMS)}")
    ap.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                    help=f"comma-separated, from {', '.join(CONTENDERS)} (the anchor {ANCHOR} is always run)")
    return ap


def contender_config(contender: str, problem: str, image_file: Path, *, fast: bool) -> dict:
    """The run config: the problem's operator and noise, the contender's sampler/prior/map."""
    from pnp_imaging.config import load_config, with_fast_budget

    base = load_config(CONFIG_DIR / f"{PROBLEMS[problem]}.yaml")
    own = load_config(CONFIG_DIR / f"{CONTENDERS[contender][problem]}.yaml")
    cfg = {"seed": 0, "image": str(image_file), "operator": base["operator"], "noise": base["noise"]}
    for key in ("sampler", "prior", "map"):
        if key in own:
            cfg[key] = copy.deepcopy(own[key])
    return with_fast_budget(cfg) if fast else cfg


def calls_per_chain(s: dict) -> int | None:
    """Network calls per chain, MAP included (module docstring)."""
    iters = (s.get("stop") or {}).get("iterations") or s.get("n_steps")
    if iters is None:
        return None
    per = s.get("denoiser_calls") or 1
    return int(((s.get("map") or {}).get("n_iter") or 0) + iters * per)


def row_of(contender: str, post, wall: float) -> dict:
    s = post.summary
    return {"contender": contender, "sampler": s.get("sampler"), "denoiser": s.get("denoiser"),
            "psnr_y": s.get("psnr_y"), "psnr_mean": s.get("psnr_mmse"), "ssim_mean": s.get("ssim_mmse"),
            "psnr_map": s.get("psnr_map"), "coverage_90": s.get("coverage"),
            "ess_min": s.get("ess_min"), "rhat_max": s.get("rhat_max"), "stop": (s.get("stop") or {}).get("reason"),
            "iterations": (s.get("stop") or {}).get("iterations") or s.get("n_steps"), "chains": s.get("chains"),
            "calls_per_sample": s.get("denoiser_calls"), "calls_per_chain": calls_per_chain(s),
            "out_of_range": (s.get("image_range") or {}).get("fraction"), "wall_s": wall}


def _ratio(a, b):
    return None if a is None or b is None or not b else a / b


def problem_ratios(rows: dict) -> dict:
    """Per contender: PSNR gap (dB), wall and calls ratios against the anchor (same run)."""
    anchor = rows.get(ANCHOR) or {}
    out = {}
    for name, r in rows.items():
        if name == ANCHOR or r.get("error"):
            continue
        gap = None if r.get("psnr_mean") is None or anchor.get("psnr_mean") is None \
            else r["psnr_mean"] - anchor["psnr_mean"]
        out[name] = {"psnr_gap_db": gap, "wall_ratio": _ratio(r.get("wall_s"), anchor.get("wall_s")),
                     "calls_ratio": _ratio(r.get("calls_per_chain"), anchor.get("calls_per_chain"))}
    return out


def run_problem(image: str, problem: str, contenders: list[str], crop: int, folder: Path, fast: bool) -> dict:
    import pnp_imaging
    from pnp_imaging.imageio import write_image

    x = C.load_image(IMAGES[image], crop)
    image_file = folder / f"{image}_{crop}.npy"
    write_image(image_file, x)
    rows = {}
    for name in contenders:
        C.log(f"{image} / {problem} / {name}: running")
        t0 = time.perf_counter()
        try:
            post = pnp_imaging.run(contender_config(name, problem, image_file, fast=fast), progress=False)
        except Exception as exc:  # noqa: BLE001 - recorded; the bench goes on
            rows[name] = {"contender": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
            C.log(f"{image} / {problem} / {name}: ERROR {rows[name]['error']}")
            continue
        rows[name] = row_of(name, post, time.perf_counter() - t0)
        r = rows[name]
        C.log(f"{image} / {problem} / {name}: mean {r['psnr_mean']:.2f} dB, cov {r['coverage_90']}, "
              f"{r['calls_per_chain']} calls/chain, {r['wall_s']:.0f} s")
    return {"image": image, "problem": problem, "crop": crop, "rows": rows, "ratios": problem_ratios(rows)}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    C.setup(args)
    images = C.choices("--images", args.images, IMAGES)
    problems = C.choices("--problems", args.problems, PROBLEMS)
    contenders = list(dict.fromkeys([ANCHOR, *C.choices("--contenders", args.contenders, CONTENDERS)]))
    crop = args.crop or (16 if args.smoke else (64 if args.quick else 256))
    machine = C.machine_info()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for image in images:
            for problem in problems:
                results.append(run_problem(image, problem, contenders, crop, Path(tmp), fast=args.smoke))
    names = sorted({r["denoiser"] for p in results for r in p["rows"].values() if r.get("denoiser")})
    from bench.bench_demos import weights_used

    path = C.write_result(
        NAME, args, config={"crop": crop, "images": images, "problems": problems, "contenders": contenders,
                            "demo_configs": {c: CONTENDERS[c] for c in contenders}},
        denoiser=_denoisers(results), raw={"problems": results},
        ratios={f"{p['image']}/{p['problem']}": p["ratios"] for p in results},
        notes=_notes(results), machine_start=machine, weights=weights_used(names))
    return {"path": str(path), "problems": results}


def _denoisers(results: list[dict]) -> dict:
    """The anchor's denoiser (``requested``, as in the other benches) and each contender's."""
    by = {name: r.get("denoiser") for p in results for name, r in p["rows"].items() if r.get("denoiser")}
    return {"requested": by.get(ANCHOR), "by_contender": by}


def _notes(results: list[dict]) -> str:
    lines = []
    for p in results:
        for name, r in p["ratios"].items():
            gap = r.get("psnr_gap_db")
            lines.append(f"{p['image']}/{p['problem']}: {name} {'n/a' if gap is None else f'{gap:+.2f}'} dB vs "
                         f"{ANCHOR}, wall x{r.get('wall_ratio') or math.nan:.2f}, calls x{r.get('calls_ratio') or math.nan:.2f}")
    return "; ".join(lines)


if __name__ == "__main__":
    main()
