"""Sampler overhead: how much a sampler iteration costs beyond its denoiser call(s).

Problem: cameraman (``--size`` centre crop, 256² by default), circular 9×9 uniform blur,
σ_y = 1/255, ε = (5/255)², α = 1, one chain, float32, the denoiser of ``--denoiser`` (default:
the library's prior, ``denoisers_zoo.default_prior(1)``). Kernels from
``pnp_imaging.samplers.build_kernel("pnp-ula" | "skrock", problem, prior)``.

Measured, interleaved round-robin (A B C ... A B C ..., start rotated each round), each entry
in seconds per unit, medians over rounds:

* ``denoiser``          — one forward ``D(x, √ε)`` under ``no_grad`` (the ANCHOR), on a typical
  chain state (the back-projection after 3 ULA steps);
* ``pnp_ula_run_chain`` — one PnP-ULA iteration inside :func:`run_chain` (step + traces +
  divergence guard + statistics update; ``n_burnin=0`` so every iteration updates the
  statistics), from ``timings['sampling_s']``. The statistics are those :func:`pnp_imaging.sample`
  builds (P² fed every 4th kept draw) and are **warm**: one :class:`PosteriorStats` per measure,
  fed 40 draws before timing and reused by every block, so the P² markers are in their steady
  state (a fresh estimator's first 5 observations take a cheap start-up path that a short block
  would time instead);
* ``pnp_ula_run_chain_p2_every_draw`` — the same with P² fed every kept draw (the previous
  default), for the before/after in one run;
* ``pnp_ula_run_chain_burnin`` — the same during burn-in (``n_burnin = n_steps``: traces and
  guard, no statistics update), to split the driver's overhead into traces vs statistics;
* ``pnp_ula_step``      — one bare ``kernel.step`` (no driver);
* ``skrock_stage``      — one SK-ROCK stage inside :func:`run_chain` (outer step / s);
* ``deepinv_ula``       — one iteration of deepinv's ULA (``sampling_builder('ULA')``, projected
  PnP-ULA, clip (-1, 2), Welford update every iteration) with the same denoiser wrapped as
  ``deepinv.optim.ScorePrior`` called with the std ``√ε`` (docs/algorithms.md §score-prior),
  ``BlurFFT`` with the same
  kernel and ``L2(sigma=σ_y)``;
* ``deepinv_skrock_stage`` — one stage of deepinv's SKRock (outer iteration / inner_iter).

Ratios (``ratios``): each method / ``denoiser``, as the median over rounds of the per-round
quotient (both measured within seconds of each other), plus the quotient of the medians.

Target: ``pnp_ula_run_chain/denoiser`` (median of the per-round quotients against the
standalone forward) ``<= 1.05``. ``ratios.in_loop`` is reported beside it: the denoiser handed to
every sampler is wrapped in a timer, so each block also yields (block time) / (time spent inside
the denoiser during that same block) — immune to drifts in machine speed between blocks, but
flattering when the statistics slow the network down inside the loop (cache pollution), which
is why the target uses the standalone forward.

Step sizes do not change the cost of an iteration; they are set by the project rules
(docs/algorithms.md: ULA soft §pnp-ula-step; SK-ROCK §skrock-step; deepinv ULA: the projected
rule of §pnp-ula-step) only so that the chains stay sane.
"""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import torch

from bench import _common as C

NAME = "bench_sampler_overhead"
TARGET_ULA = 1.05


class TimedDenoiser(torch.nn.Module):
    """Wraps ``D(x, sigma)``; accumulates the wall time spent inside it (``acc``)."""

    def __init__(self, den):
        super().__init__()
        self.den = den
        self.acc = 0.0
        self.calls = 0
        for a in ("name", "channels", "sigma_range", "blind", "lipschitz"):
            setattr(self, a, getattr(den, a, None))

    def forward(self, x, sigma):
        t = time.perf_counter()
        out = self.den(x, sigma)
        self.acc += time.perf_counter() - t
        self.calls += 1
        return out


