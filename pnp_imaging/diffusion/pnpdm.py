r"""PnP-DM: a diffusion model as plug-and-play prior inside a split-Gibbs sampler (Wu, Sun, Chen,
Zhang, Yue, Bouman, NeurIPS 2024, arXiv 2405.18782, Algorithm 1; related: PnP-SGS, Coeurdoux,
Dobigeon, Chainais, IEEE TIP 2024; ``docs/algorithms.md §diffusion``).

Augmented target ``π_ρ(x, z) ∝ p(y | z) N(z; x, ρ² I) p(x)``. One kernel step is one Gibbs sweep:

1. **likelihood step** ``z ~ p(z | x, y) ∝ p(y | z) N(z; x, ρ² I)``, exact for Gaussian noise: by
   perturbation (Papandreou & Yuille 2010) ``z = (I + γAᵀA)⁻¹(x + ρξ₁ + γAᵀ(y + σξ₂))``,
   ``γ = ρ²/σ²`` — mean and covariance ``ρ²(I + γAᵀA)⁻¹`` of the exact conditional — computed
   with the operator's exact ``prox_l2`` (FFT for circular blur, pixel-wise for inpainting);
2. **prior step** ``x ~ p(x | z) ∝ p(x) N(z; x, ρ² I)``: the posterior of a Gaussian denoising
   problem at noise level ρ, run as the reverse diffusion from level ρ with state ``z`` through the
   levels ``σ_k < ρ`` of the EDM grid ``σ_k = (σ_max^{1/7} + k/(N−1)(σ_min^{1/7} − σ_max^{1/7}))^7``
   (Karras et al. 2022 eq. (5)), by Euler steps of the reverse SDE (``mode="sde"``)
   ``x ← x + λ(σ_k − σ_{k+1})(D(x, σ_k) − x)/σ_k + √(2σ_k(σ_k − σ_{k+1})) ξ`` with λ = 2
   (no noise on the last step to σ = 0), or of the probability-flow ODE (``mode="pfode"``, λ = 1,
   no noise; deterministic, so not a sampler of p(x | z)). One denoiser call per grid step.

Deviation (stated): the authors start the prior step at the first grid level below ρ, i.e.
treat ``z`` as less noisy than it is (by up to one grid spacing, ~11 % at ρ = 0.1 with N = 100),
which under-shrinks: for a Gaussian prior the posterior-mean gain came out 0.883 instead of
0.862. We insert ρ as the first level (one more denoiser call per sweep).

Deviation (stated; ``clip: false`` is the authors' code): the prior step uses ``D`` clamped to
[0, 1], as DiffPIR's and DPS's code do (``clip_denoised``). The MMSE denoiser of a prior on
[0, 1]^d lies in that box (a conditional mean lies in the convex hull of the support), so the
clamp only corrects a network's error; on the Gaussian-mixture tests, whose priors leave the box,
it is off. Without it the chain has no restoring force on what the blur cannot see: on a held-out
256² photo (9×9 uniform blur, the zoo's composite full-range prior) a chain started at the MAP
left the image range within 10 sweeps at ρ_min and reached values of 16 after 60
(``-log p(y|x)`` from 6e5, the level the marginal at ρ_min predicts, to 6e8); clamped, it stayed at
that level with every pixel in [−0.05, 1.05].

Coupling annealed as in the authors' code: ``ρ_i = max(ρ₀ rⁱ, ρ_min)`` at sweep ``i`` (0-based).
Only ``ρ_min > 0`` is sampled: the x-marginal of ``π_ρ`` is the posterior under the inflated
noise covariance ``σ²I + ρ²AAᵀ`` (integrate z out), so the scheme is exact as ``ρ_min → 0``;
keep sweeps after the annealing (``n_burnin ≥`` :attr:`PnPDMParams.anneal_sweeps`).

Defaults (the authors' ``commands.sh`` for deblurring and super-resolution, ``Denoiser_EDM``),
converted to our [0, 1] scale (half their [−1, 1] values): ``ρ₀ = 5``, ``r = 0.9``,
``ρ_min = 0.15``, ``σ ∈ [0.001, 40]``, ``N = 100``, mode ``sde``. Their runs use 100 sweeps, 40
of burn-in and 20 evenly spaced samples per chain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from pnp_imaging.diffusion._common import check_steps, denoiser_of, gaussian_sigma, randn
from pnp_imaging.diffusion.schedule import check_sigma_range, denoise
from pnp_imaging.samplers.kernel import Kernel, SamplerSpec, register

__all__ = ["PnPDMOptions", "PnPDMParams", "PnPDMState", "PnPDMInfo", "edm_grid", "make_params", "init", "step",
           "likelihood_step", "prior_step", "build"]


class PnPDMState(NamedTuple):
    """``x``: chains ``[B, C, H, W]``; ``z``: the auxiliary variable; ``step``: sweeps done."""

    x: torch.Tensor
    z: torch.Tensor
    step: int


class PnPDMInfo(NamedTuple):
    """``rho``: coupling of this sweep; ``denoiser_calls``: network calls of its prior step."""

    rho: float
    denoiser_calls: int


@dataclass(frozen=True)
class PnPDMOptions:
    """User options ([0, 1] scale). ``rho0``, ``rho_decay``, ``rho_min``: annealing of ρ;
    ``grid_steps``, ``sigma_min``, ``sigma_max``: the EDM grid of the prior step; ``mode``:
    ``"sde"`` or ``"pfode"``; ``clip``: clamp ``D`` to [0, 1] in the prior step (module docstring;
    ``False`` = the authors' code)."""

    rho0: float = 5.0
    rho_decay: float = 0.9
    rho_min: float = 0.15
    grid_steps: int = 100
    sigma_min: float = 0.001
    sigma_max: float = 40.0
    mode: str = "sde"
    clip: bool = True
    needs_full_range_prior: ClassVar[bool] = True


@dataclass(frozen=True)
class PnPDMParams:
    """Resolved: the options, ``anneal_sweeps`` (first sweep at ``ρ_min``) and ``denoiser_calls``
    (per sweep at ``ρ_min``, i.e. per kept sample and chain)."""

    rho0: float
    rho_decay: float
    rho_min: float
    grid: tuple[float, ...]
    mode: str
    clip: bool
    anneal_sweeps: int
    denoiser_calls: int

    def rho(self, i: int) -> float:
        return max(self.rho0 * self.rho_decay**i, self.rho_min)


def edm_grid(n: int, sigma_min: float, sigma_max: float, p: float = 7.0) -> tuple[float, ...]:
    """Karras et al. 2022 eq. (5): ``n`` levels from ``sigma_max`` down to ``sigma_min``, then 0."""
    a, b = sigma_max ** (1 / p), sigma_min ** (1 / p)
    return tuple((a + k / (n - 1) * (b - a)) ** p for k in range(n)) + (0.0,)


def _start(grid: tuple[float, ...], rho: float) -> int:
    """Index of the first grid level below ``rho`` (the authors' ``i_start``)."""
    return next(k for k, s in enumerate(grid) if s < rho)


def _levels(grid: tuple[float, ...], rho: float) -> tuple[float, ...]:
    """The noise levels of a prior step at coupling ρ: ρ itself, then the grid levels below it
    (deviation from the authors, who start at the first level below ρ: see module docstring)."""
    return (rho,) + grid[_start(grid, rho):]


def _check_options(o: PnPDMOptions) -> None:
    for name in ("rho0", "rho_min", "sigma_min", "sigma_max"):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"sampler.{name}: must be a positive number, got {v!r}")
    if not (isinstance(o.rho_decay, (int, float)) and 0 < o.rho_decay <= 1):
        raise ValueError(f"sampler.rho_decay: must be in (0, 1], got {o.rho_decay!r}")
    if not o.rho_min <= o.rho0:
        raise ValueError(f"sampler.rho_min: must be <= rho0 = {o.rho0}, got {o.rho_min}")
    if not o.sigma_min < o.rho_min <= o.sigma_max:
        raise ValueError(f"sampler.rho_min: must be in (sigma_min, sigma_max] = ({o.sigma_min}, {o.sigma_max}], "
                         f"got {o.rho_min}")
    if o.mode not in ("sde", "pfode"):
        raise ValueError(f"sampler.mode: must be 'sde' or 'pfode', got {o.mode!r}")
    if not isinstance(o.clip, bool):
        raise ValueError(f"sampler.clip: must be true or false, got {o.clip!r}")


