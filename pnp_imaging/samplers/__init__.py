"""Samplers: pure steps over NamedTuple states, one registry, one driver.

- :mod:`~pnp_imaging.samplers.kernel`: the sampler interface (:class:`Kernel`,
  :class:`SamplerSpec`) and the registry (:func:`get_sampler`, :func:`build_kernel`).
- :mod:`~pnp_imaging.samplers.ula`: ``pnp-ula`` — PnP-ULA and projected PnP-ULA (Laumont et al. 2022).
- :mod:`~pnp_imaging.samplers.skrock`: ``skrock`` — SK-ROCK with a PnP prior (Pereyra et al. 2020).
- :mod:`~pnp_imaging.samplers.base`: :func:`run_chain` (the only loop), :func:`resume`,
  :class:`ChainResult`, :func:`dispersed_init`, :class:`DivergenceError`.

Most users call :func:`pnp_imaging.sample`, which does all of this. By hand::

    k = build_kernel("skrock", problem, prior)                 # step_size="auto"
    x0 = dispersed_init(problem.initial_guess(), 4, spread=0.1, generator=g)
    result = run_chain(k, k.init(x0), n_steps=10_000, n_burnin=1_000, thin=10, generator=g)
    result.stats.mmse(), result.stats.std(), result.verdicts()
"""
from pnp_imaging.samplers import skrock, ula
from pnp_imaging.samplers.base import ChainResult, DivergenceError, dispersed_init, kept_iterations, resume, run_chain
from pnp_imaging.samplers.kernel import Kernel, SamplerSpec, build_kernel, get_sampler, register, sampler_names
from pnp_imaging.traces import TraceConfig

__all__ = [
    "ula",
    "skrock",
    "run_chain",
    "resume",
    "dispersed_init",
    "kept_iterations",
    "Kernel",
    "SamplerSpec",
    "TraceConfig",
    "ChainResult",
    "DivergenceError",
    "build_kernel",
    "get_sampler",
    "register",
    "sampler_names",
]