def settings(args) -> dict:
    if args.smoke:
        d = dict(size=16, reps=2, block=1, skrock_block=1, stages=3)
    elif args.quick:
        d = dict(size=128, reps=5, block=3, skrock_block=1, stages=10)
    else:
        d = dict(size=256, reps=9, block=8, skrock_block=1, stages=10)
    for k in ("size", "reps", "block", "stages"):
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    return d


def build_parser():
    ap = C.base_parser(f"python -m bench.{NAME}", __doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=None, help="image crop size (default 256; quick 128)")
    ap.add_argument("--reps", type=int, default=None, help="interleaved rounds")
    ap.add_argument("--block", type=int, default=None, help="calls per timed block (ULA / denoiser)")
    ap.add_argument("--stages", type=int, default=None, help="SK-ROCK stages s")
    return ap


def _setup(args, cfg) -> SimpleNamespace:
    """Problem, denoiser (and its timing wrapper), prior, our kernels and states, the anchor's
    input and deepinv's two samplers."""
    import deepinv as dinv

    from pnp_imaging.samplers import build_kernel, run_chain, ula

    x_true = C.load_image(args.image, cfg["size"])
    problem = C.blur_problem(x_true, seed=args.seed)
    den, den_info = C.load_denoiser(args.denoiser, args.fallback)
    timed = TimedDenoiser(den)
    prior, L_info = C.score_prior(args, den, x_true, network=timed)
    x0 = problem.back_projection()
    gen = torch.Generator().manual_seed(args.seed)
    ula_kernel = build_kernel("pnp-ula", problem, prior)
    sk_kernel = build_kernel("skrock", problem, prior, stages=cfg["stages"])
    ula_state = ula_kernel.init(x0)
    # the anchor denoises a typical chain state (x0 after a few ULA steps), not the smooth x0 itself:
    # a network's CPU cost can depend on its input (e.g. denormal intermediate values)
    x_anchor = run_chain(ula_kernel, ula_state, n_steps=3, n_burnin=3, thin=1, generator=gen).state.x.clone()
    physics = C.deepinv_physics(problem)
    sigma_den = math.sqrt(C.EPS)
    delta_proj = ula.auto_rule(prior.lipschitz, problem.data_lipschitz, projected=True)[0]
    common = dict(data_fidelity=dinv.optim.L2(sigma=C.SIGMA_Y), prior=dinv.optim.ScorePrior(denoiser=timed),
                  burnin_ratio=0.0, thinning=1, history_size=False, clip=(-1.0, 2.0))
    d_ula = dinv.sampling.sampling_builder(
        "ULA", params_algo={"step_size": delta_proj, "alpha": 1.0, "sigma": sigma_den}, max_iter=cfg["block"], **common)
    d_sk = dinv.sampling.sampling_builder(
        "SKRock", params_algo={"step_size": sk_kernel.params.step_size, "alpha": 1.0, "inner_iter": cfg["stages"],
                               "eta": 0.05, "sigma": sigma_den}, max_iter=cfg["skrock_block"], **common)
    return SimpleNamespace(problem=problem, den=den, den_info=den_info, timed=timed, L_info=L_info, x0=x0, gen=gen,
                           ula_kernel=ula_kernel, sk_kernel=sk_kernel, ula_state=ula_state,
                           sk_state=sk_kernel.init(x0), x_anchor=x_anchor, physics=physics, d_ula=d_ula, d_sk=d_sk,
                           delta_proj=delta_proj, sigma_den=sigma_den)


