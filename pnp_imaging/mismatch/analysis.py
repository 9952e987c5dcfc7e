"""The mismatch analysis of a run (``mismatch:`` config section; ``docs/algorithms.md §mismatch``).

:func:`prepare` builds and checks the second model before sampling (one-line
:class:`~pnp_imaging.config.ConfigError`); :func:`analyse` turns the kept states of chain 1 into
the pseudometric, the bounds with their MCSE, the per-pixel maps and, with ``run_other``, the
measured distance between the two MMSEs.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pnp_imaging.mismatch.bounds import bounds_with_mcse, horizon_mcse, mean_and_mcse, relaxation_horizon
from pnp_imaging.mismatch.distances import StateReservoir, drift_differences, operator_distance

__all__ = ["MismatchSetup", "prepare", "reservoir", "analyse", "run_other_chain", "measured_distance", "summary_keys"]

#: ESS of the per-state values below which the MCSE itself is unreliable (our choice)
MIN_STATE_ESS = 10.0


@dataclass(frozen=True)
class MismatchSetup:
    """The second model: ``prior2`` (other denoiser, same α and ε) and/or ``problem2`` (other
    operator, same y and noise); None where it equals the run's."""

    denoiser_name: str | None
    prior2: Any
    problem2: Any
    operator_norm: float | None
    run_other: bool
    n_states: int


def prepare(cfg, parts) -> MismatchSetup:
    """Load the other denoiser / build the other operator and check them against the run's image."""
    from pnp_imaging.config import ConfigError
    from pnp_imaging.priors import ScorePrior

    mm, prior, problem = cfg.mismatch, parts.prior, parts.problem
    prior2 = problem2 = op_norm = None
    if mm.denoiser:
        import denoisers_zoo

        other = denoisers_zoo.load(mm.denoiser)
        channels = problem.y.shape[1]
        if getattr(other, "channels", None) not in (None, channels):
            raise ConfigError(f"mismatch.denoiser: {mm.denoiser!r} takes {other.channels}-channel images but the image "
                              f"has {channels}; pick a {channels}-channel zoo denoiser")
        try:
            prior2 = ScorePrior(other.to(dtype=problem.y.dtype), eps=prior.eps, alpha=prior.alpha,
                                lipschitz=prior.residual_lipschitz, batch_chunk=prior.batch_chunk,
                                precision=prior.precision)
        except ValueError as exc:
            raise ConfigError(f"mismatch.denoiser: {exc}") from None
    if mm.operator:
        from operators.registry import build_operator

        shape = tuple(problem.y.shape)
        try:
            op2 = build_operator(mm.operator, shape, generator=torch.Generator().manual_seed(int(cfg.seed)))
        except ValueError as exc:
            raise ConfigError(f"mismatch.operator: {str(exc).splitlines()[0]}") from None
        problem2 = dataclasses.replace(problem, operator=op2)
        op_norm = operator_distance(problem.operator, op2, shape)
    return MismatchSetup(mm.denoiser, prior2, problem2, op_norm, bool(mm.run_other), mm.n_states)


