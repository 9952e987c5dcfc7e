r"""Continuation MAP: a DPIR-type σ schedule down to the prior's √ε, then deterministic
forward–backward steps on the target potential with a stopping rule (``docs/algorithms.md §map-continuation``).

Target: a stationary point of the posterior potential of PnP-SGD (``§pnp-sgd``)

.. math::  U(x) = f_y(x) - \alpha \log p_\varepsilon(x),\qquad
           \nabla U(x) = \nabla f_y(x) + \tfrac{\alpha}{\varepsilon}\big(x - D(x, \sqrt\varepsilon)\big).

**Stage 1, continuation** (Zhang et al. 2021, DPIR, half-quadratic splitting with a decreasing
denoiser level): for the levels :math:`\sigma_1 > \dots > \sigma_K > \sqrt\varepsilon`,

.. math::  x_{k} = \Pi_C\big(\mathrm{prox}_{(\sigma_k^2/\alpha) f_y}(D(x_{k-1}, \sigma_k))\big),  \tag{C}

i.e. the half-quadratic-splitting step for :math:`f_y` and the prior at level :math:`\sigma_k`, coupled
by :math:`\alpha\|x - z\|^2/(2\sigma_k^2)` with :math:`z = D(x, \sigma_k)`; at :math:`\sigma_k = \sqrt\varepsilon` a fixed point of (C) is
a stationary point of U (``§map-continuation``). Levels are log-spaced (as in DPIR) from
``sigma_max`` (clipped to the denoiser's ``sigma_range``); :func:`auto_params` refuses a
denoiser with no level above √ε.

**Stage 2, target**: the deterministic proximal-gradient step of PnP-SGD (perturbation 0,
constant step)

.. math::  x_{j+1} = \Pi_C\big(\mathrm{prox}_{\delta f_y}(x_j + \delta\,\tfrac{\alpha}{\varepsilon}(D_\varepsilon(x_j) - x_j))\big),
           \qquad \delta = \text{step\_fraction}\cdot\varepsilon/(\alpha L),  \tag{T}

whose fixed points are exactly the stationary points of U. Stops when the relative change
:math:`\|x_{j+1} - x_j\|/\|x_j\|` stays below ``tol`` for ``patience`` steps, when the trapezoidal
estimate of the change of U (no extra denoiser call)

.. math::  \Delta U_j \approx \tfrac12\langle \nabla U(x_j) + \nabla U(x_{j+1}),\, x_{j+1} - x_j\rangle  \tag{O}

is positive for ``patience`` consecutive steps (the step no longer descends U; the iterate of
lowest estimated U is returned), at the budget ``max_target_steps``, or on divergence. One
denoiser call per iteration of either stage. The budget is short on purpose: with
``drunet_gray`` at ε = (5/255)² the iterates of (T) keep descending U while their PSNR falls
(measured, ``§map-continuation``), so a long stage 2 is not better.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from pnp_imaging.optim.pnp_sgd import MAPResult, SGDState

__all__ = ["ContinuationParams", "ContinuationInfo", "schedule", "auto_params", "continuation_step", "target_step",
           "run_continuation", "SIGMA_MAX", "N_LEVELS", "MAX_TARGET_STEPS"]

#: first continuation level (8-bit units 25/255); DPIR starts at 49/255 (see §map-continuation)
SIGMA_MAX = 25.0 / 255.0
#: number of continuation levels above √ε
N_LEVELS = 8
#: default budget of the target stage
MAX_TARGET_STEPS = 8


@dataclass(frozen=True)
class ContinuationParams:
    """``sigmas``: stage-1 levels (decreasing, all > √ε; may be empty); ``step_size``: δ of (T).
    ``splitting`` and ``perturbation`` are fixed (proximal, 0) and kept for the shape of PnP-SGD's."""

    sigmas: tuple[float, ...]
    step_size: float
    max_target_steps: int = MAX_TARGET_STEPS
    box: tuple[float, float] | None = (-1.0, 2.0)
    splitting: str = "proximal"
    perturbation: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"map.step_fraction: the target step must be a positive number, got {self.step_size}")
        if any(not (math.isfinite(s) and s > 0) for s in self.sigmas) or list(self.sigmas) != sorted(self.sigmas, reverse=True):
            raise ValueError(f"map.sigma_max: continuation levels must be positive and decreasing, got {self.sigmas}")
        if isinstance(self.max_target_steps, bool) or not isinstance(self.max_target_steps, int) or self.max_target_steps < 0:
            raise ValueError(f"map.target_steps: must be an int >= 0, got {self.max_target_steps!r}")