def _measures(env, cfg) -> tuple[dict, dict]:
    """``({name: measure}, {name: units per block})``; each measure returns seconds per unit."""
    from pnp_imaging.samplers import run_chain

    k, ks, s, gen = cfg["block"], cfg["skrock_block"], cfg["stages"], env.gen

    def m_denoiser():
        t = time.perf_counter()
        with torch.no_grad():
            for _ in range(k):
                env.den(env.x_anchor, env.sigma_den)
        return (time.perf_counter() - t) / k

    def chain(kernel, state, n, burnin, units, stats=None):
        return lambda: run_chain(kernel, state, n_steps=n, n_burnin=burnin, thin=1, generator=gen,
                                 stats=stats).timings["sampling_s"] / units

    def m_ula_step():
        st = env.ula_state
        t = time.perf_counter()
        for _ in range(k):
            st, _ = env.ula_kernel.step(st, generator=gen)
        return (time.perf_counter() - t) / k

    def deepinv(sampler, units):
        def run():
            t = time.perf_counter()
            sampler.sample(env.problem.y, env.physics, x_init=env.x0)
            return (time.perf_counter() - t) / units
        return run

    units = {"pnp_ula_run_chain": k, "pnp_ula_run_chain_p2_every_draw": k, "pnp_ula_run_chain_burnin": k, "pnp_ula_step": k, "skrock_stage": ks * s,
             "deepinv_ula": k, "deepinv_skrock_stage": ks * s}
    measures = {
        "denoiser": m_denoiser,
        "pnp_ula_run_chain": chain(env.ula_kernel, env.ula_state, k, 0, k, _warm_stats(env, 4)),
        "pnp_ula_run_chain_p2_every_draw": chain(env.ula_kernel, env.ula_state, k, 0, k, _warm_stats(env, 1)),
        "pnp_ula_run_chain_burnin": chain(env.ula_kernel, env.ula_state, k, k, k),
        "pnp_ula_step": m_ula_step,
        "skrock_stage": chain(env.sk_kernel, env.sk_state, ks, 0, ks * s),
        "deepinv_ula": deepinv(env.d_ula, k),
        "deepinv_skrock_stage": deepinv(env.d_sk, ks * s),
    }
    return measures, units


def _warm_stats(env, quantile_every: int):
    """The statistics ``pnp_imaging.sample`` builds for one chain, fed 40 typical draws (the anchor
    state plus noise at the posterior's scale) so that every timed block sees their steady state."""
    from pnp_imaging.stats import PosteriorStats

    x = env.x_anchor
    stats = PosteriorStats(tuple(x.shape), quantile_every=quantile_every)
    g = torch.Generator().manual_seed(1)
    for _ in range(40):
        stats.update(x + 0.02 * torch.randn(x.shape, generator=g, dtype=x.dtype))
    return stats


def _attributed(measures: dict, units: dict, timed: TimedDenoiser) -> tuple[dict, dict]:
    """Wrap every measure but the anchor so that it also records (block time) / (time spent inside
    the denoiser during that block): the in-loop ratio."""
    in_loop: dict[str, list[float]] = {n: [] for n in measures if n != "denoiser"}

    def wrap(name, fn):
        def run():
            timed.acc = 0.0
            per_unit = fn()
            if timed.acc > 0:
                in_loop[name].append(per_unit * units[name] / timed.acc)
            return per_unit
        return run

    return {n: (f if n == "denoiser" else wrap(n, f)) for n, f in measures.items()}, in_loop


