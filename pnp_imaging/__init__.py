"""Bayesian imaging with plug-and-play priors.

``import pnp_imaging`` is light: heavy parts (torch models, deepinv, matplotlib) load on first
use. Entry points::

    result = pnp_imaging.run("config.yaml")   # or a dict; same schema as the CLI
    result.summary["psnr_mmse"], result.mmse, result.std
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["run", "RunResult", "Problem", "ScorePrior", "ConfigError", "__version__"]

_LAZY = {
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
