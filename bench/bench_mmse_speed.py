r"""Issue 5 — wall time to an MMSE estimate as good as a long reference run: our SK-ROCK
(with a PnP-SGD MAP warm start) vs deepinv's ULA, same denoiser, same problem.

Problem: cameraman (``--crop`` centre crop; full 256² by default), circular 9×9 uniform
blur, σ_y = 1/255, ε = (5/255)², α = 1, float32, one chain.

Contenders (each a fresh run; wall time excludes the bench's own evaluation code, which runs
inside callbacks on a paused stopwatch):

* ``ours``: ``pnp_sgd.run_map`` (``auto_params``, from the back-projection) then
  :func:`run_chain` with PnP SK-ROCK (``skrock.make_params``: s = 10, η = 0.05, p = 0.99,
  soft tail, auto δ = p ℓ_s / L) from the MAP, ``n_burnin`` outer steps discarded. The clock
  starts before the MAP, so its cost is included.
* ``ours_projected``: the same with ``projected=True`` (no soft tail; clamp to the box after
  the s stages, deepinv's ``SKRockIterator`` choice). With the soft tail, ``1/λ ≈ 4 L_y``
  dominates ``L = L_y + αL/ε + 1/λ`` (reference §5.3 [CHOICE]), so the projected variant's δ is
  ~5× larger; it targets a slightly different (projected) chain, so its band is still the
  reference's (``--ours-variants``).
* ``deepinv_ula_<variant>``: ``deepinv.sampling.sampling_builder("ULA", ...)`` (projected
  PnP-ULA, clip (-1, 2) as deepinv's legacy ``ULA``), ``deepinv.optim.ScorePrior`` around the
  same denoiser called with the std ``√ε`` (pitfall 4), ``L2(sigma=σ_y)``, ``BlurFFT`` with the
  same kernel, deepinv's defaults otherwise (init Aᵀy, ``burnin_ratio=0.2``, its Welford mean
  that counts X₀, pitfall 1). Step-size variants (pitfall 3):

  - ``auto``: our rule for projected PnP-ULA (reference §2.2), δ = 0.99/(αL/ε + L_y);
  - ``docs``: what deepinv's ULA docstring recommends, "step_size smaller than 1/(L+‖A‖²)",
    read literally with L the denoiser's residual Lipschitz constant: δ = 0.99/(L + ‖A‖²).
    This ignores the 1/σ_y² in the likelihood and the α/ε on the score, so the chain is
    unstable and lives on the box boundary; it gets a smaller budget (``--docs-iters``);
  - ``demo`` (optional): δ = 0.01 σ_y², the value deepinv's ``demo_sampling.py`` uses.

* ``reference``: a long ``ours`` run (different seed) whose running mean at the end is the
  reference MMSE ``x_ref``. Its stability is reported: ``reference.psnr_drift_last_half`` =
  |PSNR(mean at the end) − PSNR(mean after half the kept samples)|; if that exceeds the
  tolerance the reference is too short and ``status`` says so.

**Criterion** (tolerance ``tol`` = 0.05 dB): let ``P_ref = PSNR(x_ref, x_true)``. Each
contender's running mean ``m(t)`` is evaluated every ``eval_every`` kept samples, giving
``P(t) = PSNR(m(t), x_true)`` at wall times ``t_1 < ... < t_n`` (``t_n`` = end of its budget).
Its time to target is the smallest ``t_i`` such that ``|P(t_j) − P_ref| <= tol`` for **every**
``j >= i`` (it enters the band and stays there until its budget ends); ``None`` if
``|P(t_n) − P_ref| > tol``. PSNRs clamp the estimate to [0, 1], peak 1. Also recorded:
``PSNR(m(t), x_ref)`` curves, and the number of denoiser evaluations at the hit (MAP
iterations + s × outer steps for ours; iterations for ULA), whose ratio does not depend on CPU
contention.

Secondary criterion (``secondary_vs_reference``; smoother, because the truth-based PSNR of a
running mean wobbles by ~0.1 dB with the slow modes even when it is close to ``x_ref``): the
first time from which ``PSNR(m(t), x_ref) >= T`` holds until the end, for T in
``vs_ref_db`` (30, 35, 40 dB). Caveat: ``x_ref`` comes from the soft SK-ROCK chain, so chains
with a different discretisation bias (ULA, projected SK-ROCK) plateau below some T.

Cost: about ``map_steps·(1 + #ours variants) + s·(ref_steps + #ours variants·ours_steps) +
Σ deepinv budgets`` denoiser evaluations (logged at start): ~87k for the default (full 256²
image; 1.5–3 h at one thread on a 2-core EPYC), ~87k on a 32² crop for ``--quick`` (~5 min).
``--crop 128`` is a middle ground.

Ratios: ``deepinv_ula_<variant>_time / ours[_projected]_time`` (target ≥ 5, issue 5) and the same in
denoiser evaluations. If a deepinv variant never reaches the band, ``ratio_lower_bound`` =
its whole budget time / ours_time is reported instead (valid only if its budget exceeded
ours' time).
"""
from __future__ import annotations