def make_params(problem, prior, options: PnPDMOptions) -> PnPDMParams:
    """Check the options, the noise model, the exact likelihood step and the denoiser's σ range."""
    n = check_steps("grid_steps", options.grid_steps)
    _check_options(options)
    gaussian_sigma(problem, "pnp-dm")
    if not problem.has_data_prox:
        raise ValueError(f"operator: pnp-dm needs an exact Gaussian likelihood step (inpainting, circular blur or "
                         f"identity); got {type(problem.operator).__name__}")
    grid = edm_grid(n, float(options.sigma_min), float(options.sigma_max))
    check_sigma_range(denoiser_of(prior), grid[-2], float(options.rho0), "pnp-dm")
    rho0, r, rmin = float(options.rho0), float(options.rho_decay), float(options.rho_min)
    anneal = 0 if rho0 <= rmin else (math.ceil(math.log(rmin / rho0) / math.log(r)) if r < 1 else 0)
    return PnPDMParams(rho0=rho0, rho_decay=r, rho_min=rmin, grid=grid, mode=options.mode, clip=options.clip,
                       anneal_sweeps=anneal, denoiser_calls=len(_levels(grid, rmin)) - 1)


def init(x0: torch.Tensor, problem, prior, params: PnPDMParams) -> PnPDMState:
    return PnPDMState(x=x0.clone(), z=x0.clone(), step=0)


