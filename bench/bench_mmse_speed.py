r"""Issue 5 — wall time to an MMSE estimate as good as a long reference run: our SK-ROCK
(with a PnP-SGD MAP warm start) vs deepinv's ULA, same denoiser, same problem.

Problem: cameraman (``--crop`` centre crop; full 256² by default), circular 9×9 uniform
blur, σ_y = 1/255, ε = (5/255)², α = 1, float32, one chain; the denoiser of ``--denoiser``
(default: the library's prior, ``denoisers_zoo.default_prior(1)``).

Contenders (each a fresh run; wall time excludes the bench's own evaluation code, which runs
inside callbacks on a paused stopwatch):

* ``ours``: ``pnp_imaging.map_estimate`` (PnP-SGD from the initial guess, = Aᵀy here) then
  ``pnp_imaging.sample`` with the kernel ``build_kernel("skrock", problem, prior, stages=s)``
  (s = 10, η = 0.05, p = 0.99, soft tail, auto δ = p ℓ_s / L) from the MAP, ``n_burnin`` outer
  steps discarded. The clock starts before the MAP, so its cost is included.
* ``ours_projected``: the same with ``projected=True`` (no soft tail; clamp to the box after
  the s stages, deepinv's ``SKRockIterator`` choice). With the soft tail, ``1/λ ≈ 4 L_y``
  dominates ``L = L_y + αL/ε + 1/λ`` (docs/algorithms.md §skrock-step, our choice), so the
  projected variant's δ is ~5× larger; it targets a slightly different (projected) chain, so its
  band is still the reference's (``--ours-variants``).
* ``deepinv_ula_<variant>``: ``deepinv.sampling.sampling_builder("ULA", ...)`` (projected
  PnP-ULA, clip (-1, 2) as deepinv's legacy ``ULA``), ``deepinv.optim.ScorePrior`` around the
  same denoiser called with the std ``√ε`` (docs/algorithms.md §score-prior), ``L2(sigma=σ_y)``,
  ``BlurFFT`` with the same kernel, deepinv's defaults otherwise (init Aᵀy, ``burnin_ratio=0.2``,
  its Welford mean that counts X₀, docs/algorithms.md §kept-iterations). Step-size variants
  (docs/algorithms.md §skrock-step):

  - ``auto``: our rule for projected PnP-ULA (docs/algorithms.md §pnp-ula-step),
    δ = 0.99/(αL/ε + L_y);
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
``P(t) = PSNR(m(t), x_true)`` (``pnp_imaging.metrics.psnr``) at wall times ``t_1 < ... < t_n``
(``t_n`` = end of its budget).
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
from types import SimpleNamespace

import torch

from bench import _common as C
from pnp_imaging.metrics import psnr

NAME = "bench_mmse_speed"
TARGET = 5.0
OURS_VARIANTS = {"soft": "ours", "projected": "ours_projected"}
RULES = {"auto": "0.99/(alpha*L/eps + L_y) (docs/algorithms.md §pnp-ula-step, projected)",
         "docs": "0.99/(L + ||A||^2) (deepinv ULA docstring, literal)",
         "demo": "0.01*sigma_y^2 (deepinv examples/sampling/demo_sampling.py)"}


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
    d.update(tol_db=0.05, vs_ref_db=[30.0, 35.0, 40.0], deepinv_burnin_ratio=0.2)
    d = C.apply_overrides(d, args)
    d["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    d["ours_variants"] = [v.strip() for v in args.ours_variants.split(",") if v.strip()]
    for v in d["ours_variants"]:
        if v not in OURS_VARIANTS:
            raise SystemExit(f"--ours-variants: unknown {v!r}; use soft, projected")
    for v in d["variants"]:
        if v not in RULES:
            raise SystemExit(f"--variants: unknown {v!r}; use auto, docs, demo")
    return d


def build_parser():
    ap = C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0])
    ap.add_argument("--crop", type=int, default=None, help="centre crop size (default: full 256² image; quick 32)")
    ap.add_argument("--full-image", action="store_true", help="no crop even with --quick")
    C.add_int_options(ap, {
        "map_steps": "PnP-SGD iterations for the warm start", "ref_steps": "reference SK-ROCK outer steps",
        "ref_burnin": "reference burn-in (outer steps)", "ours_steps": "our SK-ROCK budget (outer steps)",
        "ours_burnin": "our burn-in (outer steps)",
        "ula_iters": "deepinv ULA budget (iterations), 'auto' and 'demo' variants",
        "docs_iters": "budget of the 'docs' variant", "demo_iters": "budget of the 'demo' variant",
        "ula_eval_every": "evaluate the ULA running mean every N kept iterations",
        "ours_eval_every": "evaluate our running mean every N kept outer steps", "stages": "SK-ROCK stages s"})
    ap.add_argument("--tol-db", dest="tol_db", type=float, default=None, help="band half-width in dB (0.05)")
    ap.add_argument("--variants", default="auto,docs", help="deepinv ULA step variants: auto,docs,demo")
    ap.add_argument("--ours-variants", dest="ours_variants", default="soft,projected",
                    help="our SK-ROCK variants: soft (project default: soft tail, lambda rule) and/or projected "
                         "(clamp after the stages, no tail term: L = L_y + alpha*L/eps, ~5x larger step)")
    return ap


# --------------------------------------------------------------------------------------------
def time_to_target(evals: list[dict], p_ref: float, tol: float, key: str = "psnr_truth") -> dict:
    """Smallest eval time from which ``|P - p_ref| <= tol`` holds until the end (module docstring)."""
    hit = C.settled(evals, lambda e: e[key] is not None and abs(e[key] - p_ref) <= tol)
    if hit is None:
        return {"reached": False, "t_s": None, "evals": None, "iteration": None,
                "end_t_s": evals[-1]["t"] if evals else None,
                "end_gap_db": (evals[-1][key] - p_ref) if evals else None}
    return {"reached": True, "t_s": hit["t"], "evals": hit["evals"], "iteration": hit["iteration"],
            "stayed_for_s": evals[-1]["t"] - hit["t"], "end_t_s": evals[-1]["t"],
            "end_gap_db": evals[-1][key] - p_ref}


def time_to_threshold(evals: list[dict], thr: float, key: str = "psnr_vs_ref") -> dict:
    """Smallest eval time from which ``P >= thr`` holds until the end of the run."""
    hit = C.settled(evals, lambda e: e[key] is not None and e[key] >= thr)
    if hit is None:
        return {"reached": False, "t_s": None, "evals": None, "end_value": evals[-1][key] if evals else None}
    return {"reached": True, "t_s": hit["t"], "evals": hit["evals"], "end_value": evals[-1][key]}


def _point(sw, m: torch.Tensor, x_true, x_ref, **fields) -> dict:
    """One evaluation of a running mean ``m`` (called with the stopwatch paused)."""
    return {"t": sw.elapsed(), **fields, "psnr_truth": psnr(m, x_true),
            "psnr_vs_ref": psnr(m, x_ref) if x_ref is not None else None}


class _RunningMean:
    """Mean of the kept states, float64 (the bench's own copy, updated on a paused clock)."""

    def __init__(self):
        self.total, self.n = None, 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        self.total = x.clone() if self.total is None else self.total.add_(x)
        self.n += 1

    def value(self) -> torch.Tensor | None:
        return self.total / self.n if self.n else None


def _warm_start(problem, prior, cfg, generator) -> tuple[torch.Tensor, dict, int]:
    """``pnp_imaging.map_estimate`` from the initial guess; ``(start of the chain, info, n_iter)``
    (the initial guess itself when PnP-SGD diverged)."""
    import pnp_imaging

    try:
        res = pnp_imaging.map_estimate(problem, prior, generator=generator, n_steps=cfg["map_steps"])
    except ValueError as e:
        return problem.initial_guess(), {"stop_reason": "divergence", "error": str(e)[:200]}, cfg["map_steps"]
    return res.x, {"n_iter": res.n_iter, "stop_reason": res.stop_reason, "psnr_truth": psnr(res.x, problem.x_true)}, \
        res.n_iter


def run_ours(problem, prior, cfg, *, n_steps, n_burnin, seed, x_ref=None, eval_every=1, label="ours",
             projected=False):
    """MAP (``map_estimate``) + SK-ROCK (``sample``); returns the run's record (evals over wall
    time), the final running mean and the mean after half the kept samples."""
    import pnp_imaging
    from pnp_imaging.samplers import DivergenceError, build_kernel

    gen = torch.Generator().manual_seed(seed)
    sw = C.Stopwatch()
    x0, map_info, map_evals = _warm_start(problem, prior, cfg, gen)
    map_info["wall_s"] = sw.elapsed()
    kernel = build_kernel("skrock", problem, prior, stages=cfg["stages"], projected=projected)
    s, n_kept, evals, mean, half = kernel.params.n_stages, n_steps - n_burnin, [], _RunningMean(), {}

    def on_sample(k, state):
        sw.pause()
        mean.add(state.x)
        n = k + 1
        if n % eval_every == 0 or n in (n_kept, n_kept // 2):
            m = mean.value()
            evals.append(_point(sw, m, problem.x_true, x_ref, iteration=n_burnin + n, n_kept=n,
                                evals=map_evals + s * (n_burnin + n)))
            if n == n_kept // 2:
                half["mean"] = m.clone()
        sw.resume()

    status, timings = "completed", {}
    try:
        post = pnp_imaging.sample(problem, prior, kernel, generator=gen, n_steps=n_steps, n_burnin=n_burnin,
                                  chains=1, x0=x0, on_sample=on_sample)
        timings = post.summary["timings"]
    except DivergenceError as e:
        status = f"diverged: {str(e).splitlines()[0][:200]}"
    record = {"label": label, "status": status, "map": map_info, "skrock_step": kernel.params.step_size,
              "skrock_rule": kernel.params.rule, "projected": projected, "n_stages": s, "n_steps": n_steps,
              "n_burnin": n_burnin, "wall_s": sw.elapsed(), "sampling_s_per_step": timings.get("s_per_step"),
              "evals": evals}
    return record, mean.value(), half.get("mean")


def deepinv_ula(den, *, step: float, n_iter: int, burnin_ratio: float, callback, clip=(-1.0, 2.0)):
    """deepinv's ULA (``sampling_builder("ULA", ...)``, projected onto ``clip``, default (-1, 2) as
    its legacy ``ULA``) on the project's posterior: ``L2(sigma=σ_y)``, ``ScorePrior`` around ``den`` called
    with the std ``√ε`` (docs/algorithms.md §score-prior), α = 1, thinning 1, no history."""
    import deepinv as dinv

    return dinv.sampling.sampling_builder(
        "ULA", data_fidelity=dinv.optim.L2(sigma=C.SIGMA_Y), prior=dinv.optim.ScorePrior(denoiser=den),
        params_algo={"step_size": step, "alpha": 1.0, "sigma": math.sqrt(C.EPS)}, max_iter=n_iter,
        burnin_ratio=burnin_ratio, thinning=1, history_size=False, clip=clip, callback=callback)


def run_deepinv_ula(problem, den, physics, *, step, n_iter, burnin_ratio, seed, x_ref, eval_every, label):
    evals: list[dict] = []
    sw = None  # started just before sampling (below); the callback sees the new one

    def callback(X, statistics=None, iter=None, **kw):  # noqa: A002 - deepinv's keyword
        sw.pause()
        if not bool(torch.isfinite(X["x"]).all()):
            sw.resume()
            raise _Abort(f"non-finite state at iteration {iter}")
        kept = statistics[0].k  # Welford count BEFORE this iteration's update (X0 included, §kept-iterations)
        if (kept % eval_every == 0) or iter == n_iter - 1:
            evals.append(_point(sw, statistics[0].mean(), problem.x_true, x_ref, iteration=iter, n_kept=kept,
                                evals=iter))
        sw.resume()

    sampler = deepinv_ula(den, step=step, n_iter=n_iter, burnin_ratio=burnin_ratio, callback=callback)
    torch.manual_seed(seed)  # deepinv draws its noise from the global generator
    status, mean = "completed", None
    sw = C.Stopwatch()
    try:
        mean, _ = sampler.sample(problem.y, physics)
    except _Abort as e:
        status = f"aborted: {e}"
    total = sw.elapsed()
    return {"label": label, "status": status, "step_size": step, "n_iter": n_iter, "burnin_ratio": burnin_ratio,
            "wall_s": total, "s_per_iteration": total / n_iter if status == "completed" else None,
            "final_psnr_truth": psnr(mean, problem.x_true) if mean is not None else None, "evals": evals}


# --------------------------------------------------------------------------------------------
# the steps of main
# --------------------------------------------------------------------------------------------
def _setup(args, cfg) -> SimpleNamespace:
    """Image, problem, denoiser, prior, deepinv's physics and the ULA step variants."""
    from pnp_imaging.samplers import ula

    x_true = C.load_image(args.image, cfg["crop"])
    problem = C.blur_problem(x_true, seed=args.seed)
    den, den_info = C.load_denoiser(args.denoiser, args.fallback, args.denoiser_device)
    prior, L_info = C.score_prior(args, den, x_true)
    norm_a2 = problem.operator.norm_squared(problem.x_shape)
    steps = {"auto": ula.auto_rule(prior.lipschitz, problem.data_lipschitz, projected=True)[0],
             "docs": 0.99 / (L_info["value"] + norm_a2), "demo": 0.01 * C.SIGMA_Y ** 2}
    budgets = {"auto": cfg["ula_iters"], "docs": cfg["docs_iters"], "demo": cfg["demo_iters"]}
    n_evals = (cfg["map_steps"] * (1 + len(cfg["ours_variants"])) + cfg["stages"] * cfg["ref_steps"]
               + len(cfg["ours_variants"]) * cfg["stages"] * cfg["ours_steps"] + sum(budgets[v] for v in cfg["variants"]))
    C.log(f"{NAME}: about {n_evals} denoiser evaluations in total on a {tuple(x_true.shape[-2:])} image")
    return SimpleNamespace(x_true=x_true, problem=problem, den=den, den_info=den_info, prior=prior, L_info=L_info,
                           physics=C.deepinv_physics(problem), norm_a2=norm_a2, steps=steps, budgets=budgets)


def _reference(env, cfg, seed: int) -> tuple[dict, torch.Tensor, list[str]]:
    """The long run whose final mean is ``x_ref``; its summary (sanity, drift) and the warnings
    that set ``status``."""
    C.log(f"{NAME}: reference run ({cfg['ref_steps']} SK-ROCK steps x {cfg['stages']} stages)")
    ref, x_ref, x_half = run_ours(env.problem, env.prior, cfg, n_steps=cfg["ref_steps"], n_burnin=cfg["ref_burnin"],
                                  seed=seed + 1000, label="reference")
    if x_ref is None:
        raise SystemExit(f"{NAME}: the reference run produced no samples ({ref['status']})")
    x_true, tol = env.x_true, cfg["tol_db"]
    p_ref = psnr(x_ref, x_true)
    drift = abs(p_ref - psnr(x_half, x_true)) if x_half is not None else None
    summary = {k: v for k, v in ref.items() if k != "evals"}
    summary.update(psnr_truth=p_ref, psnr_drift_last_half=drift, curve=C.thin_curve(ref["evals"], 100))
    summary["sanity"] = {"psnr_reference_mmse": p_ref, "psnr_map": ref["map"].get("psnr_truth"),
                         "psnr_back_projection": psnr(env.problem.back_projection(), x_true)}
    warnings = []
    p_map = summary["sanity"]["psnr_map"]
    if p_map is not None and p_ref < p_map - 1.0:
        warnings.append(("suspect_posterior", f"SUSPECT POSTERIOR: the reference MMSE ({p_ref:.2f} dB) is more than "
                         f"1 dB worse than the MAP ({p_map:.2f} dB): the chain left the image manifold (denoiser poor "
                         "at sigma = sqrt(eps), or L underestimated); the ratios compare samplers of a meaningless "
                         "posterior."))
    if drift is None or drift > tol:
        warnings.append(("reference_not_converged", f"REFERENCE NOT CONVERGED: its PSNR moved {drift} dB over its "
                         f"last half (> tol {tol}); lengthen --ref-steps before trusting the ratios."))
    return summary, x_ref, warnings


def _contenders(env, cfg, seed: int, x_ref, p_ref: float) -> dict:
    """Our variants, then deepinv's ULA variants, each with its hit times."""
    out = {}
    for ov in cfg["ours_variants"]:
        name = OURS_VARIANTS[ov]
        C.log(f"{NAME}: {name} ({cfg['map_steps']} MAP + {cfg['ours_steps']} SK-ROCK steps)")
        out[name] = run_ours(env.problem, env.prior, cfg, n_steps=cfg["ours_steps"], n_burnin=cfg["ours_burnin"],
                             seed=seed, x_ref=x_ref, eval_every=cfg["ours_eval_every"], label=name,
                             projected=(ov == "projected"))[0]
    for v in cfg["variants"]:
        C.log(f"{NAME}: deepinv ULA '{v}' (step {env.steps[v]:.3g}, {env.budgets[v]} iterations)")
        out[f"deepinv_ula_{v}"] = run_deepinv_ula(
            env.problem, env.den, env.physics, step=env.steps[v], n_iter=env.budgets[v],
            burnin_ratio=cfg["deepinv_burnin_ratio"], seed=seed + 2, x_ref=x_ref,
            eval_every=cfg["ula_eval_every"], label=f"deepinv_ula_{v}")
    for r in out.values():
        r["target"] = time_to_target(r["evals"], p_ref, cfg["tol_db"])
        r["vs_ref"] = {str(t): time_to_threshold(r["evals"], t) for t in cfg["vs_ref_db"]}
    return out


def _hit_ratio(theirs: dict, ours: dict, r: dict) -> dict:
    """Time and evaluation ratios of two hits, or lower bounds when only ours hit."""
    out: dict = {"deepinv_reached": theirs["reached"], "ours_reached": ours["reached"]}
    if ours["reached"] and theirs["reached"]:
        out.update(time_ratio=theirs["t_s"] / ours["t_s"], evals_ratio=theirs["evals"] / ours["evals"])
    elif ours["reached"]:
        out.update(time_ratio_lower_bound=r["wall_s"] / ours["t_s"], evals_ratio_lower_bound=r["n_iter"] / ours["evals"])
    return out


def _ratio_entry(r: dict, ours: dict, ours_name: str, cfg) -> dict:
    entry = _hit_ratio(r["target"], ours["target"], r)
    if "time_ratio_lower_bound" in entry:
        entry["note"] = "deepinv never stayed in the band within its budget: ratio >= lower bound"
    elif not ours["target"]["reached"]:
        entry["note"] = f"{ours_name} did not reach the band within its budget: no ratio"
    entry["target"] = f">= {TARGET}"
    if "time_ratio" in entry:
        entry["met"] = bool(entry["time_ratio"] >= TARGET)
    else:  # None: undetermined (a lower bound below the target, or no hit for ours)
        entry["met"] = True if entry.get("time_ratio_lower_bound", 0.0) >= TARGET else None
    entry["secondary_vs_reference"] = {
        f"psnr_vs_ref>={t}dB": _hit_ratio(r["vs_ref"][str(t)], ours["vs_ref"][str(t)], r) for t in cfg["vs_ref_db"]}
    return entry


def _ratios(contenders: dict, cfg) -> dict:
    ours_names = [OURS_VARIANTS[v] for v in cfg["ours_variants"]]
    return {f"{name}/{o}": _ratio_entry(r, contenders[o], o, cfg)
            for o in ours_names for name, r in contenders.items() if name not in ours_names}


def _config(env, cfg, args) -> dict:
    return {
        **cfg, "image": str(args.image), "image_shape": list(env.x_true.shape), "operator": "blur uniform 9x9 circular",
        "sigma_y": C.SIGMA_Y, "eps": C.EPS, "alpha": 1.0, "lipschitz": env.L_info, "chains": 1, "dtype": "float32",
        "deepinv_steps": {v: env.steps[v] for v in cfg["variants"]},
        "deepinv_step_rules": RULES, "norm_A_squared": env.norm_a2, "data_lipschitz": env.problem.data_lipschitz,
        "operator_mismatch_vs_deepinv": C.operator_mismatch(env.problem, env.physics),
    }


def _notes(den_info: dict, tol: float, warnings: list[str]) -> str:
    return (
        "Measured: wall time (bench evaluation excluded via a paused stopwatch) until the running-mean PSNR vs "
        f"truth enters and stays in a +/-{tol} dB band around the reference MMSE's PSNR (criterion in the module "
        "docstring), for our pipeline (pnp_imaging.map_estimate + pnp_imaging.sample with SK-ROCK; MAP time "
        "included) and deepinv's ULA (sampling_builder, its own loop, Welford mean, defaults) with the same "
        "denoiser, problem and y; also the denoiser-evaluation counts at the hit (contention-free ratio). Not "
        "measured: multi-chain runs, GPU, PSNR-vs-reference-based criteria (curves recorded only), deepinv's "
        "SKRock, variance/UQ quality. "
        f"Denoiser: {den_info.get('name')} (source {den_info.get('source')}, trained={den_info.get('trained')})"
        + ("" if den_info.get("trained") is True else " -- NOT the final weights: the PSNR values and hence the "
           "ratios are provisional (the posterior changes with the denoiser)")
        + ". Timings on a shared CPU are noisy; prefer evals_ratio. " + " ".join(warnings)
    )


def main(argv: list[str] | None = None) -> dict:
    args, machine, cfg = C.start(build_parser(), argv, settings)
    env = _setup(args, cfg)
    t_all = time.perf_counter()
    ref, x_ref, warnings = _reference(env, cfg, args.seed)
    p_ref = ref["psnr_truth"]
    contenders = _contenders(env, cfg, args.seed, x_ref, p_ref)
    wall = time.perf_counter() - t_all
    ratios = _ratios(contenders, cfg)
    for r in contenders.values():
        r["curve"] = C.thin_curve(r.pop("evals"))
    sanity = ref.pop("sanity")
    status = warnings[-1][0] if warnings else "ok"
    raw = {"reference": ref, "contenders": contenders, "p_ref": p_ref, "sanity": sanity, "bench_wall_s": wall}
    C.write_result(NAME, args, config=_config(env, cfg, args), denoiser=env.den_info, raw=raw, ratios=ratios,
                   notes=_notes(env.den_info, cfg["tol_db"], [w for _, w in warnings]), status=status,
                   machine_start=machine)
    return {"ratios": ratios, "raw": raw}


if __name__ == "__main__":
    main(sys.argv[1:])
