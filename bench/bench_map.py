r"""Issue 7 — MAP (PnP-SGD) and MMSE (short SK-ROCK from the MAP) next to deepinv's PnP solvers
and a deterministic PnP gradient descent, on deblurring and inpainting; and what the MAP warm
start buys the sampler in burn-in.

Problems (cameraman, ``--crop`` centre crop, float32, same denoiser everywhere, ε = (5/255)²):

* ``deblur``: circular 9×9 uniform blur, σ_y = 1/255;
* ``inpainting``: 80 % of the pixels missing (uniform random mask, seeded), σ_y =
  ``--inpaint-sigma`` (1/255).

Methods (PSNR vs truth, estimate clamped to [0, 1]; wall time of one run each):

* ``ours_map_pnp_sgd``: ``pnp_sgd.run_map`` with ``auto_params`` (s = √ε perturbation,
  Robbins–Monro steps, box [-1, 2], proximal data step — exact for both problems) from the
  back-projection;
* ``ours_map_pnp_sgd_gradient_splitting``: the same with the explicit data-gradient step
  (δ₀ = 1/(αL/ε + L_y)), to measure what the proximal step buys;
* ``ours_mmse_skrock``: SK-ROCK (auto δ) from that MAP, ``--mmse-steps`` outer steps,
  ``--mmse-burnin`` discarded; its wall time INCLUDES the MAP's;
* ``pnp_gd_deterministic``: the same PnP-SGD code with ``perturbation=0`` — deterministic
  (projected, proximal-)gradient descent on U, the baseline without the stochastic smoothing;
* ``deepinv_dpir``: ``deepinv.optim.DPIR(sigma=σ_y, denoiser=D)`` (HQS, 8 iterations, denoiser σ
  annealed 49/255 → σ_y; deepinv's own parameters);
* ``deepinv_pnp_hqs``: ``optim_builder("HQS", prior=PnP(D), data_fidelity=L2())`` at fixed
  denoiser σ = √ε with ``stepsize = ε/σ_y²`` (so that prox_{γf} and D(·, √ε) split the same
  posterior, f = ½‖Ax − y‖², λ = σ_y²), ``--hqs-iters`` iterations;
* ``deepinv_pnp_pgd``: ``optim_builder("PGD", ...)`` with ``stepsize = 1/‖A‖²`` (= 1) and denoiser
  σ = σ_y (prox of γλφ with λ = σ_y²), ``--pgd-iters`` iterations;
* ``back_projection``: Aᵀy clipped (reference floor); ``initial_guess``: the start of every
  iterative method here, ``Problem.initial_guess()`` (= Aᵀy for deblurring; for inpainting the
  observed pixels with the holes filled by normalised convolution).

Warm start (``warm_start``): the SK-ROCK run of ``ours_mmse_skrock`` (init = MAP) and a run
of the same length from the initial guess (key ``back_projection``, the api's
``sampler.init: back_projection``; other seed); the
log-likelihood trace ``-f_y(x_i)`` of each is compared with the band ``[q05, q95]`` of the
pooled last-half values of both runs; burn-in = first iteration ``i >= 1`` whose value is in
the band (``None`` if never). Reported in iterations and in seconds (iterations × s/step, +
the MAP's wall time for the MAP start) and as ratios back_projection / map. The same rule is
also applied to 4 fixed random projections ``<x, r_k>`` (``burnin_iterations_projections``,
max over k): for inpainting the log-likelihood only sees the observed pixels, which settle at
once, so the loglik burn-in says little about the missing ones; the random projections are
dominated by fast pixel-scale noise and enter their (wide) band early, so read them as a lower
bound, not as a mixing diagnostic.

Paper numbers: P2 (Laumont et al., JMIV 2023) MAP-vs-MMSE tables are **[NOT FOUND]** in the
reference sheet (``/work/shared/reference/pnp_sampling.md`` §3); they are not filled in.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

from bench import _common as C

NAME = "bench_map"


def settings(args) -> dict:
    if args.smoke:
        d = dict(crop=16, stages=3, map_steps=5, mmse_steps=8, mmse_burnin=2, hqs_iters=3, pgd_iters=3)
    elif args.quick:
        d = dict(crop=64, stages=10, map_steps=200, mmse_steps=60, mmse_burnin=10, hqs_iters=30, pgd_iters=100)
    else:
        d = dict(crop=None, stages=10, map_steps=300, mmse_steps=200, mmse_burnin=20, hqs_iters=50, pgd_iters=200)
    d.update(missing=0.8, inpaint_sigma=C.SIGMA_Y, map_tol=1e-5)
    for k in list(d):
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    if getattr(args, "full_image", False):
        d["crop"] = None
    d["problems"] = [p.strip() for p in args.problems.split(",") if p.strip()]
    return d


def build_parser():
    ap = C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0])
    ap.add_argument("--crop", type=int, default=None, help="centre crop size (default: full 256²; quick 64)")
    ap.add_argument("--full-image", action="store_true", help="no crop even with --quick")
    for k in ("map_steps", "mmse_steps", "mmse_burnin", "hqs_iters", "pgd_iters", "stages"):
        ap.add_argument("--" + k.replace("_", "-"), dest=k, type=int, default=None)
    ap.add_argument("--missing", type=float, default=None, help="inpainting missing ratio (0.8)")
    ap.add_argument("--inpaint-sigma", dest="inpaint_sigma", type=float, default=None, help="inpainting σ_y (1/255)")
    ap.add_argument("--problems", default="deblur,inpainting")
    return ap


# --------------------------------------------------------------------------------------------
def burnin_from_band(trace: np.ndarray, lo: float, hi: float) -> int | None:
    """First iteration (1-based) whose value lies in ``[lo, hi]``; None if none."""
    idx = np.nonzero((trace >= lo) & (trace <= hi))[0]
    return int(idx[0]) + 1 if idx.size else None


def _skrock_run(problem, prior, x0, *, stages, n_steps, n_burnin, seed):
    from pnp_imaging.samplers import skrock
    from pnp_imaging.samplers.base import DivergenceError, TraceConfig, run_chain

    kernel = skrock.kernel(problem, prior, skrock.make_params(problem, prior, n_stages=stages))
    gen = torch.Generator().manual_seed(seed)
    t = time.perf_counter()
    try:
        res = run_chain(kernel, kernel.init(x0), n_steps=n_steps, n_burnin=n_burnin, thin=1, generator=gen,
                        trace=TraceConfig(n_random=4, loglik=True, slow=False))
    except DivergenceError as e:
        return None, {"status": "diverged: " + str(e).splitlines()[0][:200], "wall_s": time.perf_counter() - t}
    wall = time.perf_counter() - t
    return res, {"status": res.status, "wall_s": wall, "s_per_step": res.timings["s_per_step"],
                 "step_size": kernel.params.step_size, "n_steps": n_steps, "n_burnin": n_burnin}


def run_problem(kind: str, problem, den, prior, cfg, seed: int) -> dict:
    import deepinv as dinv

    from pnp_imaging.samplers import pnp_sgd

    x_true = problem.x_true
    out: dict = {"methods": {}}
    M = out["methods"]
    M["back_projection"] = {"psnr": C.psnr(problem.back_projection(), x_true), "wall_s": 0.0}
    # every iterative method starts here (A^T y for deblurring; holes filled for inpainting)
    xb = problem.initial_guess()
    M["initial_guess"] = {"psnr": C.psnr(xb, x_true), "wall_s": 0.0}

    # ours: MAP
    gen = torch.Generator().manual_seed(seed)
    params = pnp_sgd.auto_params(problem, prior)
    t = time.perf_counter()
    mres = pnp_sgd.run_map(problem, prior, xb, n_steps=cfg["map_steps"], params=params, generator=gen,
                           tol=cfg["map_tol"])
    t_map = time.perf_counter() - t
    M["ours_map_pnp_sgd"] = {"psnr": C.psnr(mres.x, x_true), "wall_s": t_map, "n_iter": mres.n_iter,
                             "stop_reason": mres.stop_reason, "step_size": params.step_size,
                             "perturbation": params.perturbation, "splitting": params.splitting}
    if params.splitting == "proximal":  # the explicit-gradient variant, for comparison
        pg = pnp_sgd.auto_params(problem, prior, splitting="gradient")
        t = time.perf_counter()
        gr = pnp_sgd.run_map(problem, prior, xb, n_steps=cfg["map_steps"], params=pg,
                             generator=torch.Generator().manual_seed(seed), tol=cfg["map_tol"])
        M["ours_map_pnp_sgd_gradient_splitting"] = {
            "psnr": C.psnr(gr.x, x_true), "wall_s": time.perf_counter() - t, "n_iter": gr.n_iter,
            "stop_reason": gr.stop_reason, "step_size": pg.step_size, "perturbation": pg.perturbation,
            "splitting": "gradient"}
    # ours: MMSE from the MAP (its trace also serves the warm-start comparison)
    res_map, info_map = _skrock_run(problem, prior, mres.x, stages=cfg["stages"], n_steps=cfg["mmse_steps"],
                                    n_burnin=cfg["mmse_burnin"], seed=seed + 1)
    if res_map is not None:
        M["ours_mmse_skrock"] = {"psnr": C.psnr(res_map.stats.mmse().float(), x_true), "wall_s": t_map + info_map["wall_s"],
                                 "sampling_wall_s": info_map["wall_s"], **{k: v for k, v in info_map.items()
                                                                           if k != "wall_s"}}
    else:
        M["ours_mmse_skrock"] = {"psnr": None, **info_map}
    # deterministic PnP (proximal-)gradient descent (perturbation 0, same splitting as ours)
    params0 = pnp_sgd.auto_params(problem, prior, perturbation=0.0)
    t = time.perf_counter()
    gres = pnp_sgd.run_map(problem, prior, xb, n_steps=cfg["map_steps"], params=params0, generator=None,
                           tol=cfg["map_tol"])
    M["pnp_gd_deterministic"] = {"psnr": C.psnr(gres.x, x_true), "wall_s": time.perf_counter() - t,
                                 "n_iter": gres.n_iter, "stop_reason": gres.stop_reason,
                                 "step_size": params0.step_size, "perturbation": 0.0, "splitting": params0.splitting}

    # deepinv solvers, same denoiser / y / operator
    physics = C.deepinv_physics(problem)
    sigma_y = float(problem.noise.sigma)
    sd = math.sqrt(C.EPS)
    y = problem.y
    solvers = {
        "deepinv_dpir": (lambda: dinv.optim.DPIR(sigma=sigma_y, denoiser=den),
                         {"iteration": "HQS (DPIR)", "max_iter": 8, "params": "deepinv get_DPIR_params"}),
        "deepinv_pnp_hqs": (lambda: dinv.optim.optim_builder(
            "HQS", prior=dinv.optim.PnP(denoiser=den), data_fidelity=dinv.optim.L2(), max_iter=cfg["hqs_iters"],
            early_stop=False, params_algo={"stepsize": C.EPS / sigma_y ** 2, "lambda": sigma_y ** 2, "g_param": sd}),
            {"iteration": "HQS", "max_iter": cfg["hqs_iters"],
             "params_algo": {"stepsize": C.EPS / sigma_y ** 2, "lambda": sigma_y ** 2, "g_param": sd}}),
        "deepinv_pnp_pgd": (lambda: dinv.optim.optim_builder(
            "PGD", prior=dinv.optim.PnP(denoiser=den), data_fidelity=dinv.optim.L2(), max_iter=cfg["pgd_iters"],
            early_stop=False, params_algo={"stepsize": 1.0 / problem.operator.norm_squared(problem.x_shape),
                                           "lambda": sigma_y ** 2, "g_param": sigma_y}),
            {"iteration": "PGD", "max_iter": cfg["pgd_iters"],
             "params_algo": {"stepsize": 1.0 / problem.operator.norm_squared(problem.x_shape),
                             "lambda": sigma_y ** 2, "g_param": sigma_y}}),
    }
    for name, (make, desc) in solvers.items():
        try:
            model = make()
            t = time.perf_counter()
            with torch.no_grad():
                xh = model(y, physics, init=xb.clone())  # same start as ours (deblur: = deepinv's A^T y default)
            M[name] = {"psnr": C.psnr(xh, x_true), "wall_s": time.perf_counter() - t, "init": "initial_guess", **desc}
        except Exception as e:  # noqa: BLE001 - a baseline failing must not sink the bench
            M[name] = {"psnr": None, "error": f"{type(e).__name__}: {str(e)[:200]}", **desc}

    # warm start: same SK-ROCK run length from the back-projection
    res_bp, info_bp = _skrock_run(problem, prior, xb, stages=cfg["stages"], n_steps=cfg["mmse_steps"],
                                  n_burnin=cfg["mmse_burnin"], seed=seed + 2)
    ws: dict = {"init_map": info_map, "init_back_projection": info_bp}
    if res_map is not None and res_bp is not None:
        a = res_map.traces["loglik"][0]
        b = res_bp.traces["loglik"][0]
        h = len(a) // 2
        pooled = np.concatenate([a[h:], b[h:]])
        lo, hi = (float(v) for v in np.quantile(pooled, [0.05, 0.95]))
        i_map, i_bp = burnin_from_band(a, lo, hi), burnin_from_band(b, lo, hi)
        width = hi - lo
        # the same rule on the random-projection traces <x, r_k>; burn-in = max over k (None if any never enters)
        proj = {}
        for init, res in (("map", res_map), ("back_projection", res_bp)):
            its = []
            for name in sorted(n for n in res_map.traces if n.startswith("proj")):
                pa, pb = res_map.traces[name][0], res_bp.traces[name][0]
                plo, phi = np.quantile(np.concatenate([pa[h:], pb[h:]]), [0.05, 0.95])
                its.append(burnin_from_band(res.traces[name][0], float(plo), float(phi)))
            proj[init] = None if (not its or None in its) else max(its)
        ws.update(
            burnin_iterations_projections=proj,
            band=[lo, hi],
            last_half_median_gap_in_band_widths=float(abs(np.median(a[h:]) - np.median(b[h:])) / width) if width > 0 else None,
            loglik_init={"map": float(-problem.data_nll(mres.x).item()), "back_projection": float(-problem.data_nll(xb).item())},
            burnin_iterations={"map": i_map, "back_projection": i_bp},
            burnin_seconds={
                "map_incl_map_time": (t_map + i_map * info_map["s_per_step"]) if i_map else None,
                "map_sampling_only": (i_map * info_map["s_per_step"]) if i_map else None,
                "back_projection": (i_bp * info_bp["s_per_step"]) if i_bp else None,
            },
            trace_loglik={"map": a[:: max(1, len(a) // 200)].tolist(), "back_projection": b[:: max(1, len(b) // 200)].tolist()},
        )
        if res_bp is not None:
            M["skrock_from_back_projection"] = {"psnr": C.psnr(res_bp.stats.mmse().float(), x_true),
                                                "wall_s": info_bp["wall_s"], "note": "MMSE with the same burn-in, "
                                                "no MAP (for the warm-start comparison)"}
    out["warm_start"] = ws
    return out


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    C.setup(args)
    machine = C.machine_info()
    cfg = settings(args)

    from pnp_imaging.priors import ScorePrior

    x_true = C.load_image(args.image, cfg["crop"])
    den, den_info = C.load_denoiser(args.denoiser, args.fallback)
    L, L_info = C.resolve_lipschitz(args.lipschitz, den, x_true, math.sqrt(C.EPS), seed=args.seed)
    prior = ScorePrior(den, eps=C.EPS, lipschitz=L)

    problems = {}
    t_all = time.perf_counter()
    for kind in cfg["problems"]:
        if kind == "deblur":
            pb = C.blur_problem(x_true, seed=args.seed)
        elif kind == "inpainting":
            pb = C.inpainting_problem(x_true, missing=cfg["missing"], sigma_y=cfg["inpaint_sigma"], seed=args.seed)
        else:
            raise SystemExit(f"--problems: unknown {kind!r}; use deblur, inpainting")
        C.log(f"{NAME}: {kind} ({tuple(x_true.shape[-2:])} image)")
        problems[kind] = {"data_lipschitz": pb.data_lipschitz,
                          "operator_mismatch_vs_deepinv": C.operator_mismatch(pb, C.deepinv_physics(pb)),
                          **run_problem(kind, pb, den, prior, cfg, args.seed)}
    wall = time.perf_counter() - t_all

    ratios: dict = {}
    suspect: list[str] = []
    for kind, r in problems.items():
        M = r["methods"]
        ref = M["ours_map_pnp_sgd"]
        ent = {
            "psnr_minus_ours_map_db": {n: (m["psnr"] - ref["psnr"]) if m.get("psnr") is not None else None
                                       for n, m in M.items() if n != "ours_map_pnp_sgd"},
            "wall_time_over_ours_map": {n: (m["wall_s"] / ref["wall_s"]) if m.get("wall_s") and ref["wall_s"] else None
                                        for n, m in M.items() if n not in ("ours_map_pnp_sgd", "back_projection", "initial_guess")},
            "mmse_minus_map_db": (M["ours_mmse_skrock"]["psnr"] - ref["psnr"]) if M["ours_mmse_skrock"].get("psnr") is not None else None,
        }
        ws = r["warm_start"]
        if "burnin_iterations" in ws:
            bi, bs = ws["burnin_iterations"], ws["burnin_seconds"]
            bp_ = ws["burnin_iterations_projections"]
            ent["warm_start"] = {
                "burnin_iterations_bp/map": (bi["back_projection"] / bi["map"]) if bi["map"] and bi["back_projection"] else None,
                "burnin_iterations_projections_bp/map": (bp_["back_projection"] / bp_["map"])
                if bp_["map"] and bp_["back_projection"] else None,
                "burnin_seconds_bp/map_incl_map": (bs["back_projection"] / bs["map_incl_map_time"])
                if bs["back_projection"] and bs["map_incl_map_time"] else None,
                "note": "None when a run never entered the band within its budget (see raw)",
            }
        mm, mp = M["ours_mmse_skrock"].get("psnr"), ref["psnr"]
        if mm is not None and mm < mp - 1.0:
            ent["sanity"] = (f"SUSPECT POSTERIOR: MMSE {mm:.2f} dB is > 1 dB below the MAP {mp:.2f} dB; the chain "
                             "left the image manifold (denoiser poor at sigma = sqrt(eps), or L underestimated)")
            suspect.append(kind)
        ratios[kind] = ent
    config = {**cfg, "image": str(args.image), "image_shape": list(x_true.shape), "eps": C.EPS, "alpha": 1.0,
              "lipschitz": L_info, "dtype": "float32", "chains": 1,
              "deblur": "circular uniform 9x9, sigma_y = 1/255",
              "inpainting": f"random mask, missing {cfg['missing']}, sigma_y = {cfg['inpaint_sigma']:.6g}"}
    notes = (
        "Measured: PSNR (vs truth, clamped) and single-run wall time of our PnP-SGD MAP, our SK-ROCK MMSE from "
        "the MAP (time includes the MAP), a deterministic PnP gradient descent (pnp_sgd with perturbation=0), "
        "deepinv DPIR / PnP-HQS (fixed sigma = sqrt(eps)) / PnP-PGD (sigma = sigma_y) with the SAME denoiser, "
        "operator and y, and the back-projection; plus SK-ROCK burn-in to the pooled last-half [q05, q95] "
        "log-likelihood band from the MAP vs from the back-projection. Not measured: SSIM, UQ/coverage, "
        "parameter tuning of the deepinv baselines (one principled setting each, in raw), repeated timings "
        "(single runs: wall-time ratios are indicative only on a shared CPU). PAPER NUMBERS: P2's MAP-vs-MMSE "
        "results are [NOT FOUND] in the reference sheet and are deliberately not filled in. "
        f"Denoiser: {den_info.get('name')} (source {den_info.get('source')}, trained={den_info.get('trained')})"
        + ("" if den_info.get("trained") is True else " -- NOT the final weights: PSNRs are provisional")
        + "."
    )
    if suspect:
        notes += f" SUSPECT POSTERIOR on {suspect}: see ratios[<problem>]['sanity']."
    C.write_result(NAME, args, config=config, denoiser=den_info, raw={"problems": problems, "bench_wall_s": wall},
                   ratios=ratios, notes=notes, machine_start=machine, status="suspect_posterior" if suspect else "ok",
                   extra={"paper": {"P2_map_vs_mmse": "[NOT FOUND]", "P1_mmse_psnr": "[NOT FOUND]"}})
    return {"ratios": ratios, "raw": problems}


if __name__ == "__main__":
    main(sys.argv[1:])
