r"""PnP-ULA and projected PnP-ULA (Laumont, De Bortoli, Almansa, Delon, Durmus, Pereyra, SIAM J.
Imaging Sci. 15(2), 2022; ``docs/algorithms.md §pnp-ula``).

PnP-ULA (soft tail term, the default)::

    X_{k+1} = X_k + δ ∇log p(y|X_k) + (αδ/ε)(D_ε(X_k) − X_k) + (δ/λ)(Π_C(X_k) − X_k) + √(2δ) Z_{k+1}

PPnP-ULA (``projected=True``)::

    X_{k+1} = Π_C( X_k + δ ∇log p(y|X_k) + (αδ/ε)(D_ε(X_k) − X_k) + √(2δ) Z_{k+1} )

``C`` is the box ``clip = (lo, hi)``, default ``(-1, 2)`` (``docs/algorithms.md §box``: the
value of the authors' ``pnpula`` and of deepinv's legacy ``ULA``; the MI2G PnP-ULA tutorial uses
``(0, 1)``), ``Π_C`` = clamp; ``clip=None`` drops the tail term (soft variant only).

The state caches the drift ``b(X_k)`` so that one step costs exactly one denoiser call:
``step`` moves with the cached drift and evaluates the drift at the new point.

Automatic step size (``step_size="auto"``, :func:`make_params`) — the rule of the MI2G PnP-ULA
tutorial (MI2G/sampling-tutorials ``PnP_ULA_notebook``, Pereyra's group, described there as the
guidelines of Laumont et al. 2022; ``docs/algorithms.md §pnp-ula-step``), with ``L`` = residual
Lipschitz constant of the denoiser and ``L_y`` = ``problem.data_lipschitz``:

* soft:       ``λ = 0.99 / (2αL/ε + 4 L_y)``,  ``δ = 0.99 · (1/3) · (αL/ε + L_y + 1/λ)^{-1}``
* projected:  ``δ = 0.99 · (αL/ε + L_y)^{-1}`` (no λ)

Chosen over the rule in the authors' ``pnpula`` of Renaud et al. (``λ = 1/(4L_y + 2αL/ε)``,
``δ = δ_max`` exactly) because it stays strictly inside the bound. Deviations, documented: (i) for
the projected variant the tutorial writes ``L/ε`` without α; we use ``αL/ε`` (identical for
α = 1; for α > 1 the tutorial's step would exceed the Lipschitz bound of the drift); (ii) with
``clip=None`` the soft rule is used with ``1/λ = 0``.
Worked values (σ = 1/255, ε = (5/255)², α = 1, L = 1, ‖A‖ = 1, so L_y = 65025, αL/ε = 2601):
λ = 3.7316e-6, δ = 9.8329e-7 (soft); δ = 1.4639e-5 (projected). ULA is biased in δ (O(δ)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from pnp_imaging.chain_rng import randn_chains
from pnp_imaging._checks import check_bool, check_box, check_positive, check_step_size
from pnp_imaging.samplers.box import BOX_RULES, apply_box, check_box_params, initial_position
from pnp_imaging.samplers.kernel import Kernel, SamplerSpec, register

__all__ = ["ULAOptions", "ULAParams", "ULAState", "ULAInfo", "make_params", "init", "step", "kernel", "build", "drift",
           "auto_rule", "tail_lambda"]

_FRACTION = 0.99


class ULAState(NamedTuple):
    """``x``: chains ``[B, C, H, W]``; ``drift``: cached ``b(x)`` (same shape); ``step``: int."""

    x: torch.Tensor
    drift: torch.Tensor
    step: int


class ULAInfo(NamedTuple):
    """``out_of_box``: fraction of pixels of the new state outside C, per chain ``[B]`` (always
    0 for the projected variant, NaN without C)."""

    out_of_box: torch.Tensor


@dataclass(frozen=True)
class ULAParams:
    """Parameters of (P)PnP-ULA.

    ``step_size``: δ > 0. ``lam``: tail parameter λ > 0 of the soft variant (None with
    ``clip=None`` or ``projected=True``). ``clip``: the box C or None. ``projected``: PPnP-ULA.
    ``rule``: how δ/λ were chosen (``"manual"`` or the auto rule with its inputs), recorded for
    reports.
    """

    step_size: float
    lam: float | None = None
    clip: tuple[float, float] | None = (-1.0, 2.0)
    projected: bool = False
    rule: str = "manual"
    box_rule: str = "clamp"

    def __post_init__(self):
        check_box_params(self, "PnP-ULA")


def auto_rule(
    prior_lipschitz: float, data_lipschitz: float, *, projected: bool = False, tail: bool = True,
    fraction: float = _FRACTION,
) -> tuple[float, float | None]:
    """``(δ, λ)`` by the tutorial rule (module docstring; ``docs/algorithms.md §pnp-ula-step``);
    ``prior_lipschitz`` = αL/ε, ``data_lipschitz`` = L_y."""
    lp, ly = float(prior_lipschitz), float(data_lipschitz)
    if projected:
        return fraction / (lp + ly), None
    if not tail:
        return fraction / 3.0 / (lp + ly), None
    lam = fraction / (2.0 * lp + 4.0 * ly)
    return fraction / 3.0 / (lp + ly + 1.0 / lam), lam


def make_params(
    problem,
    prior,
    *,
    step_size: float | str = "auto",
    lam: float | str = "auto",
    clip: tuple[float, float] | None = (-1.0, 2.0),
    projected: bool = False,
    fraction: float = _FRACTION,
    box_rule: str = "clamp",
) -> ULAParams:
    """Build :class:`ULAParams`, filling ``"auto"`` entries by the tutorial rule (module docstring;
    ``docs/algorithms.md §pnp-ula-step``).

    >>> delta, lam = auto_rule(2601.0, 65025.0)  # sigma = 1/255, eps = (5/255)**2, alpha = L = 1
    >>> f"{delta:.4e} {lam:.4e} {auto_rule(2601.0, 65025.0, projected=True)[0]:.4e}"
    '9.8329e-07 3.7316e-06 1.4639e-05'
    """
    fraction = check_rule_inputs(fraction, step_size, lam)
    soft_tail = clip is not None and not projected
    lam_value, parts = tail_lambda(problem, prior, lam, soft_tail=soft_tail, fraction=fraction)
    if step_size == "auto":
        lp, ly = prior.lipschitz, float(problem.data_lipschitz)
        if projected:
            step_size = fraction / (lp + ly)
            parts.append(f"delta={fraction}/(alpha*L/eps + L_y)")
        elif soft_tail:
            step_size = fraction / 3.0 / (lp + ly + 1.0 / lam_value)
            parts.append(f"delta={fraction}/3/(alpha*L/eps + L_y + 1/lam)")
        else:
            step_size = fraction / 3.0 / (lp + ly)
            parts.append(f"delta={fraction}/3/(alpha*L/eps + L_y) (no tail term)")
    rule = "manual" if not parts else (f"tutorial rule (docs/algorithms.md §pnp-ula-step): {', '.join(parts)} with "
                                       f"alpha*L/eps={prior.lipschitz:.6g}, L_y={float(problem.data_lipschitz):.6g}")
    return ULAParams(step_size=float(step_size), lam=lam_value, clip=clip, projected=projected, rule=rule,
                     box_rule=box_rule)


def check_rule_inputs(fraction, step_size, lam) -> float:
    fraction = float(fraction)
    if not (0 < fraction <= 1):
        raise ValueError(f"fraction: must be in (0, 1], got {fraction}")
    for name, v in (("step_size", step_size), ("lam", lam)):
        if isinstance(v, str) and v != "auto":
            raise ValueError(f"{name}: must be a float or 'auto', got {v!r}")
    return fraction


def tail_lambda(problem, prior, lam: float | str, *, soft_tail: bool, fraction: float = _FRACTION):
    """λ of the soft tail term: ``fraction / (2αL/ε + 4 L_y)`` for ``lam="auto"`` (the PnP-ULA
    tutorial rule, ``docs/algorithms.md §pnp-ula-step``; SK-ROCK reuses it), ``float(lam)``
    otherwise, None without a soft tail. Returns ``(λ, [rule description])``."""
    if not soft_tail:
        return None, []
    if lam != "auto":
        return float(lam), []
    value = fraction / (2.0 * prior.lipschitz + 4.0 * float(problem.data_lipschitz))
    return value, [f"lam={fraction}/(2*alpha*L/eps + 4*L_y)"]


def drift(x: torch.Tensor, problem, prior, params: ULAParams) -> torch.Tensor:
    """``b(x) = −∇f_y(x) + α(D_ε(x) − x)/ε [+ (Π_C(x) − x)/λ]`` (tail only in the soft variant)."""
    b = prior.score(x)
    b.sub_(problem.data_grad(x))
    if params.clip is not None and not params.projected:
        lo, hi = params.clip
        b.add_(torch.clamp(x, lo, hi).sub_(x), alpha=1.0 / params.lam)
    return b


def init(x0: torch.Tensor, problem, prior, params: ULAParams) -> ULAState:
    """State at ``x0`` (``[B, C, H, W]``; projected onto C for PPnP-ULA); one drift evaluation."""
    x = initial_position(x0, params.clip, params.projected)
    return ULAState(x=x, drift=drift(x, problem, prior, params), step=0)


def step(state: ULAState, problem, prior, params: ULAParams, *, generator: torch.Generator):
    """One (P)PnP-ULA step: ``x' = x + δ b(x) + √(2δ) Z`` [then Π_C]; returns ``(state, info)``.

    Pure: ``state`` is not modified. Cost: one denoiser call + one data gradient.
    """
    x = state.x
    d = params.step_size
    x_new = randn_chains(x.shape, generator, dtype=x.dtype, device=x.device)
    x_new.mul_(math.sqrt(2.0 * d)).add_(state.drift, alpha=d).add_(x)
    oob = apply_box(x_new, params.clip, params.projected, rule=params.box_rule, x_old=state.x)
    return ULAState(x_new, drift(x_new, problem, prior, params), state.step + 1), ULAInfo(oob)


def kernel(problem, prior, params: ULAParams) -> Kernel:
    """Bind (P)PnP-ULA to a problem and a prior for :func:`~pnp_imaging.samplers.base.run_chain`."""
    return Kernel(SPEC_NAME, problem, prior, params, init, step, ULAState)


SPEC_NAME = "pnp-ula"


@dataclass(frozen=True)
class ULAOptions:
    """What a user sets for PnP-ULA (config ``sampler:`` keys of the same names).

    ``step_size``: δ or ``"auto"`` (:func:`make_params`); ``step_fraction``: the 0.99 of the
    auto rule; ``box``: C = [lo, hi] or None; ``projected``: PPnP-ULA (kept in C) instead of
    the soft tail term; ``box_rule``: how a projected chain stays in C, ``"clamp"`` (PPnP-ULA),
    ``"metropolis"`` (per-pixel rejection) or ``"reflect"`` (:mod:`~pnp_imaging.samplers.box`).
    """

    step_size: float | str = "auto"
    step_fraction: float = _FRACTION
    box: tuple[float, float] | None = (-1.0, 2.0)
    projected: bool = False
    box_rule: str = "clamp"

    def __post_init__(self):
        check_options(self)


def check_options(options) -> None:
    """Validate the options every PnP Langevin family shares (one-line errors naming the key)."""
    set_ = lambda k, v: object.__setattr__(options, k, v)  # noqa: E731 (frozen dataclass)
    set_("step_size", check_step_size("step_size", options.step_size))
    set_("step_fraction", check_positive("step_fraction", options.step_fraction, 1.0))
    set_("box", check_box("box", options.box))
    check_bool("projected", options.projected)
    if options.projected and options.box is None:
        raise ValueError("projected: the projected variant needs a box; set box: [low, high] or projected: false")
    rule = getattr(options, "box_rule", "clamp")  # SK-ROCK has no box_rule: it clamps
    if rule not in BOX_RULES:
        raise ValueError(f"box_rule: must be one of {', '.join(BOX_RULES)}, got {rule!r}")
    if rule != "clamp" and not options.projected:
        raise ValueError(f"box_rule: {rule!r} keeps a projected chain in the box; set projected: true")


def build(problem, prior, options: ULAOptions) -> Kernel:
    """The registered builder: options → :class:`ULAParams` → :class:`Kernel`."""
    params = make_params(problem, prior, step_size=options.step_size, clip=options.box, projected=options.projected,
                         fraction=options.step_fraction, box_rule=options.box_rule)
    return kernel(problem, prior, params)


register(SamplerSpec(SPEC_NAME, "PnP-ULA / projected PnP-ULA (Laumont et al. 2022)", ULAOptions, build,
                     bias="The variance of every direction is inflated by 1/(1 - delta*h/2) (first order in the step; "
                          "small at the tutorial step, docs/algorithms.md §pnp-ula-step)."))