@dataclass(frozen=True)
class ContinuationInfo:
    """Per-iteration record: ``stage`` (``"continuation"`` / ``"target"``), ``sigma`` (denoiser
    level), ``rel_change``, ``data_nll``, ``grad_norm`` (‖∇U‖ at the input, target only, else NaN)
    and ``delta_u`` (estimate (O) of the previous target step, NaN when unknown)."""

    stage: str
    sigma: float
    rel_change: float
    data_nll: float
    grad_norm: float = math.nan
    delta_u: float = math.nan


def schedule(prior, *, sigma_max: float = SIGMA_MAX, n_levels: int = N_LEVELS) -> tuple[float, ...]:
    """Levels ``σ_1 > … > σ_K > √ε`` log-spaced between ``min(sigma_max, σ_hi)`` and √ε (the last,
    √ε, excluded: it is the target stage), where ``σ_hi`` is the top of the denoiser's
    ``sigma_range``; empty when that is not above √ε (a fixed-level denoiser) or ``n_levels`` is 0."""
    target = prior.sigma
    rng = getattr(prior.denoiser, "sigma_range", None)
    top = min(float(sigma_max), float(rng[1])) if rng is not None else float(sigma_max)
    if n_levels <= 0 or top <= target * (1 + 1e-6):
        return ()
    ratio = math.log(top / target)
    return tuple(target * math.exp(ratio * (1 - k / n_levels)) for k in range(n_levels))


def auto_params(problem, prior, *, sigma_max: float = SIGMA_MAX, n_levels: int = N_LEVELS,
                step_fraction: float = 1.0, max_target_steps: int = MAX_TARGET_STEPS,
                box: tuple[float, float] | None = (-1.0, 2.0)) -> ContinuationParams:
    """Levels from :func:`schedule`; δ = step_fraction · ε/(αL) (PnP-SGD's proximal δ₀).
    Raises before any work when the data term has no exact prox (stage 1 and (T) need it) or
    when there is no level above √ε (a single-level denoiser: measured no faster than PnP-SGD and
    up to 0.6 dB worse on inpainting, ``§map-continuation``)."""
    if not problem.has_data_prox:
        raise ValueError("map.type: continuation needs an exact data prox (Gaussian noise with inpainting, circular "
                         "blur or identity); use map.type: pnp-sgd")
    sigmas = schedule(prior, sigma_max=sigma_max, n_levels=n_levels)
    if not sigmas:
        name = getattr(prior.denoiser, "name", type(prior.denoiser).__name__)
        raise ValueError(f"map.type: continuation needs denoiser levels above sqrt(eps) = {prior.sigma:.4g} "
                         f"({name}: sigma_range {getattr(prior.denoiser, 'sigma_range', None)}, map.levels = {n_levels}, "
                         f"map.sigma_max = {sigma_max:.4g}); use map.type: pnp-sgd or a noise-conditional denoiser")
    return ContinuationParams(sigmas=sigmas, step_size=step_fraction / prior.lipschitz,
                              max_target_steps=max_target_steps, box=box)


def _clamp(x: torch.Tensor, box) -> torch.Tensor:
    return x if box is None else x.clamp_(box[0], box[1])


def _rel(new: torch.Tensor, old: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(new - old) / torch.linalg.vector_norm(old).clamp_min(1e-12))


def continuation_step(x: torch.Tensor, problem, prior, sigma: float, box) -> torch.Tensor:
    """Step (C): ``Π_C(prox_{(σ²/α) f_y}(D(x, σ)))``; one denoiser call."""
    with torch.no_grad():
        z = prior.denoiser(x, float(sigma))
    return _clamp(problem.data_prox(z, sigma * sigma / prior.alpha), box)


