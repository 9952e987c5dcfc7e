r"""Time and denoiser evaluations to a trustworthy answer: the MMSE **and** the per-pixel
posterior std of a long reference run, per sampler, with ratios against the new default.

``python -m bench.bench_time_to_answer [--quick] [--crop N] [--images cameraman,astronaut]
[--operators blur,inpainting] [--contenders a,b] [--budget-evals N] [--ref-steps N] ...``

Problems (each image × each operator; ε = (5/255)², α = 1, σ_y = 1/255, float32, the denoiser
of ``--denoiser``, default ``denoisers_zoo.default_prior(1)``): ``cameraman`` (``data/cameraman.png``)
and the held-out ``astronaut`` crop of ``bench/bench_demos.py`` (``data/astronaut_gray_256.png``),
both 256², centre-cropped to ``--crop``; ``blur``: circular 9×9 uniform blur; ``inpainting``: 50 %
of the pixels missing at random (``bench._common.inpainting_problem``, seeded).

Contenders (fresh chains each; ``chains`` chains pooled; wall time excludes the bench's own
evaluation code, which runs in the callbacks on a paused stopwatch):

* ``deepinv_ula``: deepinv's ULA (``bench.bench_mmse_speed.deepinv_ula``: projected, clip
  (-1, 2), same denoiser) with the step its docstring prescribes, "smaller than 1/(L+‖A‖²)" with L
  and ‖A‖² read as the Lipschitz constants of the prior score and of the likelihood gradient:
  δ = 0.99/(αL/ε + L_y) (docs/algorithms.md §pnp-ula-step); its default start Aᵀy, the
  ``chains`` chains as a batch of copies of y.
* ``pnp-ula`` (the faithful PnP-ULA), ``skrock`` (the old default, s = 10), ``pnp-ula-exp``,
  ``pnp-lm-exp``, ``pnp-kinetic-exp`` (the new default, ``pnp_imaging.config.AUTO_SAMPLERS``):
  ``pnp_imaging.sample(problem, prior, name, ...)`` with the family's default options (box: below),
  from the PnP-SGD MAP (``pnp_imaging.map_estimate``, ``map_steps`` iterations), as ``pnp_imaging.run``
  does. The MAP is computed once per problem; its wall time and denoiser calls are charged to
  every one of these contenders. ``--start-steps N`` starts them instead from a PnP-SGD run of N
  iterations of their own (charged the same way; the reference still starts from the MAP): the
  chains only need a point near the posterior's bulk, and the burn-in forgets the rest.

Box C: ``--box family`` (the default) runs each family with its own default box, [−1, 2] for
``pnp-ula`` and ``skrock`` (and deepinv's clip), [0, 1] for the likelihood-exact ones and so for
the default reference. The box moves the std map by a few per cent (held-out deblurring: coverage
0.923 with [−1, 2], 0.891 with [0, 1]), so with it the papers' samplers are measured against a
reference of another posterior. ``--box lo,hi`` gives every contender, the reference and deepinv's
clip the same box: ``--box=-1,2`` (with ``=``: the value starts with a minus) for a comparison on
one posterior.

Every contender discards its first ``burnin_evals`` denoiser calls' worth of steps (the same
for all, in calls, not steps) and keeps every later state of every chain in float64 running
moments (``pnp_imaging.stats.RunningMoments``, pooled over the chains). Denoiser calls are
counted by a wrapper around the network (one call serves all chains; SK-ROCK makes s per step).

**Reference**: ``ref_sampler`` (default ``pnp-lm-exp``, exact on Gaussian targets; the anchor
``pnp-kinetic-exp`` shares its stationary law on Gaussians) with another seed, ``ref_chains``
chains, ``ref_steps`` steps from the MAP, ``ref_burnin`` discarded, at the family's step or at
``--ref-option step_fraction=F`` (with a network prior the schemes' std maps carry different
O(δ²) biases, a few per cent at the default step: a smaller reference step judges them on the
step-free posterior; ``--ref-option`` passes any option of the reference's family, e.g.
``friction`` for ``pnp-kinetic-exp``); its final mean ``x_ref``
and std ``s_ref``. Stability: ``psnr_drift_last_half`` = |PSNR(mean at the end) − PSNR(mean
after half the kept draws)| and ``std_drift_last_half`` = ‖s_end − s_half‖/‖s_end‖; above
half the tolerances (``REF_TOL_FRACTION``), ``status`` is ``reference_not_converged``. The
half-run estimates have twice the Monte Carlo variance of the full one, so the reference's own
error is about these drifts, and a reference whose error is near the tolerance cannot judge it.
``--ref-cache DIR`` keeps each reference's record and std map in ``DIR`` (file named by a hash
of everything the run depends on: problem, seed, MAP steps, reference sampler, options, steps,
chains, box, weights) and reuses it when all of that matches, so that long contenders can run in
separate invocations against one reference (the record then says ``read_from``).
``--ref-runs N`` pools N independent reference runs (seeds ``seed + 1000 + j``; each cached on its
own, so a cached reference is lengthened by asking for more runs): the moments of all their kept
draws, and for the drifts those of all their first halves.
``--resume-dir DIR`` lets a run longer than one sitting be paused and continued
(``bench._t2a_resume``): finished contenders' records are kept and not run again, and deepinv's
ULA run (the long one) pauses on SIGINT/SIGTERM or after ``--pause-after`` calls of this
invocation, saving its chain, RNG state and tracker; the same command continues it exactly (the
records equal an uninterrupted run's; its ``segments`` give each invocation's iterations and
wall time, whose sum is the run's time).

**Criterion** (``tol_db`` = 0.05, ``tol_std`` = 0.05): at kept-draw counts growing by
``grid`` (2 %), the running mean ``m`` and std ``s`` are evaluated; a record is *trustworthy*
when ``|PSNR(m, x) − PSNR(x_ref, x)| <= tol_db`` (PSNR against the truth x, estimate clamped to
[0, 1], peak 1: ``pnp_imaging.metrics.psnr``) **and** ``‖s − s_ref‖/‖s_ref‖ <= tol_std``. The
time to the answer is the first record from which every later one is trustworthy; a run stops
once that has held from the hit until ``stay`` × (kept steps at the hit) (default 2), or at
``budget_evals`` denoiser calls. A contender that never settled reports its whole budget as a
lower bound. Each half of the criterion (MMSE only, std only) is reported too.

Ratios (per problem, same run): ``<contender>/pnp-kinetic-exp`` = contender's time (and
denoiser calls) to the answer over the new default's; lower bounds (``*_lower_bound``) when the
contender did not settle within its budget. Targets (issue 19): ``skrock/pnp-kinetic-exp`` ≥ 5 and
``deepinv_ula/pnp-kinetic-exp`` ≥ 30, in time and in calls; ``met`` is True/False, or None when only a lower bound
below the target is known.

Weights cache: the Lipschitz-constrained zoo networks normalise their conv weights in every
forward call (a parametrization, FFT of each kernel); ``torch.nn.utils.parametrize.cached()``
computes that once per run here (the outputs are bit-identical; checked and recorded as
``config.weight_cache_max_abs_diff``). ``--no-weight-cache`` measures the network as shipped.

Cost: at most ``problems × (map_steps + ref_steps + Σ contenders' budget_evals)`` denoiser
calls (logged at start; a contender stops early once its answer has settled). Measured on a
2-core EPYC shared at load ~7, weights cache on: one step with the library's streaming
statistics costs ~0.02 s (32², 2 chains; ~0.026 s with the reference's 4), one network call
~0.045 s at 64², ~0.24 s at 128², ~1.1 s at 256². ``--quick`` (32² crops, reference 8 000
steps, budgets of 4 000 calls): ~45 min for the four problems. The full run (256², reference
40 000 steps × 4 chains, budgets of 60 000 calls) is a day or more on such a machine: use
``--crop`` (and ``--images``/``--operators``/``--contenders`` to split it), or a machine with
more cores. ``--smoke``: plumbing only (tests), numbers meaningless.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from bench import _common as C
from bench.bench_mmse_speed import _warm_start, deepinv_ula
from bench._t2a_resume import Paused, ResumeFile, moments_from, moments_state, restore_tracker, tracker_state
from bench.bench_sampler_overhead import TimedDenoiser
from pnp_imaging._io import atomic_torch_save
from pnp_imaging.metrics import psnr

NAME = "bench_time_to_answer"
IMAGES = {"cameraman": C.ROOT / "data" / "cameraman.png", "astronaut": C.ROOT / "data" / "astronaut_gray_256.png"}
OPERATORS = ("blur", "inpainting")
OURS = ("pnp-ula", "skrock", "pnp-ula-exp", "pnp-lm-exp", "pnp-kinetic-exp")
CONTENDERS = ("deepinv_ula", *OURS)
OLD_DEFAULT = "skrock"
TARGETS = {"skrock": 5.0, "deepinv_ula": 30.0}
#: the reference's own error (about its last-half drift) must stay below this share of the criterion
REF_TOL_FRACTION = 0.5
DEEPINV_RULE = "0.99/(alpha*L/eps + L_y) (deepinv ULA docstring: step < 1/(L + ||A||^2), Lipschitz constants of both terms)"


def anchor_name() -> str:
    """The new default where the data term has an exact flow (``sampler.type: auto``)."""
    from pnp_imaging.config import AUTO_SAMPLERS

    return AUTO_SAMPLERS["exact"]


class _Settled(Exception):
    """Raised from a callback to stop a run whose answer has settled (module docstring)."""


class _Abort(Exception):
    pass


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------
def settings(args) -> dict:
    if args.smoke:
        d = dict(crop=16, map_steps=5, ref_steps=30, ref_burnin=5, ref_chains=2, chains=2, budget_evals=60,
                 burnin_evals=10)
    elif args.quick:
        d = dict(crop=32, map_steps=100, ref_steps=8000, ref_burnin=500, ref_chains=4, chains=2,
                 budget_evals=4000, burnin_evals=200)
    else:
        d = dict(crop=None, map_steps=300, ref_steps=40000, ref_burnin=1000, ref_chains=4, chains=2,
                 budget_evals=60000, burnin_evals=500)
    d.update(tol_db=0.05, tol_std=0.05, grid=0.02, stay=2.0, missing=0.5, ref_sampler="pnp-lm-exp",
             ref_options={}, ref_runs=1, start_steps=None)
    d = C.apply_overrides(d, args)
    if d["ref_runs"] < 1:
        raise SystemExit(f"--ref-runs: need at least 1 reference run, got {d['ref_runs']}")
    d["box"] = _box(args.box)
    d["ref_options"] = _ref_options(args.ref_option)
    d["images"] = C.choices("--images", args.images, IMAGES)
    d["operators"] = C.choices("--operators", args.operators, OPERATORS)
    d["contenders"] = C.choices("--contenders", args.contenders, CONTENDERS)
    if anchor_name() not in d["contenders"]:
        d["contenders"].append(anchor_name())
    d["weight_cache"] = not args.no_weight_cache
    d["ref_cache"] = args.ref_cache
    d["resume_dir"], d["pause_after"] = args.resume_dir, args.pause_after
    if d["pause_after"] is not None and not d["resume_dir"]:
        raise SystemExit("--pause-after needs --resume-dir DIR (where the paused run's state is kept)")
    return d


def _box(value: str) -> list[float] | None:
    """``--box``: ``lo,hi`` (one box C for every contender and the reference) or ``family``."""
    if value == "family":
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise SystemExit(f"--box: expected 'lo,hi' (e.g. 0,1) or 'family', got {value!r}") from None
    if not lo < hi:
        raise SystemExit(f"--box: need lo < hi, got {value!r}")
    return [lo, hi]


def _ref_options(items: list[str]) -> dict:
    """``--ref-option KEY=VALUE`` (repeatable) → ``{key: float(value)}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise SystemExit(f"--ref-option: expected KEY=NUMBER (e.g. step_fraction=0.225), got {item!r}")
    return out


