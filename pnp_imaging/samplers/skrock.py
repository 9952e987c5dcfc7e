r"""SK-ROCK with a plug-and-play prior (Pereyra, Vargas-Mieles, Zygalakis, SIAM J. Imaging Sci.
13(2), 2020; ``docs/algorithms.md §skrock`` and ``§skrock-step``).

Target ``π ∝ exp(−U)`` with (``docs/algorithms.md §skrock-step``)::

    ∇U(x) = ∇f_y(x) + (α/ε)(x − D_ε(x)) [+ (x − Π_C(x))/λ]

One outer step with ``s`` stages, damping ``η`` (recursion exactly as in the official code of
Pereyra et al., ``SKROCK.m``; ``docs/algorithms.md §skrock``)::

    ℓ_s = (s − ½)²(2 − 4η/3) − 3/2,     δ = p ℓ_s / L
    ω₀ = 1 + η/s²,  ω₁ = T_s(ω₀)/T_s'(ω₀),  μ₁ = ω₁/ω₀,  ν₁ = sω₁/2,  κ₁ = sω₁/ω₀
    Q = √(2δ) Z
    K₀ = X;  K₁ = X − μ₁δ∇U(X + ν₁Q) + κ₁Q
    K_j = −μ_jδ∇U(K_{j−1}) + ν_jK_{j−1} + κ_jK_{j−2},   j = 2..s, with
        μ_j = 2ω₁T_{j−1}(ω₀)/T_j(ω₀),  ν_j = 2ω₀T_{j−1}(ω₀)/T_j(ω₀),  κ_j = 1 − ν_j
    X_new = K_s  [then Π_C if projected=True — deepinv's ``SKRockIterator`` choice;
                  else, with a box, the tail's proximal step X_new += δ/(λ + δ)(Π_C(X_new) − X_new)]

T_j are Chebyshev polynomials of the first kind (T₀ = 1, T₁ = x, T_{j+1} = 2xT_j − T_{j−1}).
Each outer step costs ``s`` evaluations of ∇U (``s`` denoiser calls).

The soft box tail ``d(x, C)²/(2λ)`` is not in the stages (our choice, ``docs/algorithms.md
§skrock-step``): its curvature jumps from 0 to 1/λ at the faces, and a data-stiff pixel at a face
(stiffness h + 1/λ near the end of the stability interval) made the Chebyshev recursion, stable for
each linear piece, oscillate without bound (1-D, s = 10, p = 0.99: variance ×4e5; with the box
[0, 1], 50 % inpainting diverged within two steps). Its exact proximal step after the stages is
non-expansive, so the step stays stable; inside C it is the identity and nothing changes.

Defaults: ``s = 10``, ``η = 0.05`` (the official code hard-codes η = 0.05; s = 10 there and in
the MI2G SK-ROCK tutorial), ``p = 0.99`` (the MI2G SK-ROCK tutorial; the official code uses 0.5
for deconvolution, 0.8 for tomography), box C = [−1, 2] with the soft tail and
``λ = 0.99/(2αL/ε + 4L_y)`` — the PnP-ULA rule (``docs/algorithms.md §pnp-ula-step``; our
choice: no source fixes λ for PnP SK-ROCK); ``L = L_y + αL/ε + 1/λ`` (our choice, by analogy
with the PnP-ULA rule; ``docs/algorithms.md §skrock-step``). Worked values (σ = 1/255,
ε = (5/255)², α = L = 1, ‖A‖ = 1): ℓ₁₀ = 172.98, λ = 3.7316e-6, L = 335607.8, δ = 5.1028e-4,
i.e. 519× the PnP-ULA δ for 10× the gradient evaluations.

Caveat (computed, tested; ``docs/algorithms.md §skrock-variance``): on a quadratic
``U = h x²/2`` the stationary variance of this recursion is ``(1/h)·R(δh)`` with ``R → 1`` as
``δh → 0`` (first order) but **not monotone** over the stability interval: with s = 10,
η = 0.05, ``R`` = 0.98 at δh = 1, 0.93 at 2, ~0 at δh ≈ 4.79 (the first zero of the
stage-noise polynomial, where ω₀ + ω₁(−δh) = cos(π/s)), 0.89 at 10, 0.35 at 20, 0.59 at 60,
0.25 at 100, 0.11 at 170. So posterior means are unbiased on Gaussian targets, but variances
of stiff directions (δh ≳ 2: well-determined, small-variance components) can be strongly
underestimated; per-pixel std maps mix all directions. :func:`stationary_variance_quadratic`
gives ``R``; tests compare against it.

The state holds no cached gradient: the first stage evaluates
∇U at the *perturbed* point ``X + ν₁Q``, never at ``X``, so there is nothing to reuse.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch

from pnp_imaging.chain_rng import randn_chains
from pnp_imaging._checks import check_count, check_positive
from pnp_imaging.samplers import ula
from pnp_imaging.samplers.box import apply_box, check_box_params, initial_position
from pnp_imaging.samplers.kernel import Kernel, SamplerSpec, register

__all__ = [
    "SKROCKOptions",
    "SKROCKParams",
    "build",
    "SKROCKState",
    "SKROCKInfo",
    "make_params",
    "init",
    "step",
    "kernel",
    "grad_potential",
    "tail_prox",
    "stability_length",
    "coefficients",
    "stationary_variance_quadratic",
]


def stability_length(n_stages: int, eta: float) -> float:
    """``ℓ_s = (s − ½)²(2 − 4η/3) − 3/2`` (``docs/algorithms.md §skrock``)."""
    return (n_stages - 0.5) ** 2 * (2.0 - 4.0 * eta / 3.0) - 1.5


@lru_cache(maxsize=64)
def coefficients(n_stages: int, eta: float) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(mu, nu, kappa)``, each of length ``s + 1`` indexed by stage ``j = 1..s`` (index 0 unused)."""
    s = n_stages
    w0 = 1.0 + eta / s**2
    T = [1.0, w0]
    for _ in range(2, s + 1):
        T.append(2.0 * w0 * T[-1] - T[-2])
    ach = math.acosh(w0)
    dTs = s * math.sinh(s * ach) / math.sqrt(w0 * w0 - 1.0)
    w1 = T[s] / dTs
    mu = [math.nan] * (s + 1)
    nu = [math.nan] * (s + 1)
    ka = [math.nan] * (s + 1)
    mu[1], nu[1], ka[1] = w1 / w0, s * w1 / 2.0, s * w1 / w0
    for j in range(2, s + 1):
        mu[j] = 2.0 * w1 * T[j - 1] / T[j]
        nu[j] = 2.0 * w0 * T[j - 1] / T[j]
        ka[j] = 1.0 - nu[j]
    return tuple(mu), tuple(nu), tuple(ka)


