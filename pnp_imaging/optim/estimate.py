"""``map_estimate(problem, prior, ...)``: the MAP by PnP-SGD or by continuation, and a check that it is sane."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from pnp_imaging._checks import check_count, check_generator
from pnp_imaging.optim import continuation, pnp_sgd

__all__ = ["map_estimate", "map_health", "MapHealth"]

#: a reduced chi-square above this says the estimate does not explain the data
#: (at the truth it is 1 ± sqrt(2/m); a MAP fits at least as well as the truth)
MAX_MISFIT = 2.0
#: share of pixels outside [-0.1, 1.1] above which an estimate has left the image range
MAX_OUT_OF_RANGE = 5e-3


def map_estimate(problem, prior, *, generator: torch.Generator, n_steps: int = 300, x0: torch.Tensor | None = None,
                 splitting: str = "auto", step_fraction: float = 1.0, box: tuple[float, float] | None = (-1.0, 2.0),
                 tol: float = 1e-5, on_step: Callable | None = None, method: str = "pnp-sgd",
                 sigma_max: float = continuation.SIGMA_MAX, levels: int = continuation.N_LEVELS,
                 target_steps: int = continuation.MAX_TARGET_STEPS) -> pnp_sgd.MAPResult:
    """MAP estimate of ``problem`` under ``prior``.

    ``method="pnp-sgd"`` (``docs/algorithms.md §pnp-sgd``): ``splitting`` ``"auto"`` takes the
    data term by its exact prox when there is one, else by its gradient; stops at ``n_steps``,
    when the relative change stays below ``tol`` for 10 iterations, or on divergence.
    ``method="continuation"`` (``§map-continuation``, :mod:`~pnp_imaging.optim.continuation`):
    ``levels`` denoiser levels from ``sigma_max`` down to √ε (equation (C)), then at most
    ``target_steps`` forward–backward steps (T) at √ε, stopped by ``tol`` or by the objective
    estimate (O), ``n_steps`` denoiser calls at most; needs an exact data prox and a denoiser with
    levels above √ε (one-line error otherwise). ``step_fraction``: δ as a fraction of ε/(αL). ``x0``: start ``[1, C, H, W]`` (default
    ``problem.initial_guess()``). Divergence raises ``ValueError`` naming the fix.

    >>> res = map_estimate(problem, prior, generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
    >>> res.x.shape, res.stop_reason                                                  # doctest: +SKIP
    """
    check_count("n_steps", n_steps, 1)
    check_generator(generator)
    start = (problem.initial_guess() if x0 is None else x0).to(problem.y.dtype)
    if method == "continuation":
        params = continuation.auto_params(problem, prior, sigma_max=sigma_max, n_levels=levels,
                                          step_fraction=step_fraction, max_target_steps=target_steps, box=box)
        result = continuation.run_continuation(problem, prior, start, n_steps=n_steps, params=params, tol=tol,
                                               on_step=on_step)
    elif method == "pnp-sgd":
        params = pnp_sgd.auto_params(problem, prior, box=box, splitting=splitting, step_fraction=step_fraction)
        result = pnp_sgd.run_map(problem, prior, start, n_steps=n_steps, params=params, generator=generator, tol=tol,
                                 on_step=on_step)
    else:
        raise ValueError(f"map.type: unknown MAP method {method!r}; valid: pnp-sgd, continuation")
    if result.stop_reason == "divergence":
        raise ValueError(
            f"map: {method} diverged at iteration {result.n_iter}; lower map.step_fraction or raise prior.eps "
            "(the denoiser's residual Lipschitz constant may exceed its model-card value)")
    return result


@dataclass(frozen=True)
class MapHealth:
    """``misfit``: reduced chi-square of the data residual (None when the noise model has
    none); ``out_of_range``: share of pixels outside [-0.1, 1.1]; ``warning``: a sentence when
    either says the estimate went astray, else None."""

    misfit: float | None
    out_of_range: float
    warning: str | None

    @property
    def ok(self) -> bool:
        return self.warning is None


def map_health(problem, x: torch.Tensor) -> MapHealth:
    """Does the estimate ``x`` explain the data and stay in the image range?

    A MAP under a well-posed prior fits the data at least as well as the truth (reduced
    chi-square ≈ 1) and lies in [0, 1]; one whose misfit exceeds ``MAX_MISFIT`` or with more than
    ``MAX_OUT_OF_RANGE`` of its pixels outside [-0.1, 1.1] went astray (e.g. a prior whose step
    rule does not hold for its real Lipschitz constant).
    """
    with torch.no_grad():
        misfit = problem.noise.misfit(problem.y, problem.operator.A(x))
    out = float(((x < -0.1) | (x > 1.1)).double().mean())
    bad = []
    if misfit is not None and not misfit <= MAX_MISFIT:
        bad.append(f"its data misfit ||Ax - y||²/(m σ²) is {misfit:.3g} (about 1 expected)")
    if not out <= MAX_OUT_OF_RANGE:
        bad.append(f"{100 * out:.2f}% of its pixels are outside [-0.1, 1.1]")
    warning = None
    if bad:
        warning = ("MAP went astray: " + " and ".join(bad) +
                   "; the chains start from the initial guess instead. Check the prior (prior.denoiser, prior.eps) "
                   "or lower map.step_fraction")
    return MapHealth(misfit, out, warning)