def _box_option(cfg, key: str) -> dict:
    """``{key: (lo, hi)}`` when ``--box`` fixes one box for all, else ``{}`` (the family's default)."""
    return {} if cfg["box"] is None else {key: tuple(cfg["box"])}


def build_parser():
    ap = C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0])
    ap.add_argument("--crop", type=int, default=None, help="centre crop size (default: full 256²; quick 32)")
    ap.add_argument("--full-image", action="store_true", help="no crop even with --quick")
    C.add_int_options(ap, {
        "map_steps": "PnP-SGD iterations of the shared warm start", "ref_steps": "reference steps",
        "start_steps": "PnP-SGD iterations of the contenders' own warm start (default: the MAP of --map-steps, "
                       "which the reference starts from either way)",
        "ref_burnin": "reference burn-in (steps)", "ref_chains": "reference chains", "chains": "chains per contender",
        "ref_runs": "independent reference runs pooled (1; each cached on its own with --ref-cache: more runs "
                    "lengthen a cached reference)",
        "budget_evals": "denoiser calls per contender at most (MAP excluded)",
        "burnin_evals": "denoiser calls' worth of steps discarded by every contender"})
    ap.add_argument("--tol-db", dest="tol_db", type=float, default=None, help="MMSE band half-width in dB (0.05)")
    ap.add_argument("--tol-std", dest="tol_std", type=float, default=None, help="std map relative RMS error (0.05)")
    ap.add_argument("--stay", type=float, default=None, help="stop once settled until stay x the hit's steps (2)")
    ap.add_argument("--ref-sampler", dest="ref_sampler", default=None, help="reference sampler (pnp-lm-exp)")
    ap.add_argument("--ref-option", dest="ref_option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of the reference's sampler family (repeatable; numbers as floats), e.g. "
                         "step_fraction=0.225: a smaller step, less step bias, more steps needed")
    ap.add_argument("--ref-cache", dest="ref_cache", default=None, metavar="DIR",
                    help="keep each reference's record and std map in DIR and reuse one whose settings (problem, "
                         "seed, MAP, reference sampler and options, steps, chains, box, weights) all match: "
                         "contenders can then be run in separate invocations against the same reference")
    ap.add_argument("--resume-dir", dest="resume_dir", default=None, metavar="DIR",
                    help="keep finished contenders' records and a paused deepinv run in DIR (SIGINT/SIGTERM or "
                         "--pause-after pause it); the same command run again continues from there")
    ap.add_argument("--pause-after", dest="pause_after", type=int, default=None, metavar="CALLS",
                    help="pause deepinv's run once this invocation has spent CALLS of its denoiser calls")
    ap.add_argument("--images", default=",".join(IMAGES), help="cameraman,astronaut")
    ap.add_argument("--operators", default=",".join(OPERATORS), help="blur,inpainting")
    ap.add_argument("--contenders", default=",".join(CONTENDERS), help=",".join(CONTENDERS))
    ap.add_argument("--box", default="family",
                    help="'family' (default: each sampler's own box) or 'lo,hi': one box C for every contender, "
                         "the reference and deepinv's clip (--box=-1,2: one posterior for all)")
    ap.add_argument("--no-weight-cache", dest="no_weight_cache", action="store_true",
                    help="recompute the network's normalised weights in every call (as shipped)")
    return ap


