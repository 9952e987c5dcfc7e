r"""DPS: diffusion posterior sampling (Chung, Kim, Mccann, Klasky, Ye, ICLR 2023, arXiv 2209.14687,
Algorithm 1; ``docs/algorithms.md §diffusion``).

One kernel step runs one reverse trajectory per chain (``SamplerSpec.independent``). On the
papers' [−1, 1] scale and in VP coordinates (:mod:`pnp_imaging.diffusion.schedule`), from
``x_T ~ N(0, I)``, for each timestep t (``diffusion_steps`` of them, evenly spaced 999 → 0):

1. ``x̂_0 = 2 D(z_t, s_t) − 1`` with ``z_t = (x_t/√ᾱ_t + 1)/2`` (clamped: ``clip_denoised``);
2. DDPM ancestral step ``x'_{t−1} = μ_t(x_t, x̂_0) + σ̃_t ξ`` with
   ``μ_t = √ᾱ_{t−1} β_t/(1−ᾱ_t) x̂_0 + √α_t (1−ᾱ_{t−1})/(1−ᾱ_t) x_t`` and
   ``σ̃_t² = β_t (1−ᾱ_{t−1})/(1−ᾱ_t)`` (Ho et al. 2020 eq. (7); ``β_t = 1 − ᾱ_t/ᾱ_{t−1}`` when the
   timesteps are respaced);
3. ``x_{t−1} = x'_{t−1} − scale · ∇_{x_t} ‖ỹ − Ã(x̂_0)‖`` — the plain (not squared) residual
   norm on the [−1, 1] scale, as the authors' ``PosteriorSampling`` does (the paper's
   ``ζ_i ∇‖·‖²`` with ``ζ_i = ζ'/‖·‖`` is the same step with ``scale = 2ζ'``). For a linear A,
   ``ỹ − Ã(x̂̃_0) = 2(y − A x̂_0)`` in [0, 1] units. The gradient goes through the denoiser
   (autograd), per sample.

The sample is ``(x_{−1} + 1)/2`` after the last step (at t = 0, ``μ = x̂_0`` and no noise).

Defaults: 1000 steps; ``scale`` = 0.5 for inpainting and 0.3 otherwise (the authors'
``configs/*_config.yaml``: inpainting 0.5; super-resolution, Gaussian and motion deblurring 0.3).
**Deviation** (``scale: auto`` with ``diffusion_steps`` n ≠ 1000): the authors' scale is
multiplied by 1000/n, so that the n guidance steps add up to the total of their 1000 (they never
respace; each step moves ``x`` by at most ``scale`` in norm). Measured on a 128² inpainting crop
(50 % missing, σ_y = 2/255, two draws): 1000 steps at 0.5 gave 29.01 dB, 250 steps at 0.5 only
19.68 dB and 250 steps at 2.0 29.36 dB. On a schedule of a few steps the rule's large steps
overshoot (set ``scale``). Deviations: the variance is the DDPM posterior variance
σ̃_t² (the authors' U-Net learns it); the noise model must be Gaussian (their Poisson variant is
not implemented). deepinv's ``DPS`` is not used: it integrates the VP SDE with its own
data-fidelity weighting and the global RNG.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from pnp_imaging.diffusion._common import (DiffusionState, check_steps, denoiser_of, fresh_batch, gaussian_sigma,
                                           init_batch, randn)
from pnp_imaging.diffusion.schedule import check_sigma_range, ddpm_schedule, denoise, uniform_timesteps
from pnp_imaging.samplers.kernel import Kernel, SamplerSpec, register

__all__ = ["DPSOptions", "DPSParams", "auto_scale", "make_params", "init", "step", "trajectory", "build"]

#: the authors' number of timesteps, for which their guidance scales were chosen
AUTHORS_STEPS = 1000


@dataclass(frozen=True)
class DPSOptions:
    """User options. ``diffusion_steps``: timesteps per trajectory; ``scale``: guidance step
    (``"auto"``: :func:`auto_scale`); ``clip``: clamp ``D`` to [0, 1]."""

    diffusion_steps: int = 1000
    scale: float | str = "auto"
    clip: bool = True
    needs_full_range_prior: ClassVar[bool] = True


@dataclass(frozen=True)
class DPSParams:
    """Resolved: ``timesteps`` (999 → 0), ``scale``, ``clip``, ``denoiser_calls`` per sample
    (each with one backward pass through the denoiser), ``rule`` (how ``scale`` was chosen)."""

    timesteps: tuple[int, ...]
    scale: float
    clip: bool
    denoiser_calls: int
    rule: str


def auto_scale(problem, n_steps: int) -> tuple[float, str]:
    """The authors' scale for their 1000 steps (0.5 inpainting, 0.3 otherwise), times
    ``1000 / n_steps``: the guidance steps then add up to the same total on a respaced schedule."""
    inpaint = getattr(problem.operator, "observed_mask", None) is not None
    base, task = (0.5, "inpainting") if inpaint else (0.3, "not inpainting")
    scale = base * AUTHORS_STEPS / n_steps
    return scale, f"auto: {base} ({task}) x {AUTHORS_STEPS}/{n_steps} steps = {scale:.4g}"


def make_params(problem, prior, options: DPSOptions) -> DPSParams:
    """Check the options, the noise model and the denoiser's σ range (one-line errors, before any work)."""
    n = check_steps("diffusion_steps", options.diffusion_steps)
    gaussian_sigma(problem, "dps")
    if options.scale == "auto":
        scale, rule = auto_scale(problem, n)
    else:
        ok = isinstance(options.scale, (int, float)) and not isinstance(options.scale, bool)
        if not ok or not (math.isfinite(float(options.scale)) and float(options.scale) >= 0):
            raise ValueError(f"sampler.scale: must be 'auto' or a number >= 0, got {options.scale!r}")
        scale, rule = float(options.scale), "manual"
    if not isinstance(options.clip, bool):
        raise ValueError(f"sampler.clip: must be true or false, got {options.clip!r}")
    ts = tuple(uniform_timesteps(n))
    sch = ddpm_schedule()
    check_sigma_range(denoiser_of(prior), sch.s(ts[-1]), sch.s(ts[0]), "dps")
    return DPSParams(timesteps=ts, scale=scale, clip=options.clip, denoiser_calls=n, rule=rule)


