r"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu, Zhang, Liang,
Cao, Wen, Timofte, Van Gool, CVPR Workshops (NTIRE) 2023, arXiv 2305.08995, Algorithm 1;
``docs/algorithms.md §diffusion``).

One kernel step runs one reverse trajectory per chain and returns a fresh batch of samples
(``SamplerSpec.independent``). With ``z_t = x_0 + s_t ε`` the [0, 1]-scale variance-exploding
form of the DDPM state (:mod:`pnp_imaging.diffusion.schedule`), each of the ``diffusion_steps``
timesteps ``t_i`` (DiffPIR's quadratic spacing, 999 → 0) does

1. ``x̂_0 = D(z_{t_i}, s_{t_i})`` clamped to [0, 1] (eq. (11): the prior sub-problem);
2. data sub-problem (eq. (12)): ``x̂_0 ← argmin_x ‖y − Ax‖² + ρ_t ‖x − x̂_0‖²`` with
   ``ρ_t = λ σ_n² / σ̄_t²`` (σ_n the noise std on [0, 1], floored at 0.001; σ̄_t = 2 s_t on the
   papers' [−1, 1] scale, as in the authors' code). Exact for Gaussian noise with circular blur,
   inpainting or identity (``problem.data_prox``: FFT / pixel-wise); otherwise one linearised
   step ``x̂_0 − γ ∇f_y(x̂_0)`` with ``γ = min(σ_n²/ρ_t, 1/L_y)``;
3. ``ε̂ = (z_{t_i} − x̂_0)/s_{t_i}``, ``z_{t_{i+1}} = x̂_0 + s_{t_{i+1}}(√(1−ζ) ε̂ + √ζ ξ)`` (eq. (15)
   with η = 0, as in the code).

The last timestep (t = 0) makes no data step and no update: its state ``z_0`` is the sample
(the authors' code; its denoiser call is skipped since its output is unused), so a trajectory
costs ``diffusion_steps − 1`` denoiser calls.

Defaults: ``diffusion_steps = 100``, ``λ = 7``, ``ζ = 0.3`` — the values the authors'
``main_ddpir_deblur.py`` runs (its sweep ``lambdas = [lambda_*i for i in range(7,8)]``,
``zeta*i for i in range(3,4)`` over ``lambda_=1, zeta=0.1``); their inpainting script uses
``λ = 1, ζ = 1`` with 20 steps. Note the scales: on a consistent [0, 1] scale the prior
sub-problem's posterior std is ``s_t = σ̄_t/2``, so the Bayes-consistent ρ is ``4σ_n²/σ̄_t²``, i.e.
``λ = 4``.

Particle guidance (``guidance = c > 0``, Corso et al. 2024; :mod:`pnp_imaging.diffusion.guidance`):
the chains of a batch repel each other; the score gets ``α_t ∇log Φ_t`` with ``α_t = c s_t²`` (the
paper's ``α_t ∝ σ_t²`` form), i.e. ``x̂_0 += c s_t⁴ R(z)``. Guided draws are not independent
posterior samples (no intervals or coverage from them).

Deviations (stated): the start is ``z_T = x_init + s_T ξ`` with ``x_init`` the problem's initial
guess (the code's ``√(ᾱ_T/ᾱ_{t_y})(2y − 1)`` term has weight ``√ᾱ_T ≈ 0.006``); no final paste of
the observed pixels for inpainting (a sample keeps its own noise model). deepinv's ``DiffPIR``
is not used: it draws from the global RNG, takes deepinv physics and runs one image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from pnp_imaging.diffusion._common import (DiffusionState, check_steps, check_unit, denoiser_of, fresh_batch,
                                           gaussian_sigma, init_batch, randn)
from pnp_imaging.diffusion.guidance import rbf_repulsion
from pnp_imaging.diffusion.schedule import check_sigma_range, ddpm_schedule, denoise, quad_timesteps
from pnp_imaging.samplers.kernel import Kernel, SamplerSpec, register

__all__ = ["DiffPIROptions", "DiffPIRParams", "make_params", "init", "step", "trajectory", "build"]

_SIGMA_FLOOR = 0.001


@dataclass(frozen=True)
class DiffPIROptions:
    """User options (config ``sampler:`` keys). ``diffusion_steps``: timesteps per trajectory;
    ``lam``: λ of ρ_t; ``zeta``: ζ ∈ [0, 1] (0: DDIM-like, 1: full re-noising); ``clip``: clamp
    ``D`` to [0, 1] (the papers' ``clip_denoised``); ``guidance``: particle-guidance weight c ≥ 0
    (repulsion across the chains, α_t = c s_t²; 0 = independent draws)."""

    diffusion_steps: int = 100
    lam: float = 7.0
    zeta: float = 0.3
    clip: bool = True
    guidance: float = 0.0
    #: the config's default prior for this family is the zoo's full-range model
    needs_full_range_prior: ClassVar[bool] = True


@dataclass(frozen=True)
class DiffPIRParams:
    """Resolved parameters: ``timesteps`` (DDPM indices, 999 → 0), ``lam``, ``zeta``, ``clip``,
    ``sigma_n`` (noise std used in ρ_t, floored), ``data_step`` (``"prox"`` or ``"gradient"``),
    ``denoiser_calls`` per sample."""

    timesteps: tuple[int, ...]
    lam: float
    zeta: float
    clip: bool
    guidance: float
    sigma_n: float
    data_step: str
    denoiser_calls: int


def make_params(problem, prior, options: DiffPIROptions) -> DiffPIRParams:
    """Check the options, the noise model and the denoiser's σ range (one-line errors, before any work)."""
    n = check_steps("diffusion_steps", options.diffusion_steps)
    lam = float(options.lam)
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"sampler.lam: must be a positive number, got {options.lam!r}")
    zeta = check_unit("zeta", options.zeta)
    if not isinstance(options.clip, bool):
        raise ValueError(f"sampler.clip: must be true or false, got {options.clip!r}")
    guidance = options.guidance
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not (0 <= guidance < math.inf):
        raise ValueError(f"sampler.guidance: must be a number >= 0 (0: independent draws), got {guidance!r}")
    sigma_n = gaussian_sigma(problem, "diffpir")
    ts = tuple(quad_timesteps(n))
    sch = ddpm_schedule()
    check_sigma_range(denoiser_of(prior), sch.s(ts[-2]), sch.s(ts[0]), "diffpir")
    return DiffPIRParams(timesteps=ts, lam=lam, zeta=zeta, clip=options.clip, guidance=float(guidance),
                         sigma_n=max(sigma_n, _SIGMA_FLOOR),
                         data_step="prox" if problem.has_data_prox else "gradient", denoiser_calls=n - 1)


init = init_batch


def data_step(problem, x0: torch.Tensor, s: float, params: DiffPIRParams) -> torch.Tensor:
    """``argmin_x ‖y − Ax‖²/(2σ²) + ‖x − x̂_0‖²/(2τ)`` with ``τ = σ²/ρ_t``, ``ρ_t = λσ_n²/(2s)²``
    (module docstring, step 2): exact prox, or one gradient step of size ``min(τ, 1/L_y)``."""
    rho = params.lam * params.sigma_n**2 / (2.0 * s) ** 2
    tau = float(problem.noise.sigma) ** 2 / rho
    if params.data_step == "prox":
        return problem.data_prox(x0, tau)
    return x0 - min(tau, 1.0 / problem.data_lipschitz) * problem.data_grad(x0)


@torch.no_grad()
def trajectory(denoiser, problem, params: DiffPIRParams, start: torch.Tensor, *, generator) -> torch.Tensor:
    """One reverse trajectory for every image of ``start`` (module docstring); returns ``z_0``."""
    sch, ts = ddpm_schedule(), params.timesteps
    z = start + sch.s(ts[0]) * randn(start, generator)
    for i in range(len(ts) - 1):
        s, s_next = sch.s(ts[i]), sch.s(ts[i + 1])
        x0 = denoise(denoiser, z, s, params.clip)
        if params.guidance > 0:  # score + α_t ∇log Φ_t with α_t = c s²: x̂_0 moves by s² α_t R (Corso et al. 2024)
            x0 = x0 + params.guidance * s**4 * rbf_repulsion(z)
        x0 = data_step(problem, x0, s, params)
        eps = (z - x0) / s
        z = x0 + s_next * (math.sqrt(1.0 - params.zeta) * eps + math.sqrt(params.zeta) * randn(z, generator))
    return z


def step(state: DiffusionState, problem, prior, params: DiffPIRParams, *, generator):
    """A fresh batch of DiffPIR samples (one trajectory per chain)."""
    return fresh_batch(trajectory, state, problem, prior, params, generator)


def build(problem, prior, options: DiffPIROptions) -> Kernel:
    return Kernel(name="diffpir", problem=problem, prior=prior, params=make_params(problem, prior, options),
                  init_fn=init, step_fn=step, state_type=DiffusionState)


SPEC = register(SamplerSpec(
    name="diffpir",
    description="DiffPIR (Zhu et al. 2023): diffusion prior + closed-form data step; one trajectory per sample",
    options=DiffPIROptions, build=build, independent=True,
    bias="Not a posterior sampler: on an exact Gaussian-mixture posterior it under-weights the likelier mode "
         "(0.61 vs 0.84) and over-disperses; its intervals are not calibrated (docs/algorithms.md §diffusion)."))
