r"""PnP-SGD: MAP estimation with a plug-and-play prior by stochastic gradient descent.

Laumont et al. 2023 ("On MAP estimation with Plug & Play priors and stochastic gradient
descent", JMIV 65:140–163) study this estimator; the form implemented here (provenance below)
minimises the smoothed posterior potential

.. math::  U(x) = f_y(x) - \alpha \log p_\varepsilon(x) \;[+\; d(x, C)^2 / (2\lambda)]

with the Tweedie gradient :math:`\nabla(-\log p_\varepsilon)(x) = (x - D_\varepsilon(x))/\varepsilon`
evaluated at a **noise-perturbed** point, which makes each step a stochastic gradient of the
Gaussian-smoothed potential :math:`U * \mathcal N(0, s^2 I)`:

.. math::
    g_k = \nabla f_y(x_k) + \frac{\alpha}{\varepsilon}\big(\tilde x_k - D_\varepsilon(\tilde x_k)\big),
    \qquad \tilde x_k = x_k + s\,\xi_k,\ \xi_k \sim \mathcal N(0, I),

    x_{k+1} = \Pi_C\big(x_k - \delta_k g_k\big),\qquad \delta_k = \delta_0 (1 + k/k_0)^{-a}.

Provenance (``docs/algorithms.md §pnp-sgd``): the paper's exact stochastic-gradient estimator,
step-size schedule, annealing and stopping rule could not be checked in its text, so what is
implemented is our choice (gradient of U with the Tweedie gradient, Robbins–Monro steps with
a ∈ (1/2, 1], δ₀ ≤ 1/L_U), with these further documented choices:

- perturbation std ``s`` defaults to √ε (the denoiser's own noise level); ``s = 0`` gives the
  deterministic PnP gradient descent (the baseline in ``bench/``);
- **hard projection** Π_C onto the box instead of the soft tail term (d(x,C)²/(2λ) with the
  PnP-ULA λ would cut δ₀ by ~4× at σ_y = 1/255 for no gain in an optimiser);
- δ₀ = ``step_fraction`` / (α L/ε + L_y) (gradient splitting; proximal: below), k₀ = 100, a = 0.6;
- stop when the relative change ‖x_{k+1} − x_k‖/‖x_k‖ stays below ``tol`` for 10 consecutive
  iterations, at ``n_steps``, or on divergence (non-finite or exploding iterate);
- ``splitting="proximal"`` (chosen by ``auto_params`` whenever it is exact: Gaussian noise and
  inpainting / circular blur / identity) takes the data term implicitly — a stochastic
  forward–backward step

  .. math:: x_{k+1} = \Pi_C\big(\mathrm{prox}_{\delta_k f_y}\big(x_k + \delta_k\tfrac{\alpha}{\varepsilon}
            (D_\varepsilon(\tilde x_k) - \tilde x_k)\big)\big),\qquad \delta_0 = \text{step\_fraction}\cdot\varepsilon/(\alpha L),

  whose fixed points are the same stationary points of the smoothed U (prox of the data term,
  ``docs/algorithms.md §data-prox``; gradient of the smooth prior term). This is a deviation
  from the plain gradient step above: with σ_y = 1/255 the data term's L_y = ‖A‖²/σ_y² is 25×
  the prior's αL/ε, so the explicit step δ₀ ≈ 1/L_y lets the prior move unobserved pixels by
  only ~4% of the denoiser residual per iteration (inpainting with 80% missing pixels barely
  moved in 200 iterations); the implicit data step removes L_y from the step-size bound.
  ``"gradient"`` is the plain step of the equation above (the only option for Poisson noise or
  non-circular blur).

Same shape as the samplers: a pure :func:`step` over an explicit :class:`SGDState` with the
generator passed in; :func:`run_map` is the loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

__all__ = ["SGDParams", "SGDState", "SGDInfo", "MAPResult", "auto_params", "init", "prior_score", "gradient", "step", "run_map"]


@dataclass(frozen=True)
class SGDParams:
    """PnP-SGD parameters. ``perturbation`` is the std s of the denoiser-input noise."""

    step_size: float
    decay: float = 0.6
    decay_start: int = 100
    perturbation: float = 0.0
    box: tuple[float, float] | None = (-1.0, 2.0)
    splitting: str = "gradient"  # "gradient" | "proximal" (module docstring)

    def __post_init__(self) -> None:
        if self.splitting not in ("gradient", "proximal"):
            raise ValueError(f"splitting must be 'gradient' or 'proximal', got {self.splitting!r}")
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(f"step_size must be a positive number, got {self.step_size}")
        if not 0.5 < self.decay <= 1.0 and self.decay != 0.0:
            raise ValueError(f"decay must be in (1/2, 1] (Robbins–Monro) or 0 (constant), got {self.decay}")
        if not isinstance(self.decay_start, int) or self.decay_start < 1:
            raise ValueError(f"decay_start must be a positive int, got {self.decay_start!r}")
        if self.perturbation < 0:
            raise ValueError(f"perturbation must be >= 0, got {self.perturbation}")

    def step_at(self, k: int) -> float:
        return self.step_size * (1.0 + k / self.decay_start) ** (-self.decay)


class SGDState(NamedTuple):
    x: torch.Tensor
    step: int


class SGDInfo(NamedTuple):
    grad_norm: float
    rel_change: float
    data_nll: float


class MAPResult(NamedTuple):
    x: torch.Tensor
    state: SGDState
    n_iter: int
    stop_reason: str  # "tolerance" | "max_iterations" | "divergence"
    data_nll: list[float]
    grad_norm: list[float]
    rel_change: list[float]
    params: SGDParams


def auto_params(problem, prior, *, step_fraction: float = 1.0, perturbation: float | None = None,
                box: tuple[float, float] | None = (-1.0, 2.0), splitting: str = "auto") -> SGDParams:
    """``splitting="auto"``: proximal when ``problem.has_data_prox``, else gradient.
    δ₀ = step_fraction / (α L/ε) (proximal) or step_fraction / (α L/ε + L_y) (gradient);
    s = √ε unless given (see module docstring)."""
    if splitting == "auto":
        splitting = "proximal" if problem.has_data_prox else "gradient"
    if splitting == "proximal" and not problem.has_data_prox:
        raise ValueError("map.splitting: 'proximal' needs Gaussian noise and inpainting / circular blur / identity; "
                         "use 'gradient' or 'auto'")
    lipschitz = prior.lipschitz if splitting == "proximal" else prior.lipschitz + problem.data_lipschitz
    return SGDParams(
        step_size=step_fraction / lipschitz,
        perturbation=prior.sigma if perturbation is None else float(perturbation),
        box=box,
        splitting=splitting,
    )


def init(x0: torch.Tensor) -> SGDState:
    return SGDState(x=x0.clone(), step=0)


def prior_score(x: torch.Tensor, prior, params: SGDParams, *, generator: torch.Generator | None) -> torch.Tensor:
    """``∇log p_ε(x̃_k)`` at the perturbed point ``x̃_k = x + s ξ_k`` (one denoiser call)."""
    if params.perturbation > 0:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x_tilde = x + params.perturbation * noise
    else:
        x_tilde = x
    return prior.score(x_tilde)


def gradient(x: torch.Tensor, problem, prior, params: SGDParams, *, generator: torch.Generator | None) -> torch.Tensor:
    """Stochastic gradient g_k of the module docstring (one denoiser call)."""
    return problem.data_grad(x) - prior_score(x, prior, params, generator=generator)


def step(state: SGDState, problem, prior, params: SGDParams, *, generator: torch.Generator | None) -> tuple[SGDState, SGDInfo]:
    """One projected PnP-SGD step: ``x ← Π_C(x − δ_k g_k)`` (gradient splitting) or
    ``x ← Π_C(prox_{δ_k f_y}(x + δ_k ∇log p_ε(x̃_k)))`` (proximal splitting); one denoiser call."""
    score = prior_score(state.x, prior, params, generator=generator)
    data_grad = problem.data_grad(state.x)
    g = data_grad - score
    delta = params.step_at(state.step)
    if params.splitting == "proximal":
        x_new = problem.data_prox(state.x + delta * score, delta)
    else:
        x_new = state.x - delta * g
    if params.box is not None:
        x_new = x_new.clamp_(params.box[0], params.box[1])
    change = torch.linalg.vector_norm(x_new - state.x) / torch.linalg.vector_norm(state.x).clamp_min(1e-12)
    info = SGDInfo(
        grad_norm=float(torch.linalg.vector_norm(g)),
        rel_change=float(change),
        data_nll=float(problem.data_nll(x_new).sum()),
    )
    return SGDState(x=x_new, step=state.step + 1), info


def run_map(problem, prior, x0: torch.Tensor | SGDState, *, n_steps: int, params: SGDParams,
            generator: torch.Generator | None, tol: float = 1e-5, patience: int = 10,
            explode: float = 1e3, on_step: Callable[[SGDState, SGDInfo], None] | None = None) -> MAPResult:
    """Run PnP-SGD for at most ``n_steps`` total iterations (a state resumes where it stopped).

    Divergence (non-finite iterate or ‖x‖ > ``explode`` · (‖x₀‖ + 1)) stops at once; the
    returned ``x`` is then the last finite iterate and ``stop_reason`` is ``"divergence"``.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative int, got {n_steps!r}")
    state = x0 if isinstance(x0, SGDState) else init(x0)
    limit = explode * (float(torch.linalg.vector_norm(state.x)) + 1.0)
    nll, gnorm, rel = [], [], []
    reason = "max_iterations"
    calm = 0
    while state.step < n_steps:
        new_state, info = step(state, problem, prior, params, generator=generator)
        if not torch.isfinite(new_state.x).all() or float(torch.linalg.vector_norm(new_state.x)) > limit \
                or not math.isfinite(info.grad_norm):
            reason = "divergence"
            break
        state = new_state
        nll.append(info.data_nll)
        gnorm.append(info.grad_norm)
        rel.append(info.rel_change)
        if on_step is not None:
            on_step(state, info)
        calm = calm + 1 if info.rel_change < tol else 0
        if calm >= patience:
            reason = "tolerance"
            break
    return MAPResult(x=state.x, state=state, n_iter=state.step, stop_reason=reason, data_nll=nll,
                     grad_norm=gnorm, rel_change=rel, params=params)