def likelihood_step(problem, x: torch.Tensor, rho: float, *, generator) -> torch.Tensor:
    """``z ~ p(z | x, y)`` exactly, by perturbation (module docstring, step 1)."""
    sigma = float(problem.noise.sigma)
    y = problem.y.expand(x.shape[0], *problem.y.shape[1:])
    y_pert = y + sigma * randn(y, generator)
    return problem.operator.prox_l2(x + rho * randn(x, generator), y_pert, rho**2 / sigma**2)


@torch.no_grad()
def prior_step(denoiser, z: torch.Tensor, rho: float, params: PnPDMParams, *, generator) -> tuple[torch.Tensor, int]:
    """``x ~ p(x | z)`` by the reverse diffusion from noise level ρ (module docstring, step 2);
    returns the sample and the number of denoiser calls."""
    levels, lam = _levels(params.grid, rho), (2.0 if params.mode == "sde" else 1.0)
    x = z
    for s, s_next in zip(levels[:-1], levels[1:]):
        x_new = x + lam * (s - s_next) / s * (denoise(denoiser, x, s, params.clip) - x)
        if params.mode == "sde" and s_next > 0:
            x_new = x_new + math.sqrt(2.0 * s * (s - s_next)) * randn(x, generator)
        x = x_new
    return x, len(levels) - 1


def step(state: PnPDMState, problem, prior, params: PnPDMParams, *, generator):
    """One Gibbs sweep at ``ρ_i`` (``i = state.step``)."""
    rho = params.rho(state.step)
    z = likelihood_step(problem, state.x, rho, generator=generator)
    x, calls = prior_step(denoiser_of(prior), z, rho, params, generator=generator)
    return PnPDMState(x=x, z=z, step=state.step + 1), PnPDMInfo(rho=rho, denoiser_calls=calls)


def build(problem, prior, options: PnPDMOptions) -> Kernel:
    return Kernel(name="pnp-dm", problem=problem, prior=prior, params=make_params(problem, prior, options),
                  init_fn=init, step_fn=step, state_type=PnPDMState)


SPEC = register(SamplerSpec(
    name="pnp-dm",
    description="PnP-DM (Wu et al. 2024): split Gibbs, exact Gaussian likelihood step + diffusion denoising-posterior step",
    options=PnPDMOptions, build=build, independent=False,
    nll_guard=False,  # no step size to blow up; x's misfit under π_ρ is not the posterior's (§divergence-guards)
    bias="Samples the posterior under the inflated noise covariance sigma^2 I + rho_min^2 A A^T (exact only as "
         "rho_min -> 0), so its intervals are wider than the posterior's; the prior step's Euler grid adds a "
         "first-order error (variance x1.075 at 100 levels; docs/algorithms.md §diffusion)."))