import math
import sys
import time

import torch

from bench import _common as C

NAME = "bench_mmse_speed"
TARGET = 5.0


class _Abort(Exception):
    pass


def settings(args) -> dict:
    if args.smoke:
        d = dict(crop=16, stages=3, map_steps=5, ref_steps=12, ref_burnin=2, ours_steps=8, ours_burnin=2,
                 ula_iters=40, docs_iters=10, demo_iters=10, ula_eval_every=2, ours_eval_every=1)
    elif args.quick:
        d = dict(crop=32, stages=10, map_steps=100, ref_steps=4000, ref_burnin=400, ours_steps=800, ours_burnin=40,
                 ula_iters=30000, docs_iters=300, demo_iters=30000, ula_eval_every=50, ours_eval_every=2)
    else:
        d = dict(crop=None, stages=10, map_steps=300, ref_steps=4000, ref_burnin=400, ours_steps=800,
                 ours_burnin=40, ula_iters=30000, docs_iters=500, demo_iters=30000, ula_eval_every=50,
                 ours_eval_every=2)
    d["tol_db"] = 0.05
    d["vs_ref_db"] = [30.0, 35.0, 40.0]
    d["deepinv_burnin_ratio"] = 0.2
    for k in list(d):
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    if getattr(args, "full_image", False):
        d["crop"] = None
    d["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    d["ours_variants"] = [v.strip() for v in args.ours_variants.split(",") if v.strip()]
    return d


def build_parser():
    ap = C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0])
    ap.add_argument("--crop", type=int, default=None, help="centre crop size (default: full 256² image; quick 32)")
    ap.add_argument("--full-image", action="store_true", help="no crop even with --quick")
    for k, h in (("map_steps", "PnP-SGD iterations for the warm start"),
                 ("ref_steps", "reference SK-ROCK outer steps"), ("ref_burnin", "reference burn-in (outer steps)"),
                 ("ours_steps", "our SK-ROCK budget (outer steps)"), ("ours_burnin", "our burn-in (outer steps)"),
                 ("ula_iters", "deepinv ULA budget (iterations), 'auto' and 'demo' variants"),
                 ("docs_iters", "budget of the 'docs' variant"), ("demo_iters", "budget of the 'demo' variant"),
                 ("ula_eval_every", "evaluate the ULA running mean every N kept iterations"),
                 ("ours_eval_every", "evaluate our running mean every N kept outer steps"),
                 ("stages", "SK-ROCK stages s")):
        ap.add_argument("--" + k.replace("_", "-"), dest=k, type=int, default=None, help=h)
    ap.add_argument("--tol-db", dest="tol_db", type=float, default=None, help="band half-width in dB (0.05)")
    ap.add_argument("--variants", default="auto,docs", help="deepinv ULA step variants: auto,docs,demo")
    ap.add_argument("--ours-variants", dest="ours_variants", default="soft,projected",
                    help="our SK-ROCK variants: soft (project default: soft tail, lambda rule) and/or projected "
                         "(clamp after the stages, no tail term: L = L_y + alpha*L/eps, ~5x larger step)")
    return ap


