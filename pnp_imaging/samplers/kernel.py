"""The one sampler interface: a bound :class:`Kernel` and the registry of sampler families.

A sampler family is a module with pure functions ``init(x0, problem, prior, params) -> state``
and ``step(state, problem, prior, params, *, generator) -> (state, info)`` over a NamedTuple
state whose field ``x`` holds the chains ``[B, C, H, W]``, a frozen ``Options`` dataclass (what a
user may set; the same names in the config's ``sampler:`` section, in code and in the report),
and a ``build(problem, prior, options) -> Kernel`` that resolves those options into parameters.
It registers a :class:`SamplerSpec` under one name. :func:`pnp_imaging.sample`, the statistics,
the diagnostics, checkpoint/resume and the report see only :class:`Kernel` and the spec; none of
them branches on a sampler's name.

Families whose draws are independent (``SamplerSpec.independent``; e.g. diffusion samplers that
return a fresh posterior sample per step) use the same interface: each step produces a new
batch of samples, and the caller may then set ``n_burnin = 0``.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Kernel", "SamplerSpec", "register", "get_sampler", "sampler_names", "build_kernel"]

#: modules that register the built-in families when first imported
_BUILTIN_MODULES = ("pnp_imaging.samplers.ula", "pnp_imaging.samplers.skrock", "pnp_imaging.samplers.exponential",
                    "pnp_imaging.samplers.kinetic", "pnp_imaging.diffusion")
_REGISTRY: dict[str, "SamplerSpec"] = {}


@dataclass(frozen=True, eq=False)
class Kernel:
    """A sampler bound to a problem, a prior and its resolved parameters.

    ``init(x0)`` builds the state; ``step(state, *, generator)`` is the family's pure step;
    ``state_type`` rebuilds a state from a checkpoint; ``config()`` is the JSON-able description
    stored in checkpoints (a resume checks it) and reports.
    """

    name: str
    problem: Any
    prior: Any
    params: Any
    init_fn: Callable
    step_fn: Callable
    state_type: type
    #: optional ``rebind_fn(kernel, problem, prior) -> Kernel`` for params derived from the problem
    rebind_fn: Callable | None = None

    def rebind(self, problem, prior) -> "Kernel":
        """The same sampler and parameters (step size, box, ...) bound to another problem/prior
        (e.g. a mismatched model); params precomputed from the problem are rebuilt."""
        if self.rebind_fn is not None:
            return self.rebind_fn(self, problem, prior)
        return dataclasses.replace(self, problem=problem, prior=prior)

    def init(self, x0):
        return self.init_fn(x0, self.problem, self.prior, self.params)

    def step(self, state, *, generator):
        return self.step_fn(state, self.problem, self.prior, self.params, generator=generator)

    def config(self) -> dict:
        if hasattr(self.params, "describe"):  # params holding precomputed tensors describe themselves
            params = self.params.describe()
        elif dataclasses.is_dataclass(self.params):
            params = dataclasses.asdict(self.params)
        else:
            params = dict(self.params)
        prior = self.prior
        return {
            "sampler": self.name,
            "params": params,
            "prior": {
                "eps": getattr(prior, "eps", None),
                "alpha": getattr(prior, "alpha", None),
                "residual_lipschitz": getattr(prior, "residual_lipschitz", None),
                "denoiser": getattr(getattr(prior, "denoiser", None), "name", None),
            },
        }


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler family.

    ``name``: the one name used by the config (``sampler.type``), the code and the report.
    ``options``: frozen dataclass of user options with defaults. ``build(problem, prior,
    options) -> Kernel``. ``independent``: steps give independent draws (no burn-in needed).
    ``bias``: one sentence stating the family's known bias, discretisation or approximation (shown in reports).
    ``nll_guard``: the log-likelihood-rise divergence guard applies (``docs/algorithms.md
    §divergence-guards``); False for a family with no step size to blow up whose target's data
    misfit is not the posterior's (pnp-dm).
    """

    name: str
    description: str
    options: type
    build: Callable[[Any, Any, Any], Kernel]
    independent: bool = False
    bias: str = ""
    nll_guard: bool = True

    def option_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options))

    def make_options(self, values: dict | None = None, *, where: str = "sampler"):
        """Options from a dict of user values; unknown names fail in one line naming them."""
        values = dict(values or {})
        valid = self.option_names()
        for key in values:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ValueError(f"{where}.{key}: not an option of sampler '{self.name}'; {hint}(options: {', '.join(valid)})")
        return self.options(**values)


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add a family to the registry (a second registration under the same name is refused)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"sampler '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def sampler_names() -> tuple[str, ...]:
    """Names of the registered families (built-ins included)."""
    _load_builtins()
    return tuple(sorted(_REGISTRY))


def get_sampler(name: str) -> SamplerSpec:
    """The spec registered under ``name``; a one-line error lists the valid names."""
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"sampler: unknown sampler {name!r}; valid: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def build_kernel(name: str, problem, prior, options=None, **values) -> Kernel:
    """Bind family ``name`` to ``problem`` and ``prior``: ``options`` (its Options dataclass) or
    keyword values for it (e.g. ``build_kernel("skrock", problem, prior, stages=15)``)."""
    spec = get_sampler(name)
    if options is None:
        options = spec.make_options(values)
    elif values:
        options = dataclasses.replace(options, **values)
    return spec.build(problem, prior, options)