def reservoir(cfg) -> StateReservoir:
    s = cfg.sampler
    return StateReservoir((s.n_steps - s.n_burnin) // s.thin, s.chains, capacity=cfg.mismatch.n_states)


def _per_state(values: torch.Tensor, chains: int) -> np.ndarray:
    """Per-state values in draw-major order → ``(chain, draw)``."""
    v = values.double().numpy()
    draws = v.size // chains
    return v[: draws * chains].reshape(draws, chains).T


def _warnings(post, ess: float, name: str) -> list[str]:
    out = []
    if not post.converged:
        out.append(f"mismatch: the chain states come from a chain the diagnostics call unconverged "
                   f"({post.warnings[0]}); the pseudometric and the bounds may be far off")
    if not ess >= MIN_STATE_ESS:
        out.append(f"mismatch: only {ess:.3g} effective states behind the {name} estimate (want >= {MIN_STATE_ESS:g}); "
                   "raise mismatch.n_states or sampler.n_steps")
    return out


def analyse(setup: MismatchSetup, parts, post, kernel, states: torch.Tensor, work: Path) -> dict:
    """The ``mismatch`` summary section; writes ``mismatch.npz`` (per-pixel RMS maps) into ``work``."""
    chains = int(post.summary["chains"])
    diff = drift_differences(states, parts.prior, setup.prior2, parts.problem, setup.problem2)
    tau, trace = relaxation_horizon(post.traces, int(post.summary["n_burnin"]))
    horizon = max(1, math.ceil(tau)) if math.isfinite(tau) else 1
    tau_mcse = horizon_mcse(post.traces[trace], int(post.summary["n_burnin"])) if trace else math.nan
    clip = getattr(kernel.params, "clip", None)
    out: dict[str, Any] = {"reference_denoiser": parts.denoiser_name, "other_denoiser": setup.denoiser_name,
                           "n_states": int(states.shape[0]), "tau_int": tau, "tau_trace": trace,
                           "tau_int_mcse": tau_mcse,
                           **bounds_with_mcse(_per_state(diff["drift_sq"], chains), n_steps=horizon,
                                              step_size=float(kernel.params.step_size), box=clip,
                                              n_steps_mcse=tau_mcse if math.isfinite(tau_mcse) else 0.0),
                           "box": list(clip) if clip is not None else None,
                           "bound_applies_to": ("the two PnP-ULA chains" if kernel.name == "pnp-ula" else
                                                f"the two Langevin diffusions ({kernel.name}'s transitions are not "
                                                "Gaussian; its discretisation error is not included)")}
    if diff["denoiser_sq"] is not None:
        m, mcse, _ = mean_and_mcse(_per_state(diff["denoiser_sq"], chains))
        d = math.sqrt(m)
        out.update(d_posterior_l2=d, d_posterior_l2_mcse=mcse / (2 * d) if d > 0 else 0.0,
                   rms_per_pixel=d / math.sqrt(states[0].numel()))
    if setup.problem2 is not None:
        out["operator_norm_difference"] = setup.operator_norm
    out["warnings"] = _warnings(post, out["ess"], "pseudometric")
    maps = {"drift_rms": diff["drift_map"].sqrt().numpy()}
    if diff["denoiser_map"] is not None:
        maps["denoiser_rms"] = diff["denoiser_map"].sqrt().numpy()
    np.savez(Path(work) / "mismatch.npz", **maps)
    return out


def run_other_chain(setup: MismatchSetup, parts, kernel, cfg, *, x0, generator_state, progress: bool = False):
    """Chain 2: the same sampler and parameters (step size, λ, box) with the other model, the
    same start and the same random stream as chain 1 (``generator_state``)."""
    from pnp_imaging.sampling import sample

    problem2 = setup.problem2 if setup.problem2 is not None else parts.problem
    prior2 = setup.prior2 if setup.prior2 is not None else parts.prior
    k2 = kernel.rebind(problem2, prior2)
    gen = torch.Generator()
    gen.set_state(generator_state)
    s, e = cfg.sampler, cfg.estimates
    return sample(problem2, prior2, k2, generator=gen, n_steps=s.n_steps, n_burnin=s.n_burnin, thin=s.thin,
                  chains=s.chains, x0=x0, init_spread=s.init_spread, credible_level=e.credible_level,
                  scales=e.scales, n_projections=e.n_projections, max_nll_rise=s.max_nll_rise, progress=progress)


def measured_distance(post1, post2) -> dict[str, float]:
    """``max_i |MMSE¹_i − MMSE²_i|`` and its RMS over pixels, with an MCSE scale for the max:
    ``max_i √(std¹_i²/ESS¹ + std²_i²/ESS²)`` (ESS: each run's smallest bulk ESS; treats the two
    runs' errors as independent, so it overstates the noise of coupled chains)."""
    diff = (post1.mmse - post2.mmse).abs()
    ess1 = post1.summary.get("ess_min") or math.nan
    ess2 = post2.summary.get("ess_min") or math.nan
    mcse = torch.sqrt(post1.std ** 2 / ess1 + post2.std ** 2 / ess2)
    return {"mmse_distance_max": float(diff.max()), "mmse_distance_rms": float(diff.pow(2).mean().sqrt()),
            "mmse_distance_max_mcse": float(mcse.max()), "other_verdict": post2.verdict,
            "other_psnr_mmse": post2.summary.get("psnr_mmse")}


def summary_keys(section: dict) -> dict[str, Any]:
    """The top-level summary keys (``docs/CONTRACT.md``) from the ``mismatch`` section."""
    keys = {"mismatch_pseudometric": "drift_pseudometric", "mismatch_tv_bound": "tv_bound",
            "mismatch_mmse_bound": "mmse_bound", "mismatch_mmse_distance": "mmse_distance_max"}
    out = {}
    for top, key in keys.items():
        if key in section:
            out[top] = section[key]
            out[top + "_mcse"] = section.get(key + "_mcse")
    return out