# --------------------------------------------------------------------------------------------
def time_to_target(evals: list[dict], p_ref: float, tol: float, key: str = "psnr_truth") -> dict:
    """Smallest eval time from which ``|P - p_ref| <= tol`` holds until the end (module docstring)."""
    hit = None
    for e in reversed(evals):
        if e[key] is not None and abs(e[key] - p_ref) <= tol:
            hit = e
        else:
            break
    if hit is None:
        return {"reached": False, "t_s": None, "evals": None, "iteration": None,
                "end_t_s": evals[-1]["t"] if evals else None,
                "end_gap_db": (evals[-1][key] - p_ref) if evals else None}
    return {"reached": True, "t_s": hit["t"], "evals": hit["evals"], "iteration": hit["iteration"],
            "stayed_for_s": evals[-1]["t"] - hit["t"], "end_t_s": evals[-1]["t"],
            "end_gap_db": evals[-1][key] - p_ref}


def time_to_threshold(evals: list[dict], thr: float, key: str = "psnr_vs_ref") -> dict:
    """Smallest eval time from which ``P >= thr`` holds until the end of the run."""
    hit = None
    for e in reversed(evals):
        if e[key] is not None and e[key] >= thr:
            hit = e
        else:
            break
    if hit is None:
        return {"reached": False, "t_s": None, "evals": None, "end_value": evals[-1][key] if evals else None}
    return {"reached": True, "t_s": hit["t"], "evals": hit["evals"], "end_value": evals[-1][key]}


def _thin_curve(evals: list[dict], n: int = 300) -> list[dict]:
    if len(evals) <= n:
        return evals
    step = len(evals) / n
    idx = sorted({int(i * step) for i in range(n)} | {len(evals) - 1})
    return [evals[i] for i in idx]


def run_ours(problem, prior, cfg, *, n_steps, n_burnin, seed, x_ref=None, eval_every=1, label="ours",
             projected=False):
    """MAP (PnP-SGD) + SK-ROCK; returns evals over wall time and the final running mean."""
    from pnp_imaging.samplers import pnp_sgd, skrock
    from pnp_imaging.samplers.base import DivergenceError, run_chain
    from pnp_imaging.stats import PosteriorStats

    gen = torch.Generator().manual_seed(seed)
    x_true = problem.x_true
    evals: list[dict] = []
    sw = C.Stopwatch()
    params = pnp_sgd.auto_params(problem, prior)
    mres = pnp_sgd.run_map(problem, prior, problem.back_projection(), n_steps=cfg["map_steps"], params=params,
                           generator=gen)
    t_map = sw.elapsed()
    map_info = {"n_iter": mres.n_iter, "stop_reason": mres.stop_reason, "wall_s": t_map,
                "psnr_truth": C.psnr(mres.x, x_true)}
    kernel = skrock.kernel(problem, prior, skrock.make_params(problem, prior, n_stages=cfg["stages"],
                                                              projected=projected))
    s = kernel.params.n_stages
    x0 = mres.x if mres.stop_reason != "divergence" else problem.back_projection()
    state = kernel.init(x0.reshape(1, *x0.shape[1:]))
    stats = PosteriorStats(tuple(state.x.shape))
    first_half = {}
    n_kept_total = n_steps - n_burnin

    def on_sample(k, st):
        sw.pause()
        n = k + 1
        if n % eval_every == 0 or n == n_kept_total or n == n_kept_total // 2:
            m = stats.mmse().float()
            e = {"t": sw.elapsed(), "iteration": n_burnin + n, "n_kept": n,
                 "evals": mres.n_iter + s * (n_burnin + n), "psnr_truth": C.psnr(m, x_true),
                 "psnr_vs_ref": C.psnr(m, x_ref) if x_ref is not None else None}
            evals.append(e)
            if n == n_kept_total // 2:
                first_half["mean"] = m.clone()
        sw.resume()

    status = "completed"
    try:
        res = run_chain(kernel, state, n_steps=n_steps, n_burnin=n_burnin, thin=1, generator=gen, stats=stats,
                        on_sample=on_sample)
        timings = res.timings
    except DivergenceError as e:
        status, timings = f"diverged: {str(e).splitlines()[0][:200]}", {}
    total = sw.elapsed()
    mean = stats.mmse().float() if stats.count else None
    return {
        "label": label, "status": status, "map": map_info, "skrock_step": kernel.params.step_size,
        "skrock_rule": kernel.params.rule, "projected": projected,
        "n_stages": s, "n_steps": n_steps, "n_burnin": n_burnin, "wall_s": total,
        "sampling_s_per_step": timings.get("s_per_step"), "evals": evals,
    }, mean, first_half.get("mean")


