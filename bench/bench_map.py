r"""Issue 7 — MAP (PnP-SGD) and MMSE (short SK-ROCK from the MAP) next to deepinv's PnP solvers
and a deterministic PnP gradient descent, on deblurring and inpainting; and what the MAP warm
start buys the sampler in burn-in.

Problems (cameraman, ``--crop`` centre crop, float32, same denoiser everywhere — by default the
library's prior ``denoisers_zoo.default_prior(1)`` —, ε = (5/255)²):

* ``deblur``: circular 9×9 uniform blur, σ_y = 1/255;
* ``inpainting``: 80 % of the pixels missing (uniform random mask, seeded), σ_y =
  ``--inpaint-sigma`` (1/255).

Methods (PSNR vs truth, ``pnp_imaging.metrics.psnr``: estimate clamped to [0, 1]; wall time of
one run each):

* ``ours_map_pnp_sgd``: ``pnp_imaging.map_estimate`` (s = √ε perturbation, Robbins–Monro steps,
  box [-1, 2], proximal data step — exact for both problems) from the initial guess;
* ``ours_map_continuation``: ``pnp_imaging.map_estimate(..., method="continuation")``
  (``docs/algorithms.md §map-continuation``: DPIR-type levels from 25/255 down to √ε, then at most 8
  forward–backward steps at √ε; refused, and recorded as an error, for a single-level denoiser);
  its time against DPIR's is also measured as the median of ``--repeats`` interleaved runs
  (``fast_map_timing``; ratios in ``ratios[<problem>]["continuation"]``); every MAP entry has its
  ``denoiser_calls`` and ``map_health``;
* ``ours_map_pnp_sgd_gradient_splitting``: the same with ``splitting="gradient"`` (explicit
  data-gradient step, δ₀ = 1/(αL/ε + L_y)), to measure what the proximal step buys;
* ``ours_mmse_skrock``: ``pnp_imaging.sample(problem, prior, "skrock", chains=1, x0=MAP)``
  (auto δ), ``--mmse-steps`` outer steps, ``--mmse-burnin`` discarded; its wall time INCLUDES
  the MAP's;
* ``pnp_gd_deterministic``: the same PnP-SGD code (``pnp_imaging.optim.pnp_sgd.run_map``) with
  ``perturbation=0`` — deterministic (projected, proximal-)gradient descent on U, the baseline
  without the stochastic smoothing;
* ``deepinv_dpir``: ``deepinv.optim.DPIR(sigma=σ_y, denoiser=D)`` (HQS, 8 iterations, denoiser σ
  annealed 49/255 → σ_y; deepinv's own parameters);
* ``deepinv_pnp_hqs``: ``optim_builder("HQS", prior=PnP(D), data_fidelity=L2())`` at fixed
  denoiser σ = √ε with ``stepsize = ε/σ_y²`` (so that prox_{γf} and D(·, √ε) split the same
  posterior, f = ½‖Ax − y‖², λ = σ_y²), ``--hqs-iters`` iterations;
* ``deepinv_pnp_pgd``: ``optim_builder("PGD", ...)`` with ``stepsize = 1/‖A‖²`` (= 1) and denoiser
  σ = σ_y (prox of γλφ with λ = σ_y²), ``--pgd-iters`` iterations;
* ``back_projection``: Aᵀy clipped (the floor); ``initial_guess``: the start of every
  iterative method here, ``Problem.initial_guess()`` (= Aᵀy for deblurring; for inpainting the
  observed pixels with the holes filled by normalised convolution).

``--map-only``: the MAP estimators and the deepinv solvers only (no SK-ROCK, no warm start).

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

Paper numbers: the MAP-vs-MMSE tables of Laumont et al. (JMIV 2023) could not be checked
(docs/algorithms.md §pnp-sgd); they are not filled in.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch

from bench import _common as C
from pnp_imaging.metrics import psnr

NAME = "bench_map"
UNCHECKED = "could not be checked (docs/algorithms.md §pnp-sgd)"
PAPER = {"P2_map_vs_mmse": UNCHECKED, "P1_mmse_psnr": "could not be checked (not filled in)"}


def settings(args) -> dict:
    if args.smoke:
        d = dict(crop=16, stages=3, map_steps=5, mmse_steps=8, mmse_burnin=2, hqs_iters=3, pgd_iters=3)
    elif args.quick:
        d = dict(crop=64, stages=10, map_steps=200, mmse_steps=60, mmse_burnin=10, hqs_iters=30, pgd_iters=100)
    else:
        d = dict(crop=None, stages=10, map_steps=300, mmse_steps=200, mmse_burnin=20, hqs_iters=50, pgd_iters=200)
    d.update(missing=0.8, inpaint_sigma=C.SIGMA_Y, map_tol=1e-5, repeats=1 if args.smoke else 5)
    d = C.apply_overrides(d, args)
    d["problems"] = [p.strip() for p in args.problems.split(",") if p.strip()]
    d["map_only"] = bool(args.map_only)
    return d


def build_parser():
    ap = C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0])
    ap.add_argument("--crop", type=int, default=None, help="centre crop size (default: full 256²; quick 64)")
    ap.add_argument("--full-image", action="store_true", help="no crop even with --quick")
    C.add_int_options(ap, dict.fromkeys(("map_steps", "mmse_steps", "mmse_burnin", "hqs_iters", "pgd_iters", "stages")))
    ap.add_argument("--missing", type=float, default=None, help="inpainting missing ratio (0.8)")
    ap.add_argument("--inpaint-sigma", dest="inpaint_sigma", type=float, default=None, help="inpainting σ_y (1/255)")
    ap.add_argument("--problems", default="deblur,inpainting")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats of the fast MAPs (continuation, DPIR), "
                    "interleaved; the median is reported (5)")
    ap.add_argument("--map-only", dest="map_only", action="store_true",
                    help="MAP estimators only: no SK-ROCK MMSE and no warm-start comparison")
    return ap


# --------------------------------------------------------------------------------------------
# our estimators
# --------------------------------------------------------------------------------------------
def burnin_from_band(trace: np.ndarray, lo: float, hi: float) -> int | None:
    """First iteration (1-based) whose value lies in ``[lo, hi]``; None if none."""
    idx = np.nonzero((trace >= lo) & (trace <= hi))[0]
    return int(idx[0]) + 1 if idx.size else None


def _skrock_run(problem, prior, x0, cfg, *, seed):
    """``pnp_imaging.sample`` with SK-ROCK, one chain from ``x0``; ``(posterior or None, info)``."""
    import pnp_imaging
    from pnp_imaging.samplers import DivergenceError

    t = time.perf_counter()
    try:
        post = pnp_imaging.sample(problem, prior, "skrock", generator=torch.Generator().manual_seed(seed),
                                  n_steps=cfg["mmse_steps"], n_burnin=cfg["mmse_burnin"], chains=1, x0=x0,
                                  stages=cfg["stages"])
    except DivergenceError as e:
        return None, {"status": "diverged: " + str(e).splitlines()[0][:200], "wall_s": time.perf_counter() - t}
    s = post.summary
    return post, {"status": "completed", "wall_s": time.perf_counter() - t, "s_per_step": s["timings"]["s_per_step"],
                  "step_size": s["step_size"], "n_steps": s["n_steps"], "n_burnin": s["n_burnin"]}


def _map_entry(res, problem, wall: float) -> dict:
    from pnp_imaging.optim import map_health

    p, health = res.params, map_health(problem, res.x)
    return {"psnr": psnr(res.x, problem.x_true), "wall_s": wall, "n_iter": res.n_iter, "denoiser_calls": res.n_iter,
            "stop_reason": res.stop_reason, "step_size": p.step_size, "perturbation": p.perturbation,
            "splitting": p.splitting, "map_health": {"misfit": health.misfit, "out_of_range": health.out_of_range,
                                                     "warning": health.warning}}


def _timed_map(problem, prior, xb, cfg, seed: int, **options):
    """``pnp_imaging.map_estimate`` from ``xb`` (``options``: e.g. ``method``, ``splitting``);
    ``(result or None, method entry)``."""
    import pnp_imaging

    t = time.perf_counter()
    try:
        res = pnp_imaging.map_estimate(problem, prior, generator=torch.Generator().manual_seed(seed), x0=xb,
                                       n_steps=cfg["map_steps"], tol=cfg["map_tol"], **options)
    except ValueError as e:  # divergence: recorded, the bench goes on from the initial guess
        return None, {"psnr": None, "wall_s": time.perf_counter() - t, "error": str(e)[:200]}
    return res, _map_entry(res, problem, time.perf_counter() - t)


def _deterministic_gd(problem, prior, xb, cfg) -> dict:
    """PnP-SGD with ``perturbation=0``: deterministic (proximal-)gradient descent on U."""
    from pnp_imaging.optim import pnp_sgd

    params = pnp_sgd.auto_params(problem, prior, perturbation=0.0)
    t = time.perf_counter()
    res = pnp_sgd.run_map(problem, prior, xb, n_steps=cfg["map_steps"], params=params, generator=None,
                          tol=cfg["map_tol"])
    return _map_entry(res, problem, time.perf_counter() - t)


def _our_methods(problem, prior, cfg, seed: int, xb) -> tuple[dict, dict]:
    """Our MAPs (PnP-SGD, both splittings; continuation), the MMSE from PnP-SGD's MAP (not with
    ``--map-only``) and the deterministic baseline; returns the method entries and what the
    warm-start comparison needs."""
    x_true = problem.x_true
    M: dict = {"back_projection": {"psnr": psnr(problem.back_projection(), x_true), "wall_s": 0.0},
               "initial_guess": {"psnr": psnr(xb, x_true), "wall_s": 0.0}}
    mres, M["ours_map_pnp_sgd"] = _timed_map(problem, prior, xb, cfg, seed)
    t_map = M["ours_map_pnp_sgd"]["wall_s"]
    if mres is not None and mres.params.splitting == "proximal" and not cfg["map_only"]:  # for comparison
        M["ours_map_pnp_sgd_gradient_splitting"] = _timed_map(problem, prior, xb, cfg, seed, splitting="gradient")[1]
    if problem.has_data_prox:
        cres, M["ours_map_continuation"] = _timed_map(problem, prior, xb, cfg, seed, method="continuation")
        if cres is not None:
            M["ours_map_continuation"]["levels_255"] = [255 * s for s in cres.params.sigmas]
    x_map = mres.x if mres is not None else xb
    post, info = (None, {"status": "skipped (--map-only)"}) if cfg["map_only"] else \
        _skrock_run(problem, prior, x_map, cfg, seed=seed + 1)
    M["ours_mmse_skrock"] = {"psnr": None, **info}
    if post is not None:
        extra = {k: v for k, v in info.items() if k != "wall_s"}
        M["ours_mmse_skrock"] = {"psnr": psnr(post.mmse, x_true), "wall_s": t_map + info["wall_s"],
                                 "sampling_wall_s": info["wall_s"], **extra}
    M["pnp_gd_deterministic"] = _deterministic_gd(problem, prior, xb, cfg)
    return M, {"post": post, "info": info, "x_map": x_map, "t_map": t_map}


def _fast_map_timing(problem, den, prior, cfg, xb, seed: int) -> dict:
    """Continuation MAP vs deepinv DPIR, same denoiser, timed ``repeats`` times interleaved
    (``C.interleaved``, one warm-up round); median seconds and their ratio."""
    import pnp_imaging

    if not problem.has_data_prox:
        return {"note": "no exact data prox: continuation not applicable"}
    dpir, _ = _deepinv_solvers(problem, den, cfg)["deepinv_dpir"]
    model, physics = dpir(), C.deepinv_physics(problem)

    def run_dpir() -> float:
        t = time.perf_counter()
        with torch.no_grad():
            model(problem.y, physics, init=xb.clone())
        return time.perf_counter() - t

    def run_cont() -> float:
        t = time.perf_counter()
        pnp_imaging.map_estimate(problem, prior, generator=torch.Generator().manual_seed(seed), x0=xb,
                                 n_steps=cfg["map_steps"], tol=cfg["map_tol"], method="continuation")
        return time.perf_counter() - t

    try:
        times = C.interleaved({"continuation": run_cont, "deepinv_dpir": run_dpir}, reps=cfg["repeats"])
    except Exception as e:  # noqa: BLE001 - e.g. DPIR with a fixed-level denoiser: recorded, the bench goes on
        return {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    med = {k: C.median(v) for k, v in times.items()}
    return {"seconds": times, "median_s": med, "continuation_over_dpir": _quotient(med["continuation"],
                                                                                  med["deepinv_dpir"])}


# --------------------------------------------------------------------------------------------
# deepinv's solvers, same denoiser / y / operator
# --------------------------------------------------------------------------------------------
def _deepinv_solvers(problem, den, cfg) -> dict:
    """``{name: (make_model, description)}``."""
    import deepinv as dinv

    sigma_y = float(problem.noise.sigma)
    hqs = {"stepsize": C.EPS / sigma_y ** 2, "lambda": sigma_y ** 2, "g_param": math.sqrt(C.EPS)}
    pgd = {"stepsize": 1.0 / problem.operator.norm_squared(problem.x_shape), "lambda": sigma_y ** 2,
           "g_param": sigma_y}

    def builder(iteration: str, params: dict, n_iter: int):
        return lambda: dinv.optim.optim_builder(iteration, prior=dinv.optim.PnP(denoiser=den),
                                                data_fidelity=dinv.optim.L2(), max_iter=n_iter, early_stop=False,
                                                params_algo=params)

    return {
        "deepinv_dpir": (lambda: dinv.optim.DPIR(sigma=sigma_y, denoiser=den),
                         {"iteration": "HQS (DPIR)", "max_iter": 8, "params": "deepinv get_DPIR_params"}),
        "deepinv_pnp_hqs": (builder("HQS", hqs, cfg["hqs_iters"]),
                            {"iteration": "HQS", "max_iter": cfg["hqs_iters"], "params_algo": hqs}),
        "deepinv_pnp_pgd": (builder("PGD", pgd, cfg["pgd_iters"]),
                            {"iteration": "PGD", "max_iter": cfg["pgd_iters"], "params_algo": pgd}),
    }


def _deepinv_methods(problem, den, cfg, xb) -> dict:
    physics = C.deepinv_physics(problem)
    out = {}
    for name, (make, desc) in _deepinv_solvers(problem, den, cfg).items():
        try:
            model = make()
            t = time.perf_counter()
            with torch.no_grad():
                xh = model(problem.y, physics, init=xb.clone())  # same start as ours (deblur: = deepinv's A^T y default)
            out[name] = {"psnr": psnr(xh, problem.x_true), "wall_s": time.perf_counter() - t,
                         "init": "initial_guess", **desc}
        except Exception as e:  # noqa: BLE001 - a baseline failing must not sink the bench
            out[name] = {"psnr": None, "error": f"{type(e).__name__}: {str(e)[:200]}", **desc}
    return out


# --------------------------------------------------------------------------------------------
# warm start
# --------------------------------------------------------------------------------------------
def _projection_burnin(traces_map: dict, traces_bp: dict, h: int) -> dict:
    """The band rule on the random-projection traces ``<x, r_k>``; burn-in = max over k (None if
    any never enters)."""
    names = sorted(n for n in traces_map if n.startswith("proj"))
    out = {}
    for init, traces in (("map", traces_map), ("back_projection", traces_bp)):
        its = []
        for name in names:
            pa, pb = traces_map[name][0], traces_bp[name][0]
            lo, hi = np.quantile(np.concatenate([pa[h:], pb[h:]]), [0.05, 0.95])
            its.append(burnin_from_band(traces[name][0], float(lo), float(hi)))
        out[init] = None if (not its or None in its) else max(its)
    return out


def _warm_start(problem, ours: dict, post_bp, info_bp: dict, xb) -> dict:
    """Burn-in from the MAP vs from the initial guess (module docstring)."""
    post_map, info_map, t_map = ours["post"], ours["info"], ours["t_map"]
    a, b = post_map.traces["loglik"][0], post_bp.traces["loglik"][0]
    h = len(a) // 2
    lo, hi = (float(v) for v in np.quantile(np.concatenate([a[h:], b[h:]]), [0.05, 0.95]))
    i_map, i_bp = burnin_from_band(a, lo, hi), burnin_from_band(b, lo, hi)
    width = hi - lo
    return {
        "burnin_iterations_projections": _projection_burnin(post_map.traces, post_bp.traces, h),
        "band": [lo, hi],
        "last_half_median_gap_in_band_widths": float(abs(np.median(a[h:]) - np.median(b[h:])) / width)
        if width > 0 else None,
        "loglik_init": {"map": float(-problem.data_nll(ours["x_map"]).item()),
                        "back_projection": float(-problem.data_nll(xb).item())},
        "burnin_iterations": {"map": i_map, "back_projection": i_bp},
        "burnin_seconds": {
            "map_incl_map_time": (t_map + i_map * info_map["s_per_step"]) if i_map else None,
            "map_sampling_only": (i_map * info_map["s_per_step"]) if i_map else None,
            "back_projection": (i_bp * info_bp["s_per_step"]) if i_bp else None,
        },
        "trace_loglik": {"map": a[:: max(1, len(a) // 200)].tolist(), "back_projection": b[:: max(1, len(b) // 200)].tolist()},
    }


def run_problem(kind: str, problem, den, prior, cfg, seed: int) -> dict:
    """Every method on one problem, the timing of the fast MAPs and (not with ``--map-only``) the
    warm-start comparison."""
    xb = problem.initial_guess()  # every iterative method starts here
    M, ours = _our_methods(problem, prior, cfg, seed, xb)
    M.update(_deepinv_methods(problem, den, cfg, xb))
    out = {"methods": M, "fast_map_timing": _fast_map_timing(problem, den, prior, cfg, xb, seed)}
    if cfg["map_only"]:
        return {**out, "warm_start": {"note": "skipped (--map-only)"}}
    post_bp, info_bp = _skrock_run(problem, prior, xb, cfg, seed=seed + 2)
    ws: dict = {"init_map": ours["info"], "init_back_projection": info_bp}
    if ours["post"] is not None and post_bp is not None:
        ws.update(_warm_start(problem, ours, post_bp, info_bp, xb))
        M["skrock_from_back_projection"] = {"psnr": psnr(post_bp.mmse, problem.x_true), "wall_s": info_bp["wall_s"],
                                            "note": "MMSE with the same burn-in, no MAP (for the warm-start comparison)"}
    return {**out, "warm_start": ws}


# --------------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------------
def _quotient(a, b):
    return (a / b) if a and b else None


def _problem_ratios(r: dict) -> dict:
    M = r["methods"]
    ref = M["ours_map_pnp_sgd"]
    mmse = M["ours_mmse_skrock"].get("psnr")
    ent = {
        "psnr_minus_ours_map_db": {n: (m["psnr"] - ref["psnr"]) if None not in (m.get("psnr"), ref["psnr"]) else None
                                   for n, m in M.items() if n != "ours_map_pnp_sgd"},
        "wall_time_over_ours_map": {n: _quotient(m.get("wall_s"), ref["wall_s"]) for n, m in M.items()
                                    if n not in ("ours_map_pnp_sgd", "back_projection", "initial_guess")},
        "mmse_minus_map_db": (mmse - ref["psnr"]) if None not in (mmse, ref["psnr"]) else None,
    }
    ws = r["warm_start"]
    if "burnin_iterations" in ws:
        bi, bs, bp = ws["burnin_iterations"], ws["burnin_seconds"], ws["burnin_iterations_projections"]
        ent["warm_start"] = {
            "burnin_iterations_bp/map": _quotient(bi["back_projection"], bi["map"]),
            "burnin_iterations_projections_bp/map": _quotient(bp["back_projection"], bp["map"]),
            "burnin_seconds_bp/map_incl_map": _quotient(bs["back_projection"], bs["map_incl_map_time"]),
            "note": "None when a run never entered the band within its budget (see raw)",
        }
    if "ours_map_continuation" in M:
        ent["continuation"] = _continuation_ratios(r)
    if None not in (mmse, ref["psnr"]) and mmse < ref["psnr"] - 1.0:
        ent["sanity"] = (f"SUSPECT POSTERIOR: MMSE {mmse:.2f} dB is > 1 dB below the MAP {ref['psnr']:.2f} dB; the "
                         "chain left the image manifold (denoiser poor at sigma = sqrt(eps), or L underestimated)")
    return ent


def _continuation_ratios(r: dict) -> dict:
    """Continuation MAP vs DPIR (issue target: PSNR >= DPIR's in <= 3x its time) and vs PnP-SGD."""
    M, timing = r["methods"], r.get("fast_map_timing", {})
    c, d, sgd = M["ours_map_continuation"], M.get("deepinv_dpir", {}), M["ours_map_pnp_sgd"]
    diff = (c["psnr"] - d["psnr"]) if None not in (c.get("psnr"), d.get("psnr")) else None
    ratio = timing.get("continuation_over_dpir")
    return {
        "psnr_minus_dpir_db": diff,
        "time_over_dpir_median_interleaved": ratio,
        "denoiser_calls_over_dpir": _quotient(c.get("denoiser_calls"), d.get("max_iter")),
        "target_met_psnr_ge_dpir_time_le_3x": (diff >= 0 and ratio <= 3.0) if None not in (diff, ratio) else None,
        "psnr_minus_pnp_sgd_db": (c["psnr"] - sgd["psnr"]) if None not in (c.get("psnr"), sgd.get("psnr")) else None,
        "denoiser_calls_over_pnp_sgd": _quotient(c.get("denoiser_calls"), sgd.get("denoiser_calls")),
    }


def _notes(den_info: dict, suspect: list[str]) -> str:
    notes = (
        "Measured: PSNR (vs truth, clamped) and single-run wall time of our PnP-SGD MAP (pnp_imaging.map_estimate), "
        "our SK-ROCK MMSE from the MAP (pnp_imaging.sample; time includes the MAP), a deterministic PnP gradient "
        "descent (pnp_sgd with perturbation=0), deepinv DPIR / PnP-HQS (fixed sigma = sqrt(eps)) / PnP-PGD "
        "(sigma = sigma_y) with the SAME denoiser, operator and y, and the back-projection; plus SK-ROCK burn-in "
        "to the pooled last-half [q05, q95] log-likelihood band from the MAP vs from the back-projection. Not "
        "measured: SSIM, UQ/coverage, parameter tuning of the deepinv baselines (one principled setting each, in "
        "raw), repeated timings (single runs: wall-time ratios are indicative only on a shared CPU). PAPER "
        f"NUMBERS: P2's MAP-vs-MMSE results {UNCHECKED} and are deliberately not filled in. "
        f"Denoiser: {den_info.get('name')} (source {den_info.get('source')}, trained={den_info.get('trained')})"
        + ("" if den_info.get("trained") is True else " -- NOT the final weights: PSNRs are provisional") + "."
    )
    if suspect:
        notes += f" SUSPECT POSTERIOR on {suspect}: see ratios[<problem>]['sanity']."
    return notes


def _make_problem(kind: str, x_true, cfg, seed: int):
    if kind == "deblur":
        return C.blur_problem(x_true, seed=seed)
    if kind == "inpainting":
        return C.inpainting_problem(x_true, missing=cfg["missing"], sigma_y=cfg["inpaint_sigma"], seed=seed)
    raise SystemExit(f"--problems: unknown {kind!r}; use deblur, inpainting")


def main(argv: list[str] | None = None) -> dict:
    args, machine, cfg = C.start(build_parser(), argv, settings)
    x_true = C.load_image(args.image, cfg["crop"])
    den, den_info = C.load_denoiser(args.denoiser, args.fallback)
    prior, L_info = C.score_prior(args, den, x_true)
    problems = {}
    t_all = time.perf_counter()
    for kind in cfg["problems"]:
        pb = _make_problem(kind, x_true, cfg, args.seed)
        C.log(f"{NAME}: {kind} ({tuple(x_true.shape[-2:])} image)")
        problems[kind] = {"data_lipschitz": pb.data_lipschitz,
                          "operator_mismatch_vs_deepinv": C.operator_mismatch(pb, C.deepinv_physics(pb)),
                          **run_problem(kind, pb, den, prior, cfg, args.seed)}
    wall = time.perf_counter() - t_all
    ratios = {kind: _problem_ratios(r) for kind, r in problems.items()}
    suspect = [kind for kind, r in ratios.items() if "sanity" in r]
    config = {**cfg, "image": str(args.image), "image_shape": list(x_true.shape), "eps": C.EPS, "alpha": 1.0,
              "lipschitz": L_info, "dtype": "float32", "chains": 1,
              "deblur": "circular uniform 9x9, sigma_y = 1/255",
              "inpainting": f"random mask, missing {cfg['missing']}, sigma_y = {cfg['inpaint_sigma']:.6g}"}
    C.write_result(NAME, args, config=config, denoiser=den_info, raw={"problems": problems, "bench_wall_s": wall},
                   ratios=ratios, notes=_notes(den_info, suspect), machine_start=machine,
                   status="suspect_posterior" if suspect else "ok", extra={"paper": PAPER})
    return {"ratios": ratios, "raw": problems}


if __name__ == "__main__":
    main(sys.argv[1:])
