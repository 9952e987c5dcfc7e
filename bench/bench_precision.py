"""Issue 22 — effect of the reduced-precision denoiser mode (``prior.precision: bfloat16``) on the estimates.

The default sampler of a Gaussian deblurring problem (``pnp-kinetic-exp``; cameraman centre
crop, 9×9 uniform circular blur, σ_y = 1/255, the library's gray prior) is run three times
with the same settings: full precision with seed ``s`` (the anchor), bfloat16 with seed ``s``
(the contender) and full precision with seed ``s + 1`` (the Monte Carlo reference). With
different rounding the chains decorrelate, so the contender differs from the anchor by Monte
Carlo error plus whatever bias bfloat16 adds; the ratio

    rms(MMSE_bf16 − MMSE_full) / rms(MMSE_full,seed+1 − MMSE_full)

is ≈ 1 when bfloat16 adds nothing beyond Monte Carlo error (≫ 1: a visible bias). Also
reported: PSNR of each MMSE against the truth and their difference, the largest absolute
difference of the MMSE and of the posterior std, and the sampling wall times (one core).
"""
from __future__ import annotations

import sys
import time

import torch

from bench import _common as C

NAME = "bench_precision"


def settings(args) -> dict:
    if args.smoke:
        return dict(size=16, chains=2, n_steps=20, n_burnin=5)
    if args.quick:
        return dict(size=64, chains=4, n_steps=200, n_burnin=50)
    return dict(size=96, chains=4, n_steps=1000, n_burnin=200)


def _run(problem, den, lip: float, precision: str, seed: int, cfg: dict):
    import pnp_imaging
    from pnp_imaging.priors import ScorePrior

    prior = ScorePrior(den, eps=C.EPS, lipschitz=lip, precision=precision)
    t = time.perf_counter()
    post = pnp_imaging.sample(problem, prior, "pnp-kinetic-exp", generator=torch.Generator().manual_seed(seed),
                              n_steps=cfg["n_steps"], n_burnin=cfg["n_burnin"], chains=cfg["chains"])
    return post, time.perf_counter() - t


def _rms(t: torch.Tensor) -> float:
    return float(t.double().pow(2).mean().sqrt())


def main(argv: list[str] | None = None) -> dict:
    from pnp_imaging.metrics import psnr

    args, machine, cfg = C.start(C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0]), argv, settings)
    den, den_info = C.load_denoiser(args.denoiser, args.fallback)
    x_true = C.load_image(args.image, cfg["size"])
    problem = C.blur_problem(x_true, seed=args.seed)
    lip, lip_info = C.resolve_lipschitz(args.lipschitz, den, x_true, C.EPS ** 0.5, seed=args.seed)
    for precision in ("full", "bfloat16"):  # warm-up: lazy imports, numba compilation, allocator
        _run(problem, den, lip, precision, args.seed, {**cfg, "n_steps": 12, "n_burnin": 2})
    full, t_full = _run(problem, den, lip, "full", args.seed, cfg)
    bf16, t_bf16 = _run(problem, den, lip, "bfloat16", args.seed, cfg)
    other, t_other = _run(problem, den, lip, "full", args.seed + 1, cfg)
    truth = x_true.double()
    p_full, p_bf16, p_other = (psnr(p.mmse, truth) for p in (full, bf16, other))
    mc = _rms(other.mmse - full.mmse)
    ratios = {"rms_mmse_diff_bf16/rms_mmse_diff_other_seed": _rms(bf16.mmse - full.mmse) / mc,
              "psnr_mmse_bf16_minus_full_db": p_bf16 - p_full, "psnr_mmse_other_seed_minus_full_db": p_other - p_full,
              "max_abs_mmse_diff_bf16": float((bf16.mmse - full.mmse).abs().max()),
              "max_abs_mmse_diff_other_seed": float((other.mmse - full.mmse).abs().max()),
              "max_abs_std_diff_bf16": float((bf16.std - full.std).abs().max()),
              "max_abs_std_diff_other_seed": float((other.std - full.std).abs().max()),
              "sampling_wall_bf16/full": t_bf16 / t_full,
              "target": "rms ratio ~ 1: bfloat16 adds no error beyond Monte Carlo error"}
    raw = {"psnr_mmse": {"full": p_full, "bfloat16": p_bf16, "full_other_seed": p_other},
           "rms_mmse_diff_other_seed": mc, "wall_s": {"full": t_full, "bfloat16": t_bf16, "full_other_seed": t_other}}
    config = {**cfg, "image": str(args.image), "operator": "blur uniform 9x9 circular", "sigma_y": C.SIGMA_Y,
              "eps": C.EPS, "lipschitz": lip_info, "sampler": "pnp-kinetic-exp", "dtype": "float32"}
    C.write_result(NAME, args, config=config, denoiser=den_info, raw=raw, ratios=ratios, machine_start=machine,
                   notes="bfloat16 = torch.autocast around the denoiser only (chains, data term and statistics in "
                         "float32). Same seed as the anchor: trajectories decorrelate after a few steps through "
                         "rounding, so differences are compared with those between two full-precision seeds.")
    return {"ratios": ratios}


if __name__ == "__main__":
    main(sys.argv[1:])
