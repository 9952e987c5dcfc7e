"""Bayesian imaging with plug-and-play priors.

``import pnp_imaging`` is light: heavy parts (torch models, deepinv, matplotlib) load on first
use. Entry points::

    post = pnp_imaging.sample(problem, prior, "skrock", n_steps=2000, chains=4, generator=g)
    x_map = pnp_imaging.map_estimate(problem, prior, generator=g).x
    result = pnp_imaging.run("config.yaml")   # or a dict; same schema as the CLI
    post.mmse, post.std, post.lower, post.upper, post.verdict, post.save("out/")
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["sample", "map_estimate", "run", "Posterior", "RunResult", "Problem", "ScorePrior", "ConfigError",
           "SamplingInterrupted", "__version__"]

_LAZY = {
    "sample": ("pnp_imaging.sampling", "sample"),
    "map_estimate": ("pnp_imaging.optim", "map_estimate"),
    "Posterior": ("pnp_imaging.posterior", "Posterior"),
    "SamplingInterrupted": ("pnp_imaging.sampling", "SamplingInterrupted"),
    "run": ("pnp_imaging.api", "run"),
    "RunResult": ("pnp_imaging.api", "RunResult"),
    "Problem": ("pnp_imaging.problem", "Problem"),
    "ScorePrior": ("pnp_imaging.priors", "ScorePrior"),
    "ConfigError": ("pnp_imaging.config", "ConfigError"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pnp_imaging' has no attribute {name!r}")
