"""Diffusion-prior posterior samplers on the same :class:`~pnp_imaging.problem.Problem`, the same
denoiser interface ``D(x, σ)`` and the same outputs as the MCMC samplers (``docs/algorithms.md
§diffusion``).

Registered families (``pnp_imaging.sample(problem, prior, "<name>", ...)`` or ``sampler: {type:
<name>}``): ``diffpir`` (Zhu et al. 2023) and ``dps`` (Chung et al. 2023), each step one reverse
trajectory per chain, i.e. a fresh batch of draws (``SamplerSpec.independent``). The denoiser must
cover the schedule's noise levels, σ ≈ 0.005 … 79 on the [0, 1] scale (the zoo's ``edm_gray``);
:mod:`pnp_imaging.diffusion.schedule` holds the VP ↔ VE ↔ denoiser conversion.
"""
from __future__ import annotations

from pnp_imaging.diffusion import diffpir, dps, pnpdm  # noqa: F401  (registers the families)
from pnp_imaging.diffusion.schedule import ddpm_schedule, quad_timesteps, uniform_timesteps

__all__ = ["diffpir", "dps", "pnpdm", "ddpm_schedule", "quad_timesteps", "uniform_timesteps"]
