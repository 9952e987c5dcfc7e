r"""The DDPM variance-preserving schedule and its conversion to a denoiser ``D(x, σ)`` on [0, 1].

DDPM (Ho et al. 2020), as used by DiffPIR and DPS: ``β_t = linspace(1e-4, 2e-2, 1000)``,
``ᾱ_t = ∏_{s≤t}(1 − β_s)``, and on the papers' [−1, 1] image scale

    x_t = √ᾱ_t x̃_0 + √(1 − ᾱ_t) ε,   x̃_0 = 2 x_0 − 1,  x_0 ∈ [0, 1].

**VP ↔ VE ↔ denoiser** (``docs/algorithms.md §diffusion``). Dividing by √ᾱ_t gives the
variance-exploding form ``x_t/√ᾱ_t = x̃_0 + σ̄_t ε`` with ``σ̄_t = √((1 − ᾱ_t)/ᾱ_t)`` (DiffPIR's
``reduced_alpha_cumprod``); mapping [−1, 1] back to [0, 1] halves the noise:

    z_t = (x_t/√ᾱ_t + 1)/2 = x_0 + s_t ε,   s_t = σ̄_t / 2,

so the MMSE estimate is ``E[x_0 | x_t] = D(z_t, s_t)`` for a denoiser trained on [0, 1] images
with noise std ``s_t``, and ``x̂̃_0 = 2 D(z_t, s_t) − 1`` on the papers' scale (deepinv's
``DiffPIR``/``DPS`` wrap a [0, 1] denoiser the same way; reference: deepinv
``sampling/diffusion.py``). ``clip_denoised=True`` of both papers' code = clamp ``D`` to [0, 1].
The ε-prediction and score of the VP process follow: ``ε̂ = (x_t − √ᾱ_t x̂̃_0)/√(1 − ᾱ_t)``,
``∇ log p_t(x_t) = −ε̂/√(1 − ᾱ_t)``. With this schedule ``s_t`` runs from 0.005 (t = 0) to 81
(t = 999), so the denoiser must cover that range (``check_sigma_range``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["VPSchedule", "ddpm_schedule", "quad_timesteps", "uniform_timesteps", "denoise", "check_sigma_range",
           "T_TRAIN"]

#: number of DDPM training timesteps of both papers
T_TRAIN = 1000


@dataclass(frozen=True)
class VPSchedule:
    """``betas`` and ``alpha_bar`` (float64 ``[T]``) of a VP schedule; ``s(t)`` the [0, 1]-scale std."""

    betas: torch.Tensor
    alpha_bar: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.betas.numel())

    def sigma_bar(self, t: int) -> float:
        """``σ̄_t = √((1 − ᾱ_t)/ᾱ_t)`` on the [−1, 1] scale."""
        a = float(self.alpha_bar[t])
        return math.sqrt((1.0 - a) / a)

    def s(self, t: int) -> float:
        """Noise std of ``z_t = x_0 + s_t ε`` on the [0, 1] scale: ``σ̄_t / 2`` (module docstring)."""
        return 0.5 * self.sigma_bar(t)


def ddpm_schedule(n: int = T_TRAIN, beta_start: float = 1e-4, beta_end: float = 2e-2) -> VPSchedule:
    """The linear-β DDPM schedule (Ho et al. 2020, §4; DiffPIR and DPS code), in float64.

    >>> sch = ddpm_schedule()
    >>> round(sch.s(0), 4), round(sch.s(999), 1)
    (0.005, 78.7)
    """
    betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float64)
    return VPSchedule(betas=betas, alpha_bar=torch.cumprod(1.0 - betas, 0))


def quad_timesteps(n_steps: int, n_train: int = T_TRAIN) -> list[int]:
    """DiffPIR's ``skip_type='quad'`` timesteps, from ``n_train − 1`` down to 0: ``seq =
    int(√linspace(0, n_train², n_steps))`` with the last entry reduced by 1, and ``t_i = n_train −
    1 − seq[i]`` (DiffPIR ``main_ddpir_deblur.py``; more steps at low noise).

    >>> quad_timesteps(5)
    [999, 499, 292, 133, 0]
    """
    seq = [int(math.sqrt(v)) for v in torch.linspace(0, float(n_train) ** 2, n_steps, dtype=torch.float64).tolist()]
    seq[-1] -= 1
    return [n_train - 1 - s for s in seq]


def uniform_timesteps(n_steps: int, n_train: int = T_TRAIN) -> list[int]:
    """``n_steps`` timesteps evenly spaced from ``n_train − 1`` down to 0 (DDPM respacing)."""
    if n_steps == 1:
        return [n_train - 1]
    return [int(round((n_train - 1) * (1.0 - k / (n_steps - 1)))) for k in range(n_steps)]


def denoise(denoiser, z: torch.Tensor, s: float, clip: bool = True) -> torch.Tensor:
    """``E[x_0 | z]`` for ``z = x_0 + s ε`` on [0, 1]: ``D(z, s)``, clamped to [0, 1] when ``clip``
    (the papers' ``clip_denoised=True``)."""
    out = denoiser(z, s)
    return out.clamp(0.0, 1.0) if clip else out


def check_sigma_range(denoiser, lo: float, hi: float, sampler: str) -> None:
    """One-line refusal, before any work, of a denoiser whose ``sigma_range`` does not contain
    ``[lo, hi]`` (the [0, 1]-scale noise levels the schedule calls it at)."""
    rng = getattr(denoiser, "sigma_range", None)
    if rng is None or getattr(denoiser, "blind", False):
        return
    a, b = float(rng[0]), float(rng[1])
    if a > lo * (1 + 1e-6) or b < hi * (1 - 1e-6):
        name = getattr(denoiser, "name", type(denoiser).__name__)
        raise ValueError(f"prior.denoiser: {name!r} covers sigma in [{a:.4g}, {b:.4g}] but {sampler}'s schedule calls "
                         f"it at sigma in [{lo:.4g}, {hi:.4g}] ([0,1] scale); use a full-range model such as "
                         f"'fullrange_gray' (or leave prior.denoiser unset)")