def target_step(x: torch.Tensor, problem, prior, params: ContinuationParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Step (T) from ``x``; returns ``(x_next, ∇U(x))`` (the gradient serves estimate (O)). One call."""
    score = prior.score(x)
    delta = params.step_size
    x_new = _clamp(problem.data_prox(x + delta * score, delta), params.box)
    return x_new, problem.data_grad(x) - score


def _run_stage1(problem, prior, x, params, history, on_step, limit):
    """Stage 1; returns ``(x, diverged)``."""
    for sigma in params.sigmas:
        x_new = continuation_step(x, problem, prior, sigma, params.box)
        if not torch.isfinite(x_new).all() or float(torch.linalg.vector_norm(x_new)) > limit:
            return x, True
        info = ContinuationInfo("continuation", sigma, _rel(x_new, x), float(problem.data_nll(x_new).sum()))
        x = x_new
        history.append(info)
        if on_step is not None:
            on_step(SGDState(x, len(history)), info)
    return x, False


class _Target:
    """Stage-2 bookkeeping: the estimate (O) summed into U − U(x_start), the best iterate by it,
    and the two stopping counters."""

    def __init__(self, x: torch.Tensor):
        self.u, self.best_u, self.best_x = 0.0, 0.0, x
        self.prev_x = self.prev_g = None
        self.calm = self.ascent = 0

    def record(self, x: torch.Tensor, g: torch.Tensor) -> float:
        """``x`` with its gradient ``g`` (x_j, ∇U(x_j)); returns ΔU_{j−1} (NaN at j = 0)."""
        du = math.nan
        if self.prev_x is not None:
            du = 0.5 * float(torch.sum((self.prev_g + g) * (x - self.prev_x)))
            self.u += du
            self.ascent = self.ascent + 1 if du > 0 else 0
            if self.u < self.best_u:
                self.best_u, self.best_x = self.u, x
        self.prev_x, self.prev_g = x, g
        return du


def _run_stage2(problem, prior, x, params, n_target, history, on_step, limit, tol, patience):
    """Stage 2; returns ``(x, stop_reason)``: the iterate of lowest estimated U seen."""
    book = _Target(x)
    for _ in range(n_target):
        x_new, g = target_step(x, problem, prior, params)
        du = book.record(x, g)
        if not torch.isfinite(x_new).all() or float(torch.linalg.vector_norm(x_new)) > limit:
            return book.best_x, "divergence"
        rel = _rel(x_new, x)
        info = ContinuationInfo("target", prior.sigma, rel, float(problem.data_nll(x_new).sum()),
                                float(torch.linalg.vector_norm(g)), du)
        x = x_new
        history.append(info)
        if on_step is not None:
            on_step(SGDState(x, len(history)), info)
        book.calm = book.calm + 1 if rel < tol else 0
        if book.calm >= patience:
            return x, "tolerance"
        if book.ascent >= patience:
            return book.best_x, "objective"
    return (x if book.best_x is book.prev_x else book.best_x), "max_iterations"


def run_continuation(problem, prior, x0: torch.Tensor, *, n_steps: int, params: ContinuationParams,
                     tol: float = 1e-5, patience: int = 3, explode: float = 1e3,
                     on_step: Callable[[SGDState, ContinuationInfo], None] | None = None) -> MAPResult:
    """Stage 1 then stage 2 (module docstring), at most ``n_steps`` denoiser calls in all
    (stage 2 also at most ``params.max_target_steps``). ``stop_reason``: ``"tolerance"``,
    ``"objective"`` (estimate (O) rose ``patience`` times in a row: the lowest-U iterate is
    returned), ``"max_iterations"`` or ``"divergence"`` (last finite iterate)."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"map.n_steps: must be a positive int, got {n_steps!r}")
    limit = explode * (float(torch.linalg.vector_norm(x0)) + 1.0)
    history: list[ContinuationInfo] = []
    stage1 = ContinuationParams(params.sigmas[:n_steps], params.step_size, params.max_target_steps, params.box)
    x, diverged = _run_stage1(problem, prior, x0.clone(), stage1, history, on_step, limit)
    reason = "divergence" if diverged else "max_iterations"
    if not diverged:
        n_target = min(params.max_target_steps, n_steps - len(history))
        x, reason = _run_stage2(problem, prior, x, params, n_target, history, on_step, limit, tol, patience)
    return MAPResult(x=x, state=SGDState(x, len(history)), n_iter=len(history), stop_reason=reason,
                     data_nll=[h.data_nll for h in history], grad_norm=[h.grad_norm for h in history if h.stage == "target"],
                     rel_change=[h.rel_change for h in history], params=params)