# --------------------------------------------------------------------------------------------
# the running answer of one run
# --------------------------------------------------------------------------------------------
class Tracker:
    """Pooled float64 moments of the kept draws of one run, evaluated on a geometric grid of
    kept steps; raises :class:`_Settled` once the answer has settled for ``stay`` × its steps.

    ``target``: ``(p_ref, s_ref)`` or None (the reference run: moments only). ``charge``:
    ``(seconds, calls)`` spent before the run (the shared MAP), added to its records."""

    def __init__(self, shape, env, cfg, *, target=None, charge=(0.0, 0), half_at: int | None = None):
        from pnp_imaging.stats import RunningMoments

        self.moments = RunningMoments(tuple(shape[1:]))
        self.env, self.cfg, self.target, self.charge, self.half_at = env, cfg, target, charge, half_at
        self.sw, self.calls0 = C.Stopwatch(), env.den.calls
        self.records: list[dict] = []
        self.steps, self.next_eval, self.run_start, self.half = 0, 1, None, None

    def calls(self) -> int:
        return self.env.den.calls - self.calls0 + self.charge[1]

    def observe(self, xs: torch.Tensor) -> None:
        """Add one kept step (all chains); evaluate on the grid (clock paused)."""
        self.sw.pause()
        try:
            if not bool(torch.isfinite(xs).all()):
                raise _Abort(f"non-finite state after {self.steps} kept steps")
            self.moments.update_batch(xs.detach())
            self.steps += 1
            if self.steps == self.half_at:
                self.half = self.moments.copy()
            if self.steps >= self.next_eval:
                self.next_eval = max(self.steps + 1, math.ceil(self.steps * (1.0 + self.cfg["grid"])))
                self._evaluate()
        finally:
            self.sw.resume()

    def _evaluate(self) -> None:
        if self.target is None or self.moments.count < 2:
            return
        p_ref, s_ref = self.target
        s = self.moments.variance.sqrt()
        rec = {"t": self.sw.elapsed() + self.charge[0], "evals": self.calls(), "kept_steps": self.steps,
               "draws": self.moments.count, "psnr_truth": psnr(self.moments.mean, self.env.problem.x_true),
               "std_rel_err": float((s - s_ref).norm() / s_ref.norm())}
        rec["mmse_ok"] = abs(rec["psnr_truth"] - p_ref) <= self.cfg["tol_db"]
        rec["std_ok"] = rec["std_rel_err"] <= self.cfg["tol_std"]
        rec["ok"] = rec["mmse_ok"] and rec["std_ok"]
        self.records.append(rec)
        if not rec["ok"]:
            self.run_start = None
        elif self.run_start is None:
            self.run_start = self.steps
        if self.run_start is not None and self.steps >= self.cfg["stay"] * self.run_start:
            raise _Settled()

    def finish(self) -> dict:
        """Evaluate the last state and return the time-to-answer record of the run."""
        if self.records and self.records[-1]["kept_steps"] != self.steps:
            with contextlib.suppress(_Settled):
                self._evaluate()
        return answer_times(self.records, stay=self.cfg["stay"])