def _ratios(raw: dict, in_loop: dict) -> dict:
    anchor = raw["denoiser"]
    ratios: dict = {}
    for name, v in raw.items():
        if name == "denoiser":
            continue
        paired = [a / b for a, b in zip(v, anchor) if b > 0]
        ratios[f"{name}/denoiser"] = {"median_of_paired": C.median(paired), "ratio_of_medians": C.median(v) / C.median(anchor),
                                      "min_paired": min(paired), "max_paired": max(paired)}
    for theirs, ours in (("deepinv_ula", "pnp_ula_run_chain"), ("deepinv_skrock_stage", "skrock_stage")):
        ratios[f"{theirs}/{ours}"] = {"median_of_paired": C.median([a / b for a, b in zip(raw[theirs], raw[ours])])}
    ratios["in_loop"] = {f"{n}/denoiser_inside": {"median": C.median(v), "min": min(v) if v else None,
                                                   "max": max(v) if v else None} for n, v in in_loop.items()}
    main_ratio = ratios["in_loop"]["pnp_ula_run_chain/denoiser_inside"]["median"]
    standalone = ratios["pnp_ula_run_chain/denoiser"]["median_of_paired"]
    ratios["target"] = {"pnp_ula_run_chain/denoiser (standalone forward)": f"<= {TARGET_ULA}",
                        "value": standalone, "met": bool(standalone is not None and standalone <= TARGET_ULA),
                        "in_loop_ratio": main_ratio}
    return ratios


def _notes(den_info: dict) -> str:
    return (
        "Measured: seconds per denoiser forward (anchor), per PnP-ULA iteration in run_chain (step + traces + guard "
        "+ stats update on every iteration, n_burnin=0, warm statistics as sample() builds them; and with P2 fed "
        "every draw), per bare ULA kernel.step, per SK-ROCK stage in run_chain, "
        "per deepinv ULA iteration and per deepinv SKRock stage (sampling_builder, Welford every iteration), all "
        "interleaved round-robin in one process with one chain; ratios are per-round quotients against the "
        "denoiser measured in the same round (median reported). Not measured: multi-chain batching, GPU, float64, "
        "checkpoint I/O, callbacks, run_chain setup (trace buffer allocation, random directions: once per run), "
        "deepinv's sample() setup is included in its per-iteration figure (amortised over the block). "
        f"Denoiser: {den_info.get('name')} (source {den_info.get('source')}, trained={den_info.get('trained')})"
        + (" (weights not final: timings still representative)." if den_info.get("trained") is not True else ".")
        + " Timings taken on a shared machine are noisy; only the ratios are meaningful."
    )


def main(argv: list[str] | None = None) -> dict:
    args, machine, cfg = C.start(build_parser(), argv, settings)
    env = _setup(args, cfg)
    measures, units = _measures(env, cfg)
    measures, in_loop = _attributed(measures, units, env.timed)
    C.log(f"{NAME}: {cfg['size']}² image, {cfg['reps']} interleaved rounds of {list(measures)}")
    t0 = time.perf_counter()
    raw = C.interleaved(measures, reps=cfg["reps"], warmup=1)
    wall = time.perf_counter() - t0
    for n in in_loop:  # drop the warm-up round
        in_loop[n] = in_loop[n][-cfg["reps"]:]
    ratios = _ratios(raw, in_loop)
    config = {
        **cfg, "image": str(args.image), "chains": 1, "dtype": "float32", "operator": "blur uniform 9x9 circular",
        "sigma_y": C.SIGMA_Y, "eps": C.EPS, "alpha": 1.0, "lipschitz": env.L_info,
        "ula_step": env.ula_kernel.params.step_size, "ula_lam": env.ula_kernel.params.lam,
        "skrock_step": env.sk_kernel.params.step_size, "deepinv_ula_step": env.delta_proj,
        "deepinv_sigma_passed": env.sigma_den, "operator_mismatch_vs_deepinv": C.operator_mismatch(env.problem, env.physics),
        "block_calls": cfg["block"], "skrock_outer_steps_per_block": cfg["skrock_block"],
    }
    raw_out = {"seconds_per_unit": raw, "medians": {n: C.median(v) for n, v in raw.items()},
               "in_loop_ratio": in_loop, "bench_wall_s": wall}
    C.write_result(NAME, args, config=config, denoiser=env.den_info, raw=raw_out, ratios=ratios,
                   notes=_notes(env.den_info), machine_start=machine)
    return {"ratios": ratios, "raw": raw_out}


if __name__ == "__main__":
    main(__import__("sys").argv[1:])