class SKROCKState(NamedTuple):
    """``x``: chains ``[B, C, H, W]``; ``step``: int (no cached gradient: module docstring)."""

    x: torch.Tensor
    step: int


class SKROCKInfo(NamedTuple):
    """``out_of_box``: fraction of pixels of the new state outside C per chain (NaN without C);
    ``grad_evals``: ∇U evaluations this step (= s)."""

    out_of_box: torch.Tensor
    grad_evals: int


@dataclass(frozen=True)
class SKROCKParams:
    """``step_size`` δ; ``n_stages`` s (int >= 2); ``eta`` damping η; ``lam`` tail λ (None
    without a soft tail); ``clip`` box C or None; ``projected``: clamp once after the stages;
    ``lipschitz`` the L used by the auto rule (None if manual); ``rule`` provenance string."""

    step_size: float
    n_stages: int = 10
    eta: float = 0.05
    lam: float | None = None
    clip: tuple[float, float] | None = (-1.0, 2.0)
    projected: bool = False
    lipschitz: float | None = None
    rule: str = "manual"

    def __post_init__(self):
        check_box_params(self, "SK-ROCK")
        check_count("n_stages", self.n_stages, 2)
        object.__setattr__(self, "n_stages", int(self.n_stages))
        eta = float(self.eta)
        if not (math.isfinite(eta) and eta > 0):
            raise ValueError(f"eta: damping must be > 0 (0.05 is standard), got {self.eta}")
        object.__setattr__(self, "eta", eta)


