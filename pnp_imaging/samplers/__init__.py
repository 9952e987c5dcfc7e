"""Samplers: pure steps over NamedTuple states, one driver.

- :mod:`~pnp_imaging.samplers.ula`: PnP-ULA and projected PnP-ULA (Laumont et al. 2022).
- :mod:`~pnp_imaging.samplers.skrock`: SK-ROCK with a PnP prior (Pereyra et al. 2020).
- :mod:`~pnp_imaging.samplers.base`: :func:`run_chain` (the only loop), :class:`Kernel`,
  :class:`TraceConfig`, :class:`ChainResult`, :func:`dispersed_init`, :class:`DivergenceError`.

Typical use::

    params = ula.make_params(problem, prior)                  # step_size="auto" (C2 rule)
    k = ula.kernel(problem, prior, params)
    x0 = dispersed_init(problem.back_projection(), 4, spread=0.1, generator=g)
    result = run_chain(k, k.init(x0), n_steps=10_000, n_burnin=1_000, thin=10, generator=g)
    result.stats.mmse(), result.stats.std(), result.verdicts()
"""
from pnp_imaging.samplers import skrock, ula
from pnp_imaging.samplers.base import (
    ChainResult,
    DivergenceError,
    Kernel,
    TraceConfig,
    dispersed_init,
    kept_iterations,
    run_chain,
)

SAMPLERS = {"pnp_ula": ula, "ppnp_ula": ula, "pnp_skrock": skrock}

__all__ = [
    "ula",
    "skrock",
    "run_chain",
    "dispersed_init",
    "kept_iterations",
    "Kernel",
    "TraceConfig",
    "ChainResult",
    "DivergenceError",
    "SAMPLERS",
]
