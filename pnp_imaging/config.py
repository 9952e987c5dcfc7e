"""Run configuration: schema, defaults, validation (once, before any work) and ``--set`` overrides.

One schema is shared by the CLI (``pnp-imaging run CONFIG.yaml``), the Python API
(``pnp_imaging.run(config)``) and the report (which stores the resolved config).
:func:`resolve_config` merges a YAML file or dict over :data:`DEFAULTS` and returns a frozen
:class:`RunConfig` (one frozen dataclass per section). Every section is validated there —
the operator and noise sections by :mod:`operators.registry`, the sampler's options by its
registered family, denoiser names against the zoo — so every problem raises
:class:`ConfigError` before any work starts, one line naming the key and the fix::

    sampler.n_stepz: unknown key; did you mean 'n_steps'? (valid: chains, n_burnin, ...)

Relative paths (``image``, ``observation``, kernel/mask files) are resolved against the folder
of the YAML file; for a dict, against ``base_dir`` (default: the working directory).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["ConfigError", "DEFAULTS", "RunConfig", "PriorConfig", "SamplerConfig", "MapConfig", "EstimatesConfig",
           "MismatchConfig", "load_config", "resolve_config", "apply_overrides", "parse_override", "deep_merge",
           "fast_budget", "with_fast_budget", "has_exact_data_flow", "AUTO_SAMPLERS"]


class ConfigError(ValueError):
    """A one-line, user-facing configuration error (the CLI exits with code 2)."""


#: Defaults of every section. ``None`` means "not set". Nested dicts are sections.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "image": None,  # ground-truth image: the observation is simulated from it
    "observation": None,  # or a real observation y (.npy/.png); then no truth-based metrics
    "operator": {"type": "blur", "kernel": "uniform", "size": 9, "boundary": "circular"},
    "noise": {"type": "gaussian", "sigma": 1.0 / 255.0},
    # denoiser None: the zoo's sampling prior for the image's channel count (denoisers_zoo.default_prior)
    # batch_chunk: chains per denoiser call (int), auto (priors.AUTO_CHUNK_PIXELS pixels per call) or null (all)
    # precision: full (the run's dtype) or bfloat16 (the denoiser under autocast; docs/algorithms.md §memory)
    "prior": {"denoiser": None, "eps": (5.0 / 255.0) ** 2, "alpha": 1.0, "lipschitz": None, "batch_chunk": "auto",
              "precision": "full"},
    # loop keys; the family's own options (e.g. stages, eta, step_size, box) sit in the same section
    # type auto: AUTO_SAMPLERS["exact"] where the data term has an exact flow, else AUTO_SAMPLERS["explicit"]
    "sampler": {"type": "auto", "n_steps": 2000, "n_burnin": 200, "thin": 1, "chains": 2,
                "init": "map", "init_steps": 30, "init_spread": 0.05, "max_nll_rise": 2.0,
                "until": None},  # run until converged: {ess, rhat, max_minutes, check_every}; n_steps = cap
    # splitting: auto = proximal data step when exact (Gaussian noise + inpainting/circular blur), else gradient
    # type continuation: sigma_max/levels/target_steps (docs/algorithms.md §map-continuation); pnp-sgd ignores them
    "map": {"type": "pnp-sgd", "n_steps": 300, "tol": 1e-5, "enabled": True, "splitting": "auto",
            "step_fraction": 1.0, "sigma_max": 25.0 / 255.0, "levels": 8, "target_steps": 8},
    "estimates": {"credible_level": 0.9, "scales": [1, 2, 4, 8], "n_projections": 4},
    "checkpoint_every": 500,
    "mismatch": None,  # optional: {denoiser: other zoo name, operator: {...}, n_states: int, run_other: bool}
    "device": "auto",
    "dtype": "float32",
}
_FREE_SECTIONS = {"operator", "noise", "mismatch"}
#: what ``sampler.type: auto`` resolves to (docs/algorithms.md §likelihood-exact)
AUTO_SAMPLERS = {"exact": "pnp-kinetic-exp", "explicit": "skrock"}
#: the chains' starts (docs/algorithms.md §initialisation): the reported MAP, a short PnP-SGD run
#: of ``init_steps`` iterations of their own, or ``Problem.initial_guess()``
SAMPLER_INITS = ("map", "pnp-sgd", "back_projection")
_SAMPLER_LOOP_KEYS = tuple(DEFAULTS["sampler"])


def _fail(key: str, message: str):
    raise ConfigError(f"{key}: {message}")


# --------------------------------------------------------------------------------------------
# typed sections
# --------------------------------------------------------------------------------------------
def _int(key: str, value, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(key, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        _fail(key, f"must be >= {minimum}, got {value}")
    return value


def _positive(key: str, value, maximum: float | None = None, what: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        _fail(key, f"must be a positive number, got {value!r}")
    if maximum is not None and not value <= maximum:
        _fail(key, f"must be in (0, {maximum:g}]{what}, got {value}")
    return float(value)


def _choice(key: str, value, valid) -> str:
    if value not in valid:
        _fail(key, f"must be one of {', '.join(repr(v) for v in valid)}, got {value!r}")
    return value


@dataclass(frozen=True)
class PriorConfig:
    denoiser: str | None
    eps: float
    alpha: float
    lipschitz: float | None
    batch_chunk: int | str | None = "auto"
    precision: str = "full"

    @classmethod
    def from_dict(cls, d: dict) -> "PriorConfig":
        name = d["denoiser"]
        if name is not None:
            import denoisers_zoo

            if not isinstance(name, str) or name not in denoisers_zoo.available():
                _fail("prior.denoiser", f"unknown denoiser {name!r}; valid: {', '.join(denoisers_zoo.available())}")
        lip = d["lipschitz"]
        if lip is not None:
            _positive("prior.lipschitz", lip)
        chunk = d["batch_chunk"]
        if chunk not in (None, "auto"):
            _int("prior.batch_chunk", chunk, 1)
        from pnp_imaging.priors import PRECISIONS

        return cls(name, _positive("prior.eps", d["eps"]), _positive("prior.alpha", d["alpha"]), lip, chunk,
                   _choice("prior.precision", d["precision"], PRECISIONS))


@dataclass(frozen=True)
class SamplerConfig:
    """Loop settings plus ``options``: the family's Options dataclass (same key names).
    ``until``: a :class:`~pnp_imaging.convergence.StopRule` (run until converged, ``n_steps`` the
    hard cap) or None."""

    type: str
    n_steps: int
    n_burnin: int
    thin: int
    chains: int
    init: str
    init_steps: int
    init_spread: float
    max_nll_rise: float | None
    options: Any
    until: Any = None

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerConfig":
        from pnp_imaging.samplers import get_sampler, sampler_names

        if d["type"] not in sampler_names():
            _fail("sampler.type", f"unknown sampler {d['type']!r}; valid: {', '.join(sampler_names())}")
        n_steps = _int("sampler.n_steps", d["n_steps"], 1)
        n_burnin, thin = _int("sampler.n_burnin", d["n_burnin"], 0), _int("sampler.thin", d["thin"], 1)
        if n_burnin >= n_steps:
            _fail("sampler.n_burnin", f"must be < sampler.n_steps ({n_steps}), got {n_burnin}")
        if (n_steps - n_burnin) // thin < 2:
            _fail("sampler.thin", "keeps fewer than 2 samples; lower thin or raise n_steps")
        rise = d["max_nll_rise"]
        if rise is not None:
            _positive("sampler.max_nll_rise", rise, what=" (or null to disable the guard)")
        if not isinstance(d["init_spread"], (int, float)) or isinstance(d["init_spread"], bool) or d["init_spread"] < 0:
            _fail("sampler.init_spread", f"must be a number >= 0, got {d['init_spread']!r}")
        until = _until(d["until"])
        spec = get_sampler(d["type"])
        try:
            options = spec.make_options({k: v for k, v in d.items() if k not in _SAMPLER_LOOP_KEYS})
        except (TypeError, ValueError) as exc:
            raise ConfigError(_prefixed("sampler", exc)) from None
        return cls(d["type"], n_steps, n_burnin, thin, _int("sampler.chains", d["chains"], 1),
                   _choice("sampler.init", d["init"], SAMPLER_INITS), _int("sampler.init_steps", d["init_steps"], 1),
                   float(d["init_spread"]), rise, options, until)

    def to_dict(self) -> dict:
        loop = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        loop["until"] = None if self.until is None else self.until.to_dict()
        return {**loop, **dataclasses.asdict(self.options)}


def _until(value):
    from pnp_imaging.convergence import StopRule

    try:
        return StopRule.from_value(value, "sampler.until")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _prefixed(section: str, exc: Exception) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return msg if msg.startswith(f"{section}.") else f"{section}.{msg}"


@dataclass(frozen=True)
class MapConfig:
    type: str
    n_steps: int
    tol: float
    enabled: bool
    splitting: str
    step_fraction: float
    sigma_max: float = 25.0 / 255.0
    levels: int = 8
    target_steps: int = 8

    @classmethod
    def from_dict(cls, d: dict) -> "MapConfig":
        _choice("map.type", d["type"], ("pnp-sgd", "continuation"))
        if not isinstance(d["enabled"], bool):
            _fail("map.enabled", f"must be true or false, got {d['enabled']!r}")
        if d["type"] == "continuation" and d["splitting"] == "gradient":
            _fail("map.splitting", "continuation needs the proximal data step; use 'auto' or map.type: pnp-sgd")
        return cls(d["type"], _int("map.n_steps", d["n_steps"], 1), _positive("map.tol", d["tol"]), d["enabled"],
                   _choice("map.splitting", d["splitting"], ("auto", "proximal", "gradient")),
                   _positive("map.step_fraction", d["step_fraction"], 2.0, " (forward-backward stability)"),
                   _positive("map.sigma_max", d["sigma_max"], 1.0, " (a denoiser std on the [0, 1] scale)"),
                   _int("map.levels", d["levels"], 1), _int("map.target_steps", d["target_steps"], 0))


@dataclass(frozen=True)
class EstimatesConfig:
    credible_level: float
    scales: tuple[int, ...]
    n_projections: int

    @classmethod
    def from_dict(cls, d: dict) -> "EstimatesConfig":
        level = d["credible_level"]
        if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
            _fail("estimates.credible_level", f"must be in (0, 1), e.g. 0.9; got {level!r}")
        scales = d["scales"]
        if not isinstance(scales, list) or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in scales):
            _fail("estimates.scales", f"must be a list of positive integers like [1, 2, 4, 8], got {scales!r}")
        return cls(float(level), tuple(scales), _int("estimates.n_projections", d["n_projections"], 0))


@dataclass(frozen=True)
class MismatchConfig:
    """Which second model the mismatch analysis compares with (``pnp_imaging.mismatch``):
    ``denoiser`` (zoo name) and/or ``operator`` (operator section), ``n_states`` chain states
    used for the estimates, ``run_other``: also sample with the second model."""

    denoiser: str | None
    operator: Any
    n_states: int
    run_other: bool = False

    @classmethod
    def from_dict(cls, d: dict | None, base_dir: Path) -> "MismatchConfig | None":
        if d is None:
            return None
        _check_keys(d, {"denoiser": None, "operator": None, "n_states": None, "run_other": None}, "mismatch.")
        name = d.get("denoiser")
        if name is not None:
            import denoisers_zoo

            if name not in denoisers_zoo.available():
                _fail("mismatch.denoiser", f"unknown denoiser {name!r}; valid: {', '.join(denoisers_zoo.available())}")
        operator = d.get("operator")
        if operator is not None:
            operator = _operator_section(operator, base_dir, "mismatch.operator")
        if name is None and operator is None:
            _fail("mismatch", "give 'denoiser' (a second zoo model) and/or 'operator' (a second forward model)")
        n_states = _int("mismatch.n_states", d.get("n_states") or 64, 1)
        run_other = d.get("run_other", False)
        if not isinstance(run_other, bool):
            _fail("mismatch.run_other", f"must be true or false, got {run_other!r}")
        return cls(name, operator, n_states, run_other)


@dataclass(frozen=True)
class RunConfig:
    """A resolved, validated run configuration (see :data:`DEFAULTS` for the keys)."""

    seed: int
    image: str | None
    observation: str | None
    operator: Any
    noise: dict
    prior: PriorConfig
    sampler: SamplerConfig
    map: MapConfig
    estimates: EstimatesConfig
    checkpoint_every: int
    mismatch: MismatchConfig | None
    device: str
    dtype: str

    def to_dict(self) -> dict:
        """Plain dict (YAML/JSON-able; the sampler section flat, as written in a config file)."""
        out = dataclasses.asdict(self)
        out["sampler"] = self.sampler.to_dict()
        out["estimates"]["scales"] = list(self.estimates.scales)
        from pnp_imaging._io import plain

        return plain(out)


# --------------------------------------------------------------------------------------------
# merging and validation
# --------------------------------------------------------------------------------------------
def _check_keys(section: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str) -> None:
    for key in section:
        if key not in defaults:
            valid = sorted(defaults)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            owners = _families_with_option(key) if prefix == "sampler." else []
            if owners:
                hint = f"it is an option of {', '.join(owners)} (set sampler.type: {owners[0]}); "
            _fail(f"{prefix}{key}", f"unknown key; {hint}(valid: {', '.join(valid)})")


def _families_with_option(key: str) -> list[str]:
    from pnp_imaging.samplers import get_sampler, sampler_names

    return [name for name in sampler_names() if key in get_sampler(name).option_names()]


def _sampler_defaults(given: Any) -> dict:
    """The sampler section's valid keys: loop keys + the chosen family's options."""
    from pnp_imaging.samplers import get_sampler, sampler_names

    kind = given.get("type", DEFAULTS["sampler"]["type"]) if isinstance(given, Mapping) else DEFAULTS["sampler"]["type"]
    if kind not in sampler_names():
        _fail("sampler.type", f"unknown sampler {kind!r}; valid: {', '.join(sampler_names())}")
    spec = get_sampler(kind)
    options = spec.options()
    loop = {**DEFAULTS["sampler"], **({"n_burnin": 0} if spec.independent else {})}  # independent draws: no burn-in
    return {**loop, **{f.name: getattr(options, f.name) for f in dataclasses.fields(options)}}


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any], prefix: str) -> dict:
    """Deep-merge ``given`` over ``defaults``; free-form sections take any keys (checked later)."""
    if not isinstance(given, Mapping):
        _fail(prefix.rstrip(".") or "config", f"expected a mapping, got {type(given).__name__}")
    _check_keys(given, defaults, prefix)
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        name = f"{prefix}{key}"
        value = given.get(key, default)
        if name in _FREE_SECTIONS and key in given:
            if value is not None and not isinstance(value, (Mapping, list)):
                _fail(name, f"expected a mapping like {{type: ...}}, got {value!r}")
            out[key] = copy.deepcopy(value)
        elif name == "sampler":
            out[key] = _merge(_sampler_defaults(value or {}), value or {}, "sampler.")
        elif isinstance(default, dict) and name not in _FREE_SECTIONS:
            out[key] = _merge(default, value if value is not None else {}, f"{name}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _input_file(cfg: dict, key: str, base_dir: Path) -> str | None:
    if cfg[key] is None:
        return None
    path = Path(cfg[key])
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        _fail(key, f"file not found: {path}; give a path to a .png/.tif/.jpg/.npy file (relative paths are "
                   "resolved against the config file's folder)")
    return str(path)


def _operator_section(section: Any, base_dir: Path, where: str):
    """Validate an operator section with :mod:`operators.registry`; file paths made absolute."""
    from operators.registry import validate_operator

    section = _resolve_files(copy.deepcopy(section), base_dir, where)
    try:
        validate_operator(section, where=where)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    return section


_FILE_KEYS = ("kernel", "mask")


def _resolve_files(section: Any, base_dir: Path, where: str):
    """Kernel/mask file paths in an operator section made absolute (relative to the config)."""
    if isinstance(section, list):
        return [_resolve_files(sub, base_dir, f"{where}[{i}]") for i, sub in enumerate(section)]
    if not isinstance(section, dict):
        return section
    for key, value in section.items():
        if isinstance(value, dict):
            section[key] = _resolve_files(value, base_dir, f"{where}.{key}")
        elif key in _FILE_KEYS and isinstance(value, str) and Path(value).suffix:
            path = Path(value) if Path(value).is_absolute() else base_dir / value
            if not path.is_file():
                _fail(f"{where}.{key}", f"file not found: {path}; give an existing .npy/.png file or a built-in name")
            section[key] = str(path)
    return section


def _noise_section(section: Any) -> dict:
    from operators.registry import validate_noise

    try:
        validate_noise(section)
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    return dict(section)


def _build(cfg: dict, base_dir: Path) -> RunConfig:
    if cfg["image"] is None and cfg["observation"] is None:
        _fail("image", "missing; give 'image' (ground truth, observation simulated) and/or 'observation' (measured y)")
    if cfg["dtype"] not in ("float32", "float64"):
        _fail("dtype", f"must be 'float32' or 'float64', got {cfg['dtype']!r}")
    if cfg["prior"]["precision"] == "bfloat16" and cfg["dtype"] != "float32":
        _fail("prior.precision", "bfloat16 applies to float32 chains (torch.autocast leaves float64 as it is); "
                                 "set dtype: float32 or prior.precision: full")
    device = str(cfg["device"])
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        _fail("device", f"must be 'auto', 'cpu' or 'cuda[:N]', got {cfg['device']!r}")
    return RunConfig(
        seed=_int("seed", cfg["seed"]),
        image=_input_file(cfg, "image", base_dir),
        observation=_input_file(cfg, "observation", base_dir),
        operator=_operator_section(cfg["operator"], base_dir, "operator"),
        noise=_noise_section(cfg["noise"]),
        prior=PriorConfig.from_dict(cfg["prior"]),
        sampler=SamplerConfig.from_dict(cfg["sampler"]),
        map=MapConfig.from_dict(cfg["map"]),
        estimates=EstimatesConfig.from_dict(cfg["estimates"]),
        checkpoint_every=_int("checkpoint_every", cfg["checkpoint_every"], 1),
        mismatch=MismatchConfig.from_dict(cfg["mismatch"], base_dir),
        device=device,
        dtype=cfg["dtype"],
    )


def resolve_config(config: Mapping[str, Any] | RunConfig | str | os.PathLike, *,
                   base_dir: str | os.PathLike | None = None) -> RunConfig:
    """Return the full, validated :class:`RunConfig` (defaults filled in, paths made absolute).

    ``config`` is a dict, a YAML file path or a :class:`RunConfig` (returned as is). Relative
    file paths are resolved against ``base_dir`` (default: the YAML file's folder, or the
    working directory for a dict). Raises :class:`ConfigError` on the first problem.
    """
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        given = load_config(path)
        base = Path(base_dir) if base_dir is not None else path.parent
    else:
        given = dict(config)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _build(_merge(DEFAULTS, _choose_sampler(given), ""), base.resolve())


def has_exact_data_flow(operator: Any, noise: Any) -> bool:
    """True when the configured data term is Gaussian with an operator whose ``A^T A`` is diagonal
    in a known basis (identity, inpainting, blur with circular boundary): then the likelihood-exact
    samplers apply."""
    if not isinstance(operator, Mapping) or not isinstance(noise, Mapping) or noise.get("type") != "gaussian":
        return False
    kind = operator.get("type")
    return kind in ("identity", "inpainting") or (kind == "blur" and operator.get("boundary", "circular") == "circular")


def _choose_sampler(given: Mapping[str, Any]) -> dict:
    """Resolve ``sampler.type: auto`` (the default): the likelihood-exact sampler where the data
    term allows it, else the explicit one (:data:`AUTO_SAMPLERS`)."""
    sampler = given.get("sampler")
    sampler = {} if sampler is None else sampler
    if not isinstance(sampler, Mapping) or sampler.get("type", "auto") != "auto":
        return dict(given)
    exact = has_exact_data_flow(given.get("operator", DEFAULTS["operator"]), given.get("noise", DEFAULTS["noise"]))
    return {**given, "sampler": {**sampler, "type": AUTO_SAMPLERS["exact" if exact else "explicit"]}}


def load_config(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise ConfigError(f"config: {path}{where} is not valid YAML; check indentation and colons") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a mapping of keys (seed:, image:, ...)")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value`` (value read as YAML, so ``3``, ``0.1``, ``[1,2]``, ``null`` work)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key.sub=value, e.g. sampler.n_steps=500")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text}: empty key; expected key.sub=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(config: Mapping[str, Any], overrides: list[str]) -> dict:
    """Apply ``--set key.sub=value`` overrides to a raw (unresolved) config dict."""
    out = copy.deepcopy(dict(config))
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    """``over`` merged into a copy of ``base``, section by section (raw config dicts)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def fast_budget() -> dict:
    """The ``--fast`` budget (``pnp_imaging/configs/fast_budget.yaml``): seconds of work, same pipeline.
    Its ``family_options`` section holds options of single sampler families; :func:`with_fast_budget`
    applies them."""
    return load_config(Path(__file__).resolve().parent / "configs" / "fast_budget.yaml")


def with_fast_budget(config: Mapping[str, Any]) -> dict:
    """``config`` shrunk to the ``--fast`` budget: the loop keys for every sampler, plus the
    options the budget gives for the config's own family (e.g. fewer SK-ROCK stages)."""
    budget = fast_budget()
    family = budget.pop("family_options", {}) or {}
    kind = _choose_sampler(config).get("sampler", {}).get("type")
    if kind in family:
        budget = deep_merge(budget, {"sampler": family[kind]})
    return deep_merge(config, budget)
