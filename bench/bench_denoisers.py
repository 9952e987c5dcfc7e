"""Zoo denoisers vs BM3D on held-out images: PSNR side by side and speed ratio, same run.

    python -m bench.bench_denoisers [--quick | --smoke] [--models drunet_gray,drunet_rgb,...] [--threads N]

For every model (default: all trained zoo models) and every sigma in {15, 25, 50}/255 within its
``sigma_range`` (fixed-sigma models: their sigma), one noise realisation (seeded generator) is
denoised by the model and by BM3D (CBM3D for colour). Gray models use the held-out cameraman
(``data/cameraman.png`` or ``skimage.data.camera()``) and the gray version of a held-out astronaut
crop (a second picture, so that nothing is tuned to one image); colour models the astronaut crop.
Writes ``bench/results/denoisers.json`` (with the sha256 of every weights file evaluated).

Quality bar (issue 4): gray noise-conditional model >= BM3D + 0.3 dB at each of sigma = 15, 25,
50 /255 at >= 30x BM3D's speed (same machine, same thread count, same run). The JSON states
per model whether it is met and by how much it falls short; the bar is never lowered here.
"""
from __future__ import annotations

import os
import sys

from bench._common import base_parser, log, machine_info, setup, write_result, zoo_weights

TARGET_GAIN_DB = 0.3
TARGET_SPEED = 30.0
SIGMAS = (15, 25, 50)


def _sigmas(den) -> list[float]:
    lo, hi = den.sigma_range
    if hi - lo < 1e-9:
        return [round(lo * 255, 6)]
    return [s for s in SIGMAS if lo * 255 - 1e-9 <= s <= hi * 255 + 1e-9]


def main(argv: list[str] | None = None) -> int:
    previous = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        return _main(argv)
    finally:  # --cores pins the process; give a caller (e.g. pytest) its cores back
        if previous is not None:
            os.sched_setaffinity(0, previous)


NOTES = ("PSNR in dB on outputs clamped to [0,1]; one seeded noise realisation per sigma shared by model and BM3D; "
         "times are medians of 3 model calls and one BM3D call on the same image; torch threads as in "
         "torch_threads, BM3D's library uses its own threads: with config.cpu_affinity set both ran on "
         "those cores only (the fair comparison). "
         "Fixed-sigma models (e.g. lipdncnn_gray_s5) are evaluated at their sigma only and are outside the quality bar.")


def _parser():
    ap = base_parser("python -m bench.bench_denoisers", __doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated zoo names (default: all trained models)")
    ap.add_argument("--cores", type=int, default=None,
                    help="pin the process to this many CPU cores (os.sched_setaffinity) so the network and BM3D "
                         "get the same cores: the bm3d package's library starts its own threads whatever torch's "
                         "thread count (measured: CPU time 1.3-1.4x wall time on 2 cores), so --threads alone "
                         "favours BM3D")
    return ap


def _crop(im, crop: int | None, name: str):
    if crop is None:
        return im, name
    h, w = im.shape[-2:]
    r0, c0 = (h - crop) // 2, (w - crop) // 2
    return im[..., r0 : r0 + crop, c0 : c0 + crop].contiguous(), f"{name}_center{crop}"


def _evaluate(den, name: str, args, crop: int | None, bm3d) -> dict:
    """``{image: rows}``: model vs BM3D on each held-out image at each of its sigmas."""
    from denoisers_zoo.evaluate import eval_images, psnr_rows

    sig = _sigmas(den)[:1] if args.smoke else _sigmas(den)
    per_image = {}
    for img_name, im in eval_images(den.channels).items():
        im, img_name = _crop(im, crop, img_name)
        log(f"{name} on {img_name} {tuple(im.shape)} at sigma {sig}/255")
        per_image[img_name] = psnr_rows(den, im, sig, seed=args.seed, baseline=bm3d, n_time=3)
    for r in (r for v in per_image.values() for r in v):
        log(f"  sigma {r['sigma_255']:g}: noisy {r['psnr_noisy']:.2f}  {name} {r['psnr_model']:.2f}  "
            f"BM3D {r['psnr_baseline']:.2f}  gain {r['gain_db']:+.2f} dB  speed x{r['speed_ratio']:.0f}")
    return per_image


def _quality_bar(den, rows: list[dict]) -> dict | None:
    """The issue-4 bar for gray noise-conditional models (None where it does not apply)."""
    if not (den.channels == 1 and den.sigma_range[1] - den.sigma_range[0] > 1e-9):
        return None
    short = {f"{r['sigma_255']:g}": round(TARGET_GAIN_DB - r["gain_db"], 3) for r in rows if r["gain_db"] < TARGET_GAIN_DB}
    slow = [f"{r['sigma_255']:g}" for r in rows if r["speed_ratio"] < TARGET_SPEED]
    return {
        "target": f">= BM3D + {TARGET_GAIN_DB} dB at each sigma in {list(SIGMAS)}/255 at >= {TARGET_SPEED:g}x BM3D speed",
        "met": not short and not slow and {f"{s:g}" for s in SIGMAS} <= {f"{r['sigma_255']:g}" for r in rows},
        "db_short_of_target_by_sigma": short,
        "sigmas_below_speed_target": slow,
    }


def _model_result(den, per_image: dict) -> dict:
    from denoisers_zoo.nets import count_parameters

    rows = [r for v in per_image.values() for r in v]
    return {"channels": den.channels, "sigma_range": list(den.sigma_range), "parameters": count_parameters(den),
            "lipschitz": den.lipschitz, "rows": per_image, "quality_bar": _quality_bar(den, rows),
            "min_gain_db": min(r["gain_db"] for r in rows), "min_speed_ratio": min(r["speed_ratio"] for r in rows)}


def _main(argv: list[str] | None) -> int:
    import denoisers_zoo as zoo

    args = _parser().parse_args(argv)
    args.argv = argv if argv is not None else sys.argv[1:]
    affinity = None
    if args.cores:
        affinity = sorted(os.sched_getaffinity(0))[: int(args.cores)]
        os.sched_setaffinity(0, affinity)
    setup(args)
    machine = machine_info()
    photo = lambda n: zoo.read_manifest()["models"][n].get("data_source", "skimage.data") == "skimage.data"  # noqa: E731
    names = args.models.split(",") if args.models else [n for n in zoo.available() if n != "bm3d" and photo(n)]
    crop = 64 if args.smoke else (256 if args.quick else None)
    bm3d = zoo.load("bm3d")
    results, missing = {}, []
    for name in names:
        try:
            den = zoo.load(name)
        except (FileNotFoundError, ValueError) as e:
            log(f"skip {name}: {e}")
            missing.append({"name": name, "reason": str(e)})
            continue
        results[name] = _model_result(den, _evaluate(den, name, args, crop, bm3d))
    raw = {n: r["rows"] for n, r in results.items()}
    ratios = {n: {"min_gain_db": r["min_gain_db"], "min_speed_ratio": r["min_speed_ratio"]} for n, r in results.items()}
    write_result("denoisers", args, config={"sigmas_255": list(SIGMAS), "crop": crop, "seed": args.seed,
                                            "models": names, "cpu_affinity": affinity},
                 denoiser=None, raw=raw, ratios=ratios, notes=NOTES, status="ok" if results else "no_models",
                 extra={"models": results, "missing": missing}, machine_start=machine,
                 weights=[zoo_weights(n) for n in results], module="bench.bench_denoisers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