def make_params(
    problem,
    prior,
    *,
    n_stages: int = 10,
    eta: float = 0.05,
    fraction: float = 0.99,
    step_size: float | str = "auto",
    lam: float | str = "auto",
    clip: tuple[float, float] | None = (-1.0, 2.0),
    projected: bool = False,
) -> SKROCKParams:
    """Build :class:`SKROCKParams`; ``"auto"``: ``λ = 0.99/(2αL/ε + 4L_y)``, ``δ = p ℓ_s / L``
    with ``L = L_y + αL/ε [+ 1/λ]`` and ``p = fraction`` (module docstring)."""
    n_stages = check_count("n_stages", n_stages, 2)
    fraction = ula.check_rule_inputs(fraction, step_size, lam)
    soft_tail = clip is not None and not projected
    lam_value, parts = ula.tail_lambda(problem, prior, lam, soft_tail=soft_tail, fraction=0.99)
    lip = None
    if step_size == "auto":
        lp, ly = prior.lipschitz, float(problem.data_lipschitz)
        lip = lp + ly + (1.0 / lam_value if soft_tail else 0.0)
        step_size = fraction * stability_length(n_stages, float(eta)) / lip
        parts.append(f"delta={fraction}*l_s/L, l_s={stability_length(n_stages, float(eta)):.6g}, L={lip:.6g}")
    rule = "manual" if not parts else "docs/algorithms.md §skrock-step: " + ", ".join(parts)
    return SKROCKParams(
        step_size=float(step_size), n_stages=n_stages, eta=float(eta), lam=lam_value,
        clip=clip, projected=projected, lipschitz=lip, rule=rule,
    )


def grad_potential(x: torch.Tensor, problem, prior, params: SKROCKParams) -> torch.Tensor:
    """``∇f_y(x) − α(D_ε(x) − x)/ε``, the smooth part of ∇U the stages integrate (one denoiser
    call; the box tail is applied after the stages, :func:`tail_prox`)."""
    return problem.data_grad(x) - prior.score(x)  # out of place: data_grad may return a view


def tail_prox(x: torch.Tensor, params: SKROCKParams) -> torch.Tensor:
    """In place: the exact proximal map of the soft tail ``δ d(x, C)²/(2λ)``,
    ``x + δ/(λ + δ) (Π_C(x) − x)`` (``docs/algorithms.md §skrock-step``); identity inside C."""
    lo, hi = params.clip
    d = params.step_size
    return x.add_(torch.clamp(x, lo, hi).sub_(x), alpha=d / (params.lam + d))


def init(x0: torch.Tensor, problem, prior, params: SKROCKParams) -> SKROCKState:
    """State at ``x0`` ``[B, C, H, W]`` (projected onto C if ``projected``). No evaluation."""
    x = initial_position(x0, params.clip, params.projected)
    return SKROCKState(x=x, step=0)


def step(state: SKROCKState, problem, prior, params: SKROCKParams, *, generator: torch.Generator):
    """One SK-ROCK outer step (``s`` gradient evaluations); pure; returns ``(state, info)``."""
    s = params.n_stages
    d = params.step_size
    mu, nu, ka = coefficients(s, params.eta)
    x = state.x
    q = randn_chains(x.shape, generator, dtype=x.dtype, device=x.device).mul_(math.sqrt(2.0 * d))
    # K1 = X - mu1 d gradU(X + nu1 Q) + kappa1 Q
    g = grad_potential(x + nu[1] * q, problem, prior, params)
    k_prev2 = x
    k_prev = x + ka[1] * q
    k_prev.sub_(g, alpha=mu[1] * d)
    del q, g
    for j in range(2, s + 1):
        g = grad_potential(k_prev, problem, prior, params)
        k = g.mul_(-mu[j] * d)
        k.add_(k_prev, alpha=nu[j]).add_(k_prev2, alpha=ka[j])
        k_prev2, k_prev = k_prev, k
    x_new = k_prev
    oob = apply_box(x_new, params.clip, params.projected)  # measured before the tail pulls x_new in
    if params.clip is not None and not params.projected:
        tail_prox(x_new, params)
    return SKROCKState(x_new, state.step + 1), SKROCKInfo(oob, s)


