"""Diffusion-prior posterior samplers on the same :class:`~pnp_imaging.problem.Problem`, the same
denoiser interface ``D(x, σ)`` and the same outputs as the MCMC samplers (``docs/algorithms.md
§diffusion``).

Registered families (``pnp_imaging.sample(problem, prior, "<name>", ...)`` or ``sampler: {type:
<name>}``):

* ``diffpir`` (Zhu et al. 2023) and ``dps`` (Chung et al. 2023): each step is one reverse
  trajectory per chain, i.e. a fresh batch of draws (``SamplerSpec.independent``); approximations
  of the posterior;
* ``pnp-dm`` (Wu et al. 2024): a split-Gibbs Markov chain (exact Gaussian likelihood step,
  diffusion denoising-posterior step, annealed coupling), asymptotically exact as ``ρ_min → 0``.

The denoiser must cover the noise levels the schedule calls it at (σ ≈ 0.005 … 79 on the [0, 1]
scale for the DDPM schedule; the zoo's ``edm_gray``). :mod:`~pnp_imaging.diffusion.schedule` holds
the VP ↔ VE ↔ denoiser conversion, :mod:`~pnp_imaging.diffusion.guidance` particle guidance,
:mod:`~pnp_imaging.diffusion.constraint` the Metropolis box, :mod:`~pnp_imaging.diffusion.coupling`
PnP-DM's coupling in closed form for an exact stationary Gaussian prior.
"""
from __future__ import annotations

from pnp_imaging.diffusion import diffpir, dps, pnpdm  # noqa: F401  (registers the families)
from pnp_imaging.diffusion.schedule import ddpm_schedule, quad_timesteps, uniform_timesteps

__all__ = ["diffpir", "dps", "pnpdm", "ddpm_schedule", "quad_timesteps", "uniform_timesteps"]