def run_deepinv_ula(problem, den, physics, *, step, n_iter, burnin_ratio, seed, x_ref, eval_every, label):
    import deepinv as dinv

    x_true = problem.x_true
    evals: list[dict] = []
    sw_box: dict = {}
    sigma_den = math.sqrt(C.EPS)

    def callback(X, statistics=None, iter=None, **kw):  # noqa: A002 - deepinv's keyword
        sw = sw_box["sw"]
        sw.pause()
        x = X["x"]
        if not bool(torch.isfinite(x).all()):
            sw.resume()
            raise _Abort(f"non-finite state at iteration {iter}")
        kept = statistics[0].k  # Welford count BEFORE this iteration's update (X0 included, pitfall 1)
        if (kept % eval_every == 0) or iter == n_iter - 1:
            m = statistics[0].mean()
            evals.append({"t": sw.elapsed(), "iteration": iter, "n_kept": kept, "evals": iter,
                          "psnr_truth": C.psnr(m, x_true), "psnr_vs_ref": C.psnr(m, x_ref)})
        sw.resume()

    sampler = dinv.sampling.sampling_builder(
        "ULA", data_fidelity=dinv.optim.L2(sigma=C.SIGMA_Y), prior=dinv.optim.ScorePrior(denoiser=den),
        params_algo={"step_size": step, "alpha": 1.0, "sigma": sigma_den}, max_iter=n_iter,
        burnin_ratio=burnin_ratio, thinning=1, history_size=False, clip=(-1.0, 2.0), callback=callback)
    torch.manual_seed(seed)  # deepinv draws its noise from the global generator
    status = "completed"
    sw_box["sw"] = C.Stopwatch()
    mean = None
    try:
        mean, _ = sampler.sample(problem.y, physics)
    except _Abort as e:
        status = f"aborted: {e}"
    total = sw_box["sw"].elapsed()
    return {"label": label, "status": status, "step_size": step, "n_iter": n_iter, "burnin_ratio": burnin_ratio,
            "wall_s": total, "s_per_iteration": total / n_iter if status == "completed" else None,
            "final_psnr_truth": C.psnr(mean, x_true) if mean is not None else None, "evals": evals}


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    C.setup(args)
    machine = C.machine_info()
    cfg = settings(args)

    from pnp_imaging.priors import ScorePrior
    from pnp_imaging.samplers import ula

    x_true = C.load_image(args.image, cfg["crop"])
    problem = C.blur_problem(x_true, seed=args.seed)
    den, den_info = C.load_denoiser(args.denoiser, args.fallback, args.denoiser_device)
    L, L_info = C.resolve_lipschitz(args.lipschitz, den, x_true, math.sqrt(C.EPS), seed=args.seed)
    prior = ScorePrior(den, eps=C.EPS, lipschitz=L)
    physics = C.deepinv_physics(problem)
    op_err = C.operator_mismatch(problem, physics)
    norm_a2 = problem.operator.norm_squared(problem.x_shape)
    steps = {
        "auto": ula.auto_rule(prior.lipschitz, problem.data_lipschitz, projected=True)[0],
        "docs": 0.99 / (L + norm_a2),
        "demo": 0.01 * C.SIGMA_Y ** 2,
    }
    budgets = {"auto": cfg["ula_iters"], "docs": cfg["docs_iters"], "demo": cfg["demo_iters"]}
    tol = cfg["tol_db"]

    n_evals = (cfg["map_steps"] * (1 + len(cfg["ours_variants"])) + cfg["stages"] * cfg["ref_steps"]
               + len(cfg["ours_variants"]) * cfg["stages"] * cfg["ours_steps"] + sum(budgets[v] for v in cfg["variants"]))
    C.log(f"{NAME}: about {n_evals} denoiser evaluations in total on a {tuple(x_true.shape[-2:])} image")
    t_all = time.perf_counter()
    C.log(f"{NAME}: reference run ({cfg['ref_steps']} SK-ROCK steps x {cfg['stages']} stages, "
          f"{tuple(x_true.shape[-2:])} image)")
    ref, x_ref, x_ref_half = run_ours(problem, prior, cfg, n_steps=cfg["ref_steps"], n_burnin=cfg["ref_burnin"],
                                      seed=args.seed + 1000, label="reference")
    status = "ok"
    notes_extra = []
    if x_ref is None:
        raise SystemExit(f"{NAME}: the reference run produced no samples ({ref['status']})")
    p_ref = C.psnr(x_ref, x_true)
    drift = abs(p_ref - C.psnr(x_ref_half, x_true)) if x_ref_half is not None else None
    ref_summary = {k: v for k, v in ref.items() if k != "evals"}
    ref_summary.update(psnr_truth=p_ref, psnr_drift_last_half=drift, curve=_thin_curve(ref["evals"], 100))
    sanity = {"psnr_reference_mmse": p_ref, "psnr_map": ref["map"]["psnr_truth"],
              "psnr_back_projection": C.psnr(problem.back_projection(), x_true)}
    if p_ref < sanity["psnr_map"] - 1.0:
        status = "suspect_posterior"
        notes_extra.append(f"SUSPECT POSTERIOR: the reference MMSE ({p_ref:.2f} dB) is more than 1 dB worse than the "
                           f"MAP ({sanity['psnr_map']:.2f} dB): the chain left the image manifold (denoiser poor at "
                           "sigma = sqrt(eps), or L underestimated); the ratios compare samplers of a meaningless "
                           "posterior.")
    if drift is None or drift > tol:
        status = "reference_not_converged"
        notes_extra.append(f"REFERENCE NOT CONVERGED: its PSNR moved {drift} dB over its last half (> tol {tol}); "
                           "lengthen --ref-steps before trusting the ratios.")

    contenders = {}
    ours_names = []
    for ov in cfg["ours_variants"]:
        if ov not in ("soft", "projected"):
            raise SystemExit(f"--ours-variants: unknown {ov!r}; use soft, projected")
        oname = "ours" if ov == "soft" else "ours_projected"
        C.log(f"{NAME}: {oname} ({cfg['map_steps']} MAP + {cfg['ours_steps']} SK-ROCK steps)")
        r, _, _ = run_ours(problem, prior, cfg, n_steps=cfg["ours_steps"], n_burnin=cfg["ours_burnin"],
                           seed=args.seed, x_ref=x_ref, eval_every=cfg["ours_eval_every"], label=oname,
                           projected=(ov == "projected"))
        r["target"] = time_to_target(r["evals"], p_ref, tol)
        r["vs_ref"] = {str(t): time_to_threshold(r["evals"], t) for t in cfg["vs_ref_db"]}
        contenders[oname] = r
        ours_names.append(oname)
    for v in cfg["variants"]:
        if v not in steps:
            raise SystemExit(f"--variants: unknown {v!r}; use auto, docs, demo")
        C.log(f"{NAME}: deepinv ULA '{v}' (step {steps[v]:.3g}, {budgets[v]} iterations)")
        r = run_deepinv_ula(problem, den, physics, step=steps[v], n_iter=budgets[v],
                            burnin_ratio=cfg["deepinv_burnin_ratio"], seed=args.seed + 2, x_ref=x_ref,
                            eval_every=cfg["ula_eval_every"], label=f"deepinv_ula_{v}")
        r["target"] = time_to_target(r["evals"], p_ref, tol)
        r["vs_ref"] = {str(t): time_to_threshold(r["evals"], t) for t in cfg["vs_ref_db"]}
        contenders[f"deepinv_ula_{v}"] = r
    wall = time.perf_counter() - t_all

    ratios: dict = {}
    for oname in ours_names:
        ot = contenders[oname]["target"]
        for name, r in contenders.items():
            if name in ours_names:
                continue
            t = r["target"]
            entry: dict = {"deepinv_reached": t["reached"], "ours_reached": ot["reached"]}
            if ot["reached"] and t["reached"]:
                entry["time_ratio"] = t["t_s"] / ot["t_s"]
                entry["evals_ratio"] = t["evals"] / ot["evals"]
            elif ot["reached"]:
                entry["time_ratio_lower_bound"] = r["wall_s"] / ot["t_s"]
                entry["evals_ratio_lower_bound"] = r["n_iter"] / ot["evals"]
                entry["note"] = "deepinv never stayed in the band within its budget: ratio >= lower bound"
            else:
                entry["note"] = f"{oname} did not reach the band within its budget: no ratio"
            entry["target"] = f">= {TARGET}"
            if "time_ratio" in entry:
                entry["met"] = bool(entry["time_ratio"] >= TARGET)
            elif entry.get("time_ratio_lower_bound") is not None and entry["time_ratio_lower_bound"] >= TARGET:
                entry["met"] = True
            else:
                entry["met"] = None  # undetermined: a lower bound below the target, or no hit for ours
            secondary = {}
            for thr in cfg["vs_ref_db"]:
                a, b = r["vs_ref"][str(thr)], contenders[oname]["vs_ref"][str(thr)]
                e2: dict = {"deepinv_reached": a["reached"], "ours_reached": b["reached"]}
                if a["reached"] and b["reached"]:
                    e2.update(time_ratio=a["t_s"] / b["t_s"], evals_ratio=a["evals"] / b["evals"])
                elif b["reached"]:
                    e2.update(time_ratio_lower_bound=r["wall_s"] / b["t_s"],
                              evals_ratio_lower_bound=r["n_iter"] / b["evals"])
                secondary[f"psnr_vs_ref>={thr}dB"] = e2
            entry["secondary_vs_reference"] = secondary
            ratios[f"{name}/{oname}"] = entry
    for r in contenders.values():
        r["curve"] = _thin_curve(r.pop("evals"))

    config = {
        **cfg, "image": str(args.image), "image_shape": list(x_true.shape), "operator": "blur uniform 9x9 circular",
        "sigma_y": C.SIGMA_Y, "eps": C.EPS, "alpha": 1.0, "lipschitz": L_info, "chains": 1, "dtype": "float32",
        "deepinv_steps": {v: steps[v] for v in cfg["variants"]},
        "deepinv_step_rules": {"auto": "0.99/(alpha*L/eps + L_y) (reference §2.2, projected)",
                               "docs": "0.99/(L + ||A||^2) (deepinv ULA docstring, literal)",
                               "demo": "0.01*sigma_y^2 (deepinv examples/sampling/demo_sampling.py)"},
        "norm_A_squared": norm_a2, "data_lipschitz": problem.data_lipschitz,
        "operator_mismatch_vs_deepinv": op_err,
    }
    notes = (
        "Measured: wall time (bench evaluation excluded via a paused stopwatch) until the running-mean PSNR vs "
        f"truth enters and stays in a +/-{tol} dB band around the reference MMSE's PSNR (criterion in the module "
        "docstring), for our MAP(PnP-SGD)+SK-ROCK pipeline (MAP time included) and deepinv's ULA "
        "(sampling_builder, its own loop, Welford mean, defaults) with the same denoiser, problem and y; also "
        "the denoiser-evaluation counts at the hit (contention-free ratio). Not measured: multi-chain runs, "
        "GPU, PSNR-vs-reference-based criteria (curves recorded only), deepinv's SKRock, variance/UQ quality. "
        f"Denoiser: {den_info.get('name')} (source {den_info.get('source')}, trained={den_info.get('trained')})"
        + ("" if den_info.get("trained") is True else " -- NOT the final weights: the PSNR values and hence the "
           "ratios are provisional (the posterior changes with the denoiser)")
        + ". Timings on a shared CPU are noisy; prefer evals_ratio. " + " ".join(notes_extra)
    )
    raw = {"reference": ref_summary, "contenders": contenders, "p_ref": p_ref, "sanity": sanity, "bench_wall_s": wall}
    C.write_result(NAME, args, config=config, denoiser=den_info, raw=raw, ratios=ratios, notes=notes,
                   status=status, machine_start=machine)
    return {"ratios": ratios, "raw": raw}


if __name__ == "__main__":
    main(sys.argv[1:])