def kernel(problem, prior, params: SKROCKParams) -> Kernel:
    """Bind SK-ROCK to a problem and a prior for :func:`~pnp_imaging.samplers.base.run_chain`."""
    return Kernel(SPEC_NAME, problem, prior, params, init, step, SKROCKState)


SPEC_NAME = "skrock"


@dataclass(frozen=True)
class SKROCKOptions:
    """What a user sets for SK-ROCK (config ``sampler:`` keys of the same names).

    ``stages``: s; ``eta``: damping η; ``step_size``: δ or ``"auto"`` (δ = p ℓ_s / L, p =
    ``step_fraction``); ``box``: C = [lo, hi] or None; ``projected``: clamp onto C after the
    stages instead of the soft tail term.
    """

    stages: int = 10
    eta: float = 0.05
    step_size: float | str = "auto"
    step_fraction: float = 0.99
    box: tuple[float, float] | None = (-1.0, 2.0)
    projected: bool = False

    def __post_init__(self):
        check_count("stages", self.stages, 2)
        object.__setattr__(self, "eta", check_positive("eta", self.eta))
        ula.check_options(self)


def build(problem, prior, options: SKROCKOptions) -> Kernel:
    """The registered builder: options → :class:`SKROCKParams` → :class:`Kernel`."""
    params = make_params(problem, prior, n_stages=options.stages, eta=options.eta, fraction=options.step_fraction,
                         step_size=options.step_size, clip=options.box, projected=options.projected)
    return kernel(problem, prior, params)


register(SamplerSpec(SPEC_NAME, "SK-ROCK with a PnP prior (Pereyra et al. 2020)", SKROCKOptions, build,
                     bias="The variance of stiff, well-determined directions is under-estimated (factor R(delta*h) as low "
                          "as 0.1 on the stiffest, docs/algorithms.md §skrock-variance); means are unbiased on Gaussians."))


def stationary_variance_quadratic(h: float, step_size: float, n_stages: int = 10, eta: float = 0.05) -> float:
    """Exact stationary variance of SK-ROCK (no projection/tail) on ``U(x) = h x²/2``.

    One step is linear, ``X' = a X + b Q`` with ``Q ~ N(0, 2δ)``: propagating ``K_j = a_j X +
    b_j Q`` through the recursion (``a_0 = 1, b_0 = 0``; ``a_1 = 1 − μ₁δh``, ``b_1 = κ₁ −
    μ₁ν₁δh``; ``c_j = (ν_j − μ_jδh) c_{j−1} + κ_j c_{j−2}`` for ``c = a, b``) gives the
    stationary variance ``2δ b_s² / (1 − a_s²)`` (``docs/algorithms.md §skrock-variance``), to
    compare with ``1/h``.
    Returns ``inf`` when ``|a_s| >= 1`` (unstable step).
    """
    mu, nu, ka = coefficients(int(n_stages), float(eta))
    z = step_size * h
    a2, b2 = 1.0, 0.0
    a1, b1 = 1.0 - mu[1] * z, ka[1] - mu[1] * nu[1] * z
    for j in range(2, n_stages + 1):
        a2, b2, a1, b1 = a1, b1, (nu[j] - mu[j] * z) * a1 + ka[j] * a2, (nu[j] - mu[j] * z) * b1 + ka[j] * b2
    if abs(a1) >= 1.0:
        return math.inf
    return 2.0 * step_size * b1 * b1 / (1.0 - a1 * a1)
