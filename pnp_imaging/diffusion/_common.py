"""Helpers shared by the diffusion samplers: the denoiser behind a prior, option checks, the
Gaussian data term, noise draws and the trajectory state."""
from __future__ import annotations

from typing import NamedTuple

import torch

from pnp_imaging._checks import check_count

__all__ = ["DiffusionState", "DiffusionInfo", "denoiser_of", "gaussian_sigma", "randn", "check_unit", "check_steps",
           "start_point", "init_batch", "fresh_batch"]


class DiffusionState(NamedTuple):
    """``x``: the last batch of samples ``[B, C, H, W]`` (one per chain); ``step``: trajectories run."""

    x: torch.Tensor
    step: int


class DiffusionInfo(NamedTuple):
    """``denoiser_calls``: network evaluations per sample in this step."""

    denoiser_calls: int


def denoiser_of(prior):
    """The denoiser ``D(x, σ)`` of a :class:`~pnp_imaging.priors.ScorePrior` (its ``denoiser``)
    or a denoiser passed directly; a one-line error otherwise."""
    den = getattr(prior, "denoiser", prior)
    if not callable(den):
        raise ValueError(f"prior: expected a ScorePrior or a denoiser D(x, sigma), got {type(prior).__name__}")
    return den


def gaussian_sigma(problem, sampler: str) -> float:
    """The Gaussian noise std of ``problem`` ([0, 1] scale); refuses other noise models."""
    if not getattr(problem.noise, "quadratic_data_term", False):
        raise ValueError(f"noise: {sampler} needs Gaussian noise (a quadratic data term); got "
                         f"{type(problem.noise).__name__}")
    return float(problem.noise.sigma)


def check_unit(name: str, value, *, low_open: bool = False) -> float:
    """A number in [0, 1] (or (0, 1] with ``low_open``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0
    if not ok or (low_open and float(value) == 0.0):
        raise ValueError(f"sampler.{name}: must be a number in {'(0' if low_open else '[0'}, 1], got {value!r}")
    return float(value)


def check_steps(name: str, value, minimum: int = 2) -> int:
    try:
        return check_count(f"sampler.{name}", value, minimum)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def randn(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``N(0, I)`` of ``like``'s shape, dtype and device, from ``generator`` only."""
    from pnp_imaging.chain_rng import randn_chains

    return randn_chains(like.shape, generator, dtype=like.dtype, device=like.device)


def start_point(state: DiffusionState, problem) -> torch.Tensor:
    """``[B, C, H, W]`` copies of the problem's initial guess (what the noise is added to)."""
    x0 = problem.initial_guess().to(state.x.dtype)
    return x0.expand(state.x.shape[0], *x0.shape[1:])


def init_batch(x0: torch.Tensor, problem, prior, params) -> DiffusionState:
    """The state of a trajectory sampler (DiffPIR, DPS) holds only the last samples; ``x0``
    (``[B, C, H, W]``) fixes the batch size."""
    return DiffusionState(x=x0.clone(), step=0)


def fresh_batch(trajectory, state: DiffusionState, problem, prior, params, generator):
    """One step of a trajectory sampler: a fresh batch of samples, one ``trajectory`` per chain,
    each started from the problem's initial guess; ``params.denoiser_calls`` per sample."""
    x = trajectory(denoiser_of(prior), problem, params, start_point(state, problem), generator=generator)
    return DiffusionState(x=x, step=state.step + 1), DiffusionInfo(denoiser_calls=params.denoiser_calls)