def answer_times(records: list[dict], *, stay: float) -> dict:
    """Hit of the joint criterion and of each half (``C.settled``), with the run's end."""
    end = records[-1] if records else {"t": None, "evals": None, "kept_steps": 0}
    out = {"end_t_s": end["t"], "end_evals": end["evals"], "end_kept_steps": end["kept_steps"],
           "end_psnr_truth": end.get("psnr_truth"), "end_std_rel_err": end.get("std_rel_err")}
    for name, key in (("answer", "ok"), ("mmse_only", "mmse_ok"), ("std_only", "std_ok")):
        hit = C.settled(records, lambda e: e[key])
        out[name] = (
            {"reached": False} if hit is None else
            {"reached": True, "t_s": hit["t"], "evals": hit["evals"], "kept_steps": hit["kept_steps"],
             "stayed_to_steps": end["kept_steps"], "stay_complete": end["kept_steps"] >= stay * hit["kept_steps"]})
    return out


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------
def run_ours(env, cfg, name: str, *, seed: int, chains: int, n_steps: int | None = None, n_burnin: int | None = None,
             target=None, half: bool = False, options: dict | None = None):
    """``pnp_imaging.sample(problem, prior, kernel, ...)`` from the shared MAP; returns the record
    and its tracker. ``n_steps``/``n_burnin`` default to the budget and burn-in in calls;
    ``options``: sampler options beyond the box."""
    import pnp_imaging
    from pnp_imaging.samplers import DivergenceError, build_kernel

    kernel = build_kernel(name, env.problem, env.prior, **_box_option(cfg, "box"), **(options or {}))
    per_step = int(getattr(kernel.params, "n_stages", 1))
    n_burnin = max(cfg["burnin_evals"] // per_step, 1) if n_burnin is None else n_burnin
    n_steps = n_burnin + max(cfg["budget_evals"] // per_step - n_burnin, 2) if n_steps is None else n_steps
    tr = Tracker(env.problem.x_true.shape, env, cfg, target=target, charge=env.start_charge if target else (0.0, 0),
                 half_at=(n_steps - n_burnin) // 2 if half else None)
    status = "budget"
    try:
        pnp_imaging.sample(env.problem, prior=env.prior, sampler=kernel, generator=torch.Generator().manual_seed(seed),
                           n_steps=n_steps, n_burnin=n_burnin, chains=chains,
                           x0=env.x_start if target is not None else env.x_map,
                           on_sample=lambda k, state: tr.observe(state.x))
    except _Settled:
        status = "settled"
    except (DivergenceError, _Abort) as e:
        status = f"diverged: {str(e).splitlines()[0][:200]}"
    record = {"sampler": name, "status": status, "step_size": float(kernel.params.step_size),
              "rule": getattr(kernel.params, "rule", None), "calls_per_step": per_step, "n_steps_max": n_steps,
              "n_burnin": n_burnin, "chains": chains, "wall_s": tr.sw.elapsed(), "denoiser_calls": tr.calls()}
    return record, tr


def run_deepinv(env, cfg, *, seed: int, target, resume: ResumeFile):
    """deepinv's ULA from Aᵀy, ``chains`` copies of y as a batch, burn-in and stop in the callback;
    pauses and resumes through ``resume`` (``bench._t2a_resume``)."""
    n_iter, n_burnin = cfg["budget_evals"], cfg["burnin_evals"]
    tr = Tracker(env.problem.x_true.shape, env, cfg, target=target)
    saved = resume.paused("deepinv_ula")
    start, x_init, segments = (0, None, []) if saved is None else (saved["iterations"], saved["x"], saved["segments"])
    if saved is not None:
        restore_tracker(tr, saved["tracker"])
        C.log(f"{NAME}:   resuming deepinv_ula after {start} iterations")

    def callback(X, statistics=None, iter=None, **kw):  # noqa: A002 - deepinv's keyword
        it = start + iter
        if it >= n_burnin:
            tr.observe(X["x"])
        if resume.should_pause(env.den.calls - tr.calls0) and it + 1 < n_iter:
            tr.sw.pause()
            seg = [*segments, {"iterations": iter + 1, "wall_s": tr.sw.elapsed()}]
            resume.pause("deepinv_ula", {"iterations": it + 1, "x": X["x"].clone(), "rng": torch.get_rng_state(),
                                         "segments": seg, "tracker": tracker_state(tr)})

    sampler = deepinv_ula(env.den, step=env.ula_step, n_iter=n_iter - start, burnin_ratio=0.0, callback=callback,
                          **_box_option(cfg, "clip"))
    y = env.problem.y.expand(cfg["chains"], *env.problem.y.shape[1:]).contiguous()
    if saved is None:
        torch.manual_seed(seed)  # deepinv draws its noise from the global generator
    else:
        torch.set_rng_state(saved["rng"])
    tr.sw, tr.calls0 = C.Stopwatch(), env.den.calls
    status = "budget"
    try:
        sampler.sample(y, env.physics, x_init=x_init)
    except _Settled:
        status = "settled"
    except _Abort as e:
        status = f"aborted: {e}"
    record = {"sampler": "deepinv_ula", "status": status, "step_size": env.ula_step, "rule": DEEPINV_RULE,
              "calls_per_step": 1, "n_steps_max": n_iter, "n_burnin": n_burnin, "chains": cfg["chains"],
              "start": "A^T y (deepinv default)", "wall_s": tr.sw.elapsed() + tr.charge[0], "denoiser_calls": tr.calls()}
    if segments:
        record["segments"] = [*segments, {"iterations": tr.calls() - start, "wall_s": tr.sw.elapsed()}]
    return record, tr


# --------------------------------------------------------------------------------------------
# the steps of one problem
# --------------------------------------------------------------------------------------------
def _problem(x_true, operator: str, cfg, seed: int):
    if operator == "blur":
        return C.blur_problem(x_true, seed=seed)
    return C.inpainting_problem(x_true, missing=cfg["missing"], seed=seed)


def _setup_problem(base, cfg, args, image: str, operator: str) -> SimpleNamespace:
    """Problem, prior, deepinv twin, ULA step and the shared MAP (timed, calls counted)."""
    from pnp_imaging.samplers import ula

    x_true = C.load_image(IMAGES[image], cfg["crop"])
    problem = _problem(x_true, operator, cfg, args.seed)
    env = SimpleNamespace(problem=problem, den=base.den, prior=base.prior, physics=C.deepinv_physics(problem),
                          image=image, operator=operator, den_info=base.den_info)
    env.ula_step = ula.auto_rule(base.prior.lipschitz, problem.data_lipschitz, projected=True)[0]
    env.x_map, env.map_charge, map_info = _timed_pnp_sgd(env, cfg["map_steps"], cfg, args.seed)
    env.x_start, env.start_charge, start_info = _contenders_start(env, cfg, args.seed)
    env.info = {"map": map_info, **start_info,
                "image_shape": list(x_true.shape), "data_lipschitz": problem.data_lipschitz,
                "deepinv_ula_step": env.ula_step, "operator_mismatch_vs_deepinv": C.operator_mismatch(problem, env.physics),
                "psnr_back_projection": psnr(problem.back_projection(), x_true)}
    return env


def _contenders_start(env, cfg, seed: int) -> tuple[torch.Tensor, tuple, dict]:
    """The contenders' warm start and its charge: the shared MAP, or with ``start_steps`` a
    shorter PnP-SGD run of its own (same seed), timed and counted, and its record ``{"start": ...}``."""
    if cfg["start_steps"] is None or cfg["start_steps"] == cfg["map_steps"]:
        return env.x_map, env.map_charge, {}
    x, charge, info = _timed_pnp_sgd(env, cfg["start_steps"], cfg, seed)
    return x, charge, {"start": info}


def _timed_pnp_sgd(env, n_steps: int, cfg, seed: int) -> tuple[torch.Tensor, tuple, dict]:
    """``n_steps`` PnP-SGD iterations from the initial guess (generator seed ``seed + 7``):
    ``(x, (wall s, denoiser calls), info with both)``."""
    sw, calls0 = C.Stopwatch(), env.den.calls
    x, info, _ = _warm_start(env.problem, env.prior, {**cfg, "map_steps": n_steps}, torch.Generator().manual_seed(seed + 7))
    charge = (sw.elapsed(), env.den.calls - calls0)
    return x, charge, {**info, "wall_s": charge[0], "denoiser_calls": charge[1]}


def _reference_key(env, cfg, seed: int) -> dict:
    """Everything the reference run depends on: a cached one is reused only when all of it matches."""
    keys = ("crop", "box", "missing", "map_steps", "ref_sampler", "ref_options", "ref_steps", "ref_burnin", "ref_chains")
    return {**{k: cfg[k] for k in keys}, "seed": seed, "image": env.image, "operator": env.operator,
            "sigma_y": C.SIGMA_Y, "eps": C.EPS, "prior_lipschitz": env.prior.lipschitz,
            "weights": env.den_info.get("weights"), "denoiser": env.den_info.get("name")}


def _cache_file(cfg, key: dict) -> Path | None:
    if not cfg.get("ref_cache"):
        return None
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(cfg["ref_cache"]) / f"reference_{key['image']}_{key['operator']}_{digest}.pt"


def _reference_run(env, cfg, seed: int, run: int, *, need_moments: bool) -> dict:
    """Run ``run`` of the reference (seed ``seed + 1000 + run``), or its cache file: ``{"record",
    "std"}`` and, from files written since pooled runs exist, its moments ``"full"`` and ``"half"``
    (kept draws up to half the run). A file without them is run again when ``need_moments``."""
    key = {**_reference_key(env, cfg, seed), **({"run": run} if run else {})}
    path = _cache_file(cfg, key)
    if path is not None and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if "full" in saved or not need_moments:
            C.log(f"{NAME}: reference run {run} read from {path}")
            moments = {k: moments_from(saved[k]) for k in ("full", "half") if k in saved}
            return {"record": {**json.loads(saved["record"]), "read_from": str(path)}, "std": saved["std"], **moments}
    C.log(f"{NAME}: reference run {run}: {cfg['ref_sampler']} ({cfg['ref_steps']} steps x {cfg['ref_chains']} chains)")
    rec, tr = run_ours(env, cfg, cfg["ref_sampler"], seed=seed + 1000 + run, chains=cfg["ref_chains"],
                       n_steps=cfg["ref_steps"], n_burnin=cfg["ref_burnin"], half=True, options=cfg["ref_options"])
    if tr.moments.count < 2 or tr.half is None:
        raise SystemExit(f"{NAME}: the reference run kept too few draws ({rec['status']})")
    rec.update(_drifts(env.problem.x_true, tr.moments, tr.half))
    out = {"record": rec, "std": tr.moments.variance.sqrt(), "full": tr.moments, "half": tr.half}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({"key": json.dumps(key, sort_keys=True, default=str), "std": out["std"],
                           "record": json.dumps(rec, default=float), "full": moments_state(tr.moments),
                           "half": moments_state(tr.half)}, path)
        C.log(f"{NAME}: reference run {run} saved to {path}")
    return out


def _drifts(x_true: torch.Tensor, full, half) -> dict:
    """The reference's PSNR and mean std, and how far its estimates moved over the last half."""
    std = full.variance.sqrt()
    p_ref = psnr(full.mean, x_true)
    return {"psnr_truth": p_ref, "draws": full.count, "psnr_drift_last_half": abs(p_ref - psnr(half.mean, x_true)),
            "std_drift_last_half": float((std - half.variance.sqrt()).norm() / std.norm()), "mean_std": float(std.mean())}


def _run_reference(env, cfg, seed: int) -> tuple[dict, torch.Tensor]:
    """The reference: its record (drifts) and std map. ``ref_runs`` > 1 pools independent runs
    (each cached on its own with ``--ref-cache``, so a reference is lengthened by adding runs): the
    moments of all their draws, the half-run moments of all their first halves."""
    n = cfg["ref_runs"]
    runs = [_reference_run(env, cfg, seed, j, need_moments=n > 1) for j in range(n)]
    if n == 1:
        return runs[0]["record"], runs[0]["std"]
    full, half = runs[0]["full"], runs[0]["half"]
    for r in runs[1:]:
        full, half = full.merge(r["full"]), half.merge(r["half"])
    records = [r["record"] for r in runs]
    rec = {"sampler": cfg["ref_sampler"], "runs": n, "run_records": records, "chains": n * cfg["ref_chains"],
           "status": next((r["status"] for r in records if not r["status"].startswith("budget")), "budget"),
           "wall_s": sum(r["wall_s"] for r in records), "denoiser_calls": sum(r["denoiser_calls"] for r in records),
           **_drifts(env.problem.x_true, full, half)}
    return rec, full.variance.sqrt()


def _reference(env, cfg, seed: int) -> tuple[dict, tuple, list]:
    """The long run (or its cache); its summary (drifts, sanity) and warnings; ``(p_ref, s_ref)``."""
    rec, std = _run_reference(env, cfg, seed)
    p_ref = rec["psnr_truth"]
    rec["psnr_map"] = env.info["map"].get("psnr_truth")
    warnings = []
    if rec["psnr_map"] is not None and p_ref < rec["psnr_map"] - 1.0:
        warnings.append(("suspect_posterior", f"SUSPECT POSTERIOR: reference MMSE {p_ref:.2f} dB is over 1 dB below "
                         f"the MAP ({rec['psnr_map']:.2f} dB)."))
    tol_db, tol_std = REF_TOL_FRACTION * cfg["tol_db"], REF_TOL_FRACTION * cfg["tol_std"]
    if not rec["status"].startswith("budget") or rec["psnr_drift_last_half"] > tol_db \
            or rec["std_drift_last_half"] > tol_std:
        warnings.append(("reference_not_converged", f"REFERENCE NOT CONVERGED ({rec['status']}): last-half drift "
                         f"{rec['psnr_drift_last_half']:.3f} dB, std {rec['std_drift_last_half']:.3f} (limits "
                         f"{tol_db:.3g}, {tol_std:.3g}: half the criterion's); lengthen --ref-steps."))
    return rec, (p_ref, std), warnings


def _resume_key(env, cfg, seed: int) -> dict:
    """Everything a contender's record depends on (``bench._t2a_resume``)."""
    keys = ("chains", "budget_evals", "burnin_evals", "tol_db", "tol_std", "grid", "stay")
    pooled = {"ref_runs": cfg["ref_runs"]} if cfg["ref_runs"] > 1 else {}
    start = {"start_steps": cfg["start_steps"]} if env.x_start is not env.x_map else {}
    return {**_reference_key(env, cfg, seed), **{k: cfg[k] for k in keys}, **pooled, **start}


def _contenders(env, cfg, seed: int, target) -> dict:
    out = {}
    resume = ResumeFile(cfg["resume_dir"], _resume_key(env, cfg, seed), pause_after=cfg["pause_after"])
    for name in cfg["contenders"]:
        rec = resume.done(name)
        if rec is not None:
            C.log(f"{NAME}: {name} read from {rec['read_from']}")
            out[name] = rec
            continue
        C.log(f"{NAME}: {name} (at most {cfg['budget_evals']} denoiser calls)")
        if name == "deepinv_ula":
            handlers = resume.catch_signals()
            try:
                rec, tr = run_deepinv(env, cfg, seed=seed + 2, target=target, resume=resume)
            finally:
                resume.restore_signals(handlers)
        else:
            rec, tr = run_ours(env, cfg, name, seed=seed, chains=cfg["chains"], target=target)
        rec.update(tr.finish())
        rec["curve"] = C.thin_curve(tr.records, 150)
        out[name] = rec
        resume.finish(name, rec)
        a = rec["answer"]
        C.log(f"{NAME}:   {rec['status']}; answer " + (f"at {a['evals']} calls, {a['t_s']:.1f} s" if a["reached"]
                                                       else f"not reached ({rec['end_evals']} calls)"))
    return out


def _ratio(c: dict, anchor: dict) -> dict:
    """Contender over anchor, time and calls to the answer (lower bounds if only the anchor settled)."""
    a, b = c["answer"], anchor["answer"]
    if not b["reached"]:
        return {"note": "the anchor did not settle within its budget: no ratio"}
    if a["reached"]:
        return {"time_ratio": a["t_s"] / b["t_s"], "evals_ratio": a["evals"] / b["evals"]}
    return {"time_ratio_lower_bound": c["end_t_s"] / b["t_s"], "evals_ratio_lower_bound": c["end_evals"] / b["evals"],
            "note": "the contender did not settle within its budget: ratio >= lower bound"}


def _ratios(contenders: dict) -> dict:
    anchor = anchor_name()
    out = {}
    for name, c in contenders.items():
        if name == anchor:
            continue
        r = _ratio(c, contenders[anchor])
        if name in TARGETS:
            t = TARGETS[name]
            r["target"] = f">= {t}"
            r["met"] = (r["time_ratio"] >= t and r["evals_ratio"] >= t) if "time_ratio" in r else (
                True if min(r.get("time_ratio_lower_bound", 0.0), r.get("evals_ratio_lower_bound", 0.0)) >= t else None)
        out[f"{name}/{anchor}"] = r
    return out


def run_problem(base, cfg, args, image: str, operator: str) -> tuple[dict, dict, list]:
    C.log(f"{NAME}: problem {image}/{operator}")
    env = _setup_problem(base, cfg, args, image, operator)
    ref, target, warnings = _reference(env, cfg, args.seed)
    contenders = _contenders(env, cfg, args.seed, target)
    raw = {**env.info, "reference": ref, "contenders": contenders}
    return raw, _ratios(contenders), [(k, f"{image}/{operator}: {w}") for k, w in warnings]


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def _setup(args, cfg) -> SimpleNamespace:
    """Denoiser (counted), prior, the weights cache check, the cost estimate."""
    den, den_info = C.load_denoiser(args.denoiser, args.fallback, args.denoiser_device)
    counted = TimedDenoiser(den)
    x0 = C.load_image(IMAGES[cfg["images"][0]], cfg["crop"])
    prior, L_info = C.score_prior(args, den, x0, network=counted)
    n_prob = len(cfg["images"]) * len(cfg["operators"])
    n_max = n_prob * (cfg["map_steps"] + cfg["ref_steps"] + len(cfg["contenders"]) * cfg["budget_evals"])
    C.log(f"{NAME}: {n_prob} problems, at most {n_max} denoiser calls on {tuple(x0.shape[-2:])} images")
    return SimpleNamespace(den=counted, den_info=den_info, prior=prior, L_info=L_info, x0=x0)


def _cache_check(den, x: torch.Tensor) -> float:
    """max |D(x) − D(x)| between a plain call and one inside ``parametrize.cached()``."""
    from torch.nn.utils import parametrize

    with torch.no_grad():
        plain = den(x, math.sqrt(C.EPS))
        with parametrize.cached():
            cached = den(x, math.sqrt(C.EPS))
    return float((plain - cached).abs().max())


def _summary(problems: dict, ratios: dict) -> dict:
    """Per target, the smallest ratio over the problems (or lower bound) in time and calls."""
    out = {}
    anchor = anchor_name()
    for name, t in TARGETS.items():
        rows = [r[f"{name}/{anchor}"] for p, r in ratios.items() if p != "summary" and f"{name}/{anchor}" in r]
        out[f"{name}/{anchor}"] = {"target": f">= {t}", "per_problem_met": [r.get("met") for r in rows],
                                   "met_everywhere": all(r.get("met") is True for r in rows) if rows else None}
    out["answer_reached"] = {p: {n: c["answer"]["reached"] for n, c in raw["contenders"].items()}
                             for p, raw in problems.items()}
    return out


def _notes(den_info: dict, cfg, warnings: list[str]) -> str:
    start = ("a shared PnP-SGD MAP" if cfg["start_steps"] in (None, cfg["map_steps"])
             else f"a {cfg['start_steps']}-iteration PnP-SGD run of their own (raw 'start')")
    return (
        f"Measured: wall time and denoiser calls until a contender's pooled running mean is within {cfg['tol_db']} dB "
        f"(PSNR vs truth) of a long {cfg['ref_sampler']} reference AND its std map within {cfg['tol_std']} relative "
        f"RMS of the reference's, entering and staying (module docstring); ours from {start} whose cost "
        "is charged to each, deepinv's ULA from A^T y. Not measured: GPU, other noise levels, coverage. Denoiser: "
        f"{den_info.get('name')} (source {den_info.get('source')}, trained={den_info.get('trained')}). Wall times on "
        "a shared CPU are noisy; the denoiser-call ratios are not. " + " ".join(warnings))


@contextlib.contextmanager
def _exit_on_pause():
    """A paused run (``--resume-dir``) ends the invocation with exit status 3 and no new result."""
    try:
        yield
    except Paused as e:
        C.log(f"{NAME}: {e}")
        raise SystemExit(3) from None


def main(argv: list[str] | None = None) -> dict:
    args, machine, cfg = C.start(build_parser(), argv, settings)
    base = _setup(args, cfg)
    cache_diff = _cache_check(base.den.den, base.x0) if cfg["weight_cache"] else None
    problems, ratios, warnings = {}, {}, []
    t_all = time.perf_counter()
    from torch.nn.utils import parametrize

    config = {**cfg, "anchor": anchor_name(), "old_default": OLD_DEFAULT, "targets": TARGETS,
              "images_files": {k: str(Path(IMAGES[k]).relative_to(C.ROOT)) for k in cfg["images"]},
              "sigma_y": C.SIGMA_Y, "eps": C.EPS, "alpha": 1.0, "lipschitz": base.L_info, "dtype": "float32",
              "deepinv_step_rule": DEEPINV_RULE, "weight_cache_max_abs_diff": cache_diff}
    keys = [(i, o) for i in cfg["images"] for o in cfg["operators"]]
    with parametrize.cached() if cfg["weight_cache"] else contextlib.nullcontext(), _exit_on_pause():
        for done, (image, operator) in enumerate(keys, 1):
            key = f"{image}/{operator}"
            problems[key], ratios[key], w = run_problem(base, cfg, args, image, operator)
            warnings += w
            ratios["summary"] = _summary(problems, ratios)
            status = (warnings[-1][0] if warnings else "ok") if done == len(keys) else f"partial: {done}/{len(keys)}"
            C.write_result(NAME, args, config=config, denoiser=base.den_info,
                           raw={"problems": problems, "bench_wall_s": time.perf_counter() - t_all}, ratios=ratios,
                           notes=_notes(base.den_info, cfg, [w for _, w in warnings]), status=status,
                           machine_start=machine)
    return {"ratios": ratios, "raw": problems}


if __name__ == "__main__":
    main(sys.argv[1:])
