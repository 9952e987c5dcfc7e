r"""``pnp-kinetic-exp``: kinetic (underdamped) Langevin preconditioned by the data term's exact flow,
integrated by BAOAB (``docs/algorithms.md §likelihood-exact``). A method beyond the papers, named
plainly; ``pnp-lm-exp`` is its infinite-friction limit.

With ``M = δφ₁(δH)`` (the likelihood-exact preconditioner of :mod:`.exponential`) and the full
PnP drift ``b = −∇U``, the SDE ``dX = V dt``, ``dV = M b(X) dt − γV dt + √(2γ) M^{1/2} dW``
has invariant law ``π(x) ⊗ N(0, M)``. One BAOAB step of length ``h = √2`` (Leimkuhler &
Matthews, Appl. Math. Res. Express 2013(1); Leimkuhler & Matthews, *Molecular Dynamics*,
Springer 2015, §7)::

    B: V ← V + (h/2) M b(X)          A: X ← X + (h/2) V
    O: V ← c V + √(1 − c²) M^{1/2} ξ,  c = e^{−γh}
    A: X ← X + (h/2) V               B: V ← V + (h/2) M b(X)      (b at the new X: one denoiser call)

In ``Y = M^{−1/2}X`` this is plain BAOAB on a potential with Hessian ``M^{1/2}(H + Q)M^{1/2}``,
whose eigenvalues lie in ``(0, 1 + δq)`` under the prior-only rule ``δ = step_fraction/q``;
BAOAB is stable for ``h²λ < 4`` and samples the *position* law of a Gaussian target exactly at
any stable step (Leimkuhler & Matthews 2013), so the means and covariances are exact on Gaussian
targets, as for ``pnp-lm-exp``. With ``c = 0`` (γ → ∞) the step is exactly ``pnp-lm-exp`` at δ
(``h²/2 = 1``). Finite friction lets slow, prior-dominated directions (small eigenvalue λ) move
ballistically: their relaxation takes ~``max(γ/λ, 1/γ)`` steps instead of ``1/λ``.
Default ``friction = 0.15`` (*our choice*): near critical damping ``2√λ`` of the slow direction
measured on the deblurring demo (λ ≈ 0.006: LM's integrated autocorrelation time there is ~155
steps). Measured on that demo (cameraman 256², 9×9 uniform blur, σ_y = 1/255, lipdncnn_gray_s5,
2 chains × 600 steps from the MAP, 480 kept): min bulk ESS over the traced quantities 470 (slow
direction 516) at γ = 0.15, 8.7 at γ = 0.5, 3.1 for ``pnp-lm-exp`` (the same evaluations), and
3.0 for SK-ROCK with 2.5× the evaluations (150 steps × 10 stages). ``V₀ = (h/2) M b(X₀)``, which
makes the first step LM's with ``Z₀ = 0``.

``overdamped_start`` (default 50, *our choice*): the first steps use ``c = 0``, i.e. they are
``pnp-lm-exp`` steps. Chains start out of equilibrium (dispersed around the MAP); with little
friction the potential energy they shed on the way in becomes velocity that carries them past
the data and back (measured: 50 % inpainting, σ_y = 1/255, starts MAP + 0.05·N(0, I): −log p(y|x)
rose 3.3 per measurement above its best by step 7 and the divergence guard stopped the run).
Overdamped steps dissipate that energy; the switch to the kinetic steps keeps the state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from pnp_imaging.chain_rng import randn_chains
from pnp_imaging._checks import check_count, check_positive
from pnp_imaging.samplers import exponential as ex
from pnp_imaging.samplers.box import apply_box, initial_position
from pnp_imaging.samplers.kernel import Kernel, SamplerSpec, register
from pnp_imaging.samplers.ula import ULAInfo, drift

__all__ = ["KineticOptions", "KineticState", "init", "step", "kernel", "SPEC_NAME"]

SPEC_NAME = ex.SCHEMES["kinetic"]
_H = math.sqrt(2.0)  # BAOAB step in the preconditioned time (h²/2 = 1: LM's step at γ = ∞)


class KineticState(NamedTuple):
    """``x``: chains ``[B, C, H, W]``; ``mdrift``: cached ``M b(x)``; ``v``: velocity; ``step``."""

    x: torch.Tensor
    mdrift: torch.Tensor
    v: torch.Tensor
    step: int


def _mdrift(x, problem, prior, params):
    flow = params.flow
    return flow.spectrum.apply(drift(x, problem, prior, params), flow.drift_gain)


def init(x0: torch.Tensor, problem, prior, params) -> KineticState:
    """State at ``x0`` (projected onto C when ``projected``); ``V₀ = (h/2) M b(X₀)``."""
    x = initial_position(x0, params.clip, params.projected)
    md = _mdrift(x, problem, prior, params)
    return KineticState(x, md, md * (_H / 2.0), 0)


def step(state: KineticState, problem, prior, params, *, generator: torch.Generator):
    """One BAOAB step (module docstring); pure. Cost: one denoiser call, two transform pairs."""
    x, half = state.x, _H / 2.0
    v = state.v + half * state.mdrift
    x_new = x + half * v
    c = 0.0 if state.step < params.overdamped_start else math.exp(-params.friction * _H)
    xi = randn_chains(x.shape, generator, dtype=x.dtype, device=x.device)
    v = v.mul_(c).add_(params.flow.spectrum.apply(xi, params.flow.noise_gain), alpha=math.sqrt(1.0 - c * c))
    x_new.add_(v, alpha=half)
    v = _bounce(x_new, v, params)
    oob = apply_box(x_new, params.clip, params.projected, rule=params.box_rule, x_old=x)
    md = _mdrift(x_new, problem, prior, params)
    return KineticState(x_new, md, v.add_(md, alpha=half), state.step + 1), ULAInfo(oob)


def _bounce(x_new: torch.Tensor, v: torch.Tensor, params) -> torch.Tensor:
    """Reverse the velocity of the pixels that ``box_rule`` sends back (``"reflect"``: the
    specular reflection of the Hamiltonian flow at a face; ``"metropolis"``: the momentum flip on
    rejection of generalised HMC), before the box acts on ``x_new``. ``"clamp"`` keeps it. Per pixel,
    this is the reflection for a diagonal preconditioner M (inpainting, denoising); with a blur's
    Fourier-diagonal M it is an approximation (tested against an exact answer only with M diagonal)."""
    if not params.projected or params.box_rule == "clamp":
        return v
    lo, hi = params.clip
    return torch.where((x_new < lo) | (x_new > hi), -v, v)


def kernel(problem, prior, params) -> Kernel:
    """Bind the kinetic scheme to a problem and a prior."""
    return Kernel(SPEC_NAME, problem, prior, params, init, step, KineticState, ex.rebind)


@dataclass(frozen=True)
class KineticOptions(ex.ExpOptions):
    """:class:`~.exponential.ExpOptions` plus ``friction`` γ > 0 (per unit of preconditioned time)."""

    friction: float = 0.15
    overdamped_start: int = 50

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "friction", check_positive("friction", self.friction))
        object.__setattr__(self, "overdamped_start", check_count("overdamped_start", self.overdamped_start, 0))


def build(problem, prior, options: KineticOptions) -> Kernel:
    params = ex.make_params(problem, prior, scheme="kinetic", step_size=options.step_size, clip=options.box,
                            projected=options.projected, fraction=options.step_fraction, friction=options.friction,
                            overdamped_start=options.overdamped_start, box_rule=options.box_rule)
    return kernel(problem, prior, params)


register(SamplerSpec(SPEC_NAME, "kinetic Langevin (BAOAB) preconditioned by the exact data flow; pnp-lm-exp at infinite friction",
                     KineticOptions, build,
                     bias="Exact mean and covariance on Gaussian targets at any stable step (BAOAB); second order in the "
                          "step otherwise: with a network prior its std map at the default step matched those at half and "
                          "a quarter of it within 0.5 % (64² deblurring; docs/algorithms.md §likelihood-exact)."))