init = init_batch


def _guided_x0(denoiser, problem, x: torch.Tensor, a: float, s: float, params: DPSParams):
    """``x̂̃_0(x_t)`` on [−1, 1] and ``∇_{x_t} Σ_b ‖ỹ − Ã x̂̃_0‖_b`` (step 1 and the gradient of step 3)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        d = denoise(denoiser, (x / math.sqrt(a) + 1.0) / 2.0, s, params.clip)
        r = 2.0 * (problem.y - problem.operator.A(d))
        norm = r.flatten(1).norm(dim=1).sum()
        grad = torch.autograd.grad(norm, x)[0] if params.scale > 0 else torch.zeros_like(x)
    return (2.0 * d - 1.0).detach(), grad


def trajectory(denoiser, problem, params: DPSParams, shape_like: torch.Tensor, *, generator) -> torch.Tensor:
    """One reverse trajectory per image of ``shape_like``; returns samples on [0, 1]."""
    sch, ts = ddpm_schedule(), params.timesteps
    x = randn(shape_like, generator)
    for i, t in enumerate(ts):
        a = float(sch.alpha_bar[t])
        a_prev = float(sch.alpha_bar[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        x0, grad = _guided_x0(denoiser, problem, x, a, sch.s(t), params)
        beta = 1.0 - a / a_prev
        mean = (math.sqrt(a_prev) * beta / (1.0 - a)) * x0 + (math.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a)) * x
        var = beta * (1.0 - a_prev) / (1.0 - a)
        x = (mean + math.sqrt(var) * randn(x, generator) if var > 0 else mean) - params.scale * grad
    return ((x + 1.0) / 2.0).detach()


def step(state: DiffusionState, problem, prior, params: DPSParams, *, generator):
    """A fresh batch of DPS samples (one trajectory per chain)."""
    return fresh_batch(trajectory, state, problem, prior, params, generator)


def build(problem, prior, options: DPSOptions) -> Kernel:
    return Kernel(name="dps", problem=problem, prior=prior, params=make_params(problem, prior, options),
                  init_fn=init, step_fn=step, state_type=DiffusionState)


SPEC = register(SamplerSpec(
    name="dps",
    description="DPS (Chung et al. 2023): DDPM ancestral sampling guided by the residual gradient through the denoiser",
    options=DPSOptions, build=build, independent=True,
    bias="Not a posterior sampler: on an exact Gaussian-mixture posterior it over-weights the likelier mode "
         "(0.90 vs 0.84) and shifts what the data cannot see; its intervals are not calibrated "
         "(docs/algorithms.md §diffusion)."))
