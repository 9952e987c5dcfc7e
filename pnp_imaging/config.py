"""Run configuration: schema, defaults, validation and ``--set`` overrides.

One schema is shared by the CLI (``pnp-imaging run CONFIG.yaml``), the Python API
(``pnp_imaging.run(config)``) and the report (which stores the resolved config).

Validation happens before any work starts; every problem raises :class:`ConfigError` whose
message is one line naming the key and the fix, e.g.::

    sampler.n_stepz: unknown key; did you mean 'n_steps'? (valid: chains, n_burnin, ...)

Sub-sections ``operator`` and ``noise`` are validated by :mod:`operators.registry` when the
problem is built (still before any sampling), because their keys depend on the type.
"""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["ConfigError", "DEFAULTS", "load_config", "resolve_config", "apply_overrides", "parse_override"]


class ConfigError(ValueError):
    """A one-line, user-facing configuration error (the CLI exits with code 2)."""


_REQUIRED = object()

#: Defaults of every section. ``None`` means "not set". Nested dicts are sections.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "image": None,  # ground-truth image: the observation is simulated from it
    "observation": None,  # or a real observation y (.npy/.png); then no truth-based metrics
    "operator": {"type": "blur", "kernel": "uniform", "size": 9, "boundary": "circular"},
    "noise": {"type": "gaussian", "sigma": 1.0 / 255.0},
    "prior": {
        # the Lipschitz-controlled DnCNN trained at sigma = 5/255: the PnP-ULA paper's setting
        # (residual 1-Lipschitz, eps = (5/255)^2); drunet_* are noise-conditional alternatives
        "denoiser": "lipdncnn_gray_s5",
        "eps": (5.0 / 255.0) ** 2,  # denoiser noise VARIANCE (PnP-ULA epsilon)
        "alpha": 1.0,
        "lipschitz": None,  # residual Lipschitz constant L; None: the model card's value
    },
    "sampler": {
        "type": "skrock",
        "n_steps": 2000,
        "n_burnin": 200,
        "thin": 1,
        "chains": 2,
        "step_size": "auto",
        "stages": 10,
        "eta": 0.05,
        "step_fraction": 0.99,
        "box": [-1.0, 2.0],
        "projected": False,
        "init": "map",  # map | back_projection (inpainting: observed pixels + filled holes, Problem.initial_guess)
        "init_spread": 0.05,
        "max_nll_rise": 2.0,  # divergence guard: -log p(y|x) rise above its best, per measurement (null: off)
    },
    # splitting: auto = proximal data step when exact (Gaussian noise + inpainting/circular blur), else gradient
    "map": {"type": "pnp-sgd", "n_steps": 300, "tol": 1e-5, "enabled": True, "splitting": "auto",
            "step_fraction": 1.0},  # delta_0 = step_fraction / (alpha L / eps [+ L_y for gradient splitting])
    "estimates": {"credible_level": 0.9, "scales": [1, 2, 4, 8], "n_projections": 4},
    "checkpoint_every": 500,
    "mismatch": None,  # optional: {denoiser: other zoo name} and/or {operator: {...}}
    "device": "auto",
    "dtype": "float32",
}

_SAMPLER_TYPES = ("pnp-ula", "skrock")
_MAP_TYPES = ("pnp-sgd",)
_INT_KEYS = {
    "seed",
    "sampler.n_steps",
    "sampler.n_burnin",
    "sampler.thin",
    "sampler.chains",
    "sampler.stages",
    "map.n_steps",
    "estimates.n_projections",
    "checkpoint_every",
}
_POSITIVE_FLOATS = {"prior.eps", "prior.alpha", "sampler.eta", "sampler.step_fraction", "map.tol", "map.step_fraction"}


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"{key}: {message}")


def _check_keys(section: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str) -> None:
    for key in section:
        if key not in defaults:
            valid = sorted(defaults)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            _fail(f"{prefix}{key}", f"unknown key; {hint}(valid: {', '.join(valid)})")


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any], prefix: str, free: set[str]) -> dict:
    """Deep-merge ``given`` over ``defaults``; sections named in ``free`` take any keys."""
    if not isinstance(given, Mapping):
        _fail(prefix.rstrip(".") or "config", f"expected a mapping, got {type(given).__name__}")
    _check_keys(given, defaults, prefix)
    out: dict[str, Any] = {}
    for key, default in defaults.items():
        name = f"{prefix}{key}"
        if key not in given:
            out[key] = copy.deepcopy(default)
            continue
        value = given[key]
        if name in free:
            if value is not None and not isinstance(value, Mapping):
                _fail(name, f"expected a mapping like {{type: ...}}, got {value!r}")
            out[key] = copy.deepcopy(dict(value)) if value is not None else None
        elif isinstance(default, dict):
            out[key] = _merge(default, value if value is not None else {}, f"{name}.", free)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _validate(cfg: dict, base_dir: Path) -> None:
    for key in sorted(_INT_KEYS):
        value = _get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, f"must be an integer, got {value!r}")
        if key != "seed" and value < (0 if key == "sampler.n_burnin" else 1):
            _fail(key, f"must be >= {0 if key == 'sampler.n_burnin' else 1}, got {value}")
    for key in sorted(_POSITIVE_FLOATS):
        value = _get(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            _fail(key, f"must be a positive number, got {value!r}")
    s = cfg["sampler"]
    if s["type"] not in _SAMPLER_TYPES:
        _fail("sampler.type", f"unknown sampler {s['type']!r}; valid: {', '.join(_SAMPLER_TYPES)}")
    if s["n_burnin"] >= s["n_steps"]:
        _fail("sampler.n_burnin", f"must be < sampler.n_steps ({s['n_steps']}), got {s['n_burnin']}")
    if (s["n_steps"] - s["n_burnin"]) // s["thin"] < 2:
        _fail("sampler.thin", "keeps fewer than 2 samples; lower thin or raise n_steps")
    if s["step_size"] != "auto" and not (isinstance(s["step_size"], (int, float)) and s["step_size"] > 0):
        _fail("sampler.step_size", f"must be 'auto' or a positive number, got {s['step_size']!r}")
    if not s["step_fraction"] <= 1.0:
        _fail("sampler.step_fraction", f"must be in (0, 1], got {s['step_fraction']}")
    if s["init"] not in ("map", "back_projection"):
        _fail("sampler.init", f"must be 'map' or 'back_projection', got {s['init']!r}")
    rise = s["max_nll_rise"]
    if rise is not None and (isinstance(rise, bool) or not isinstance(rise, (int, float)) or not rise > 0):
        _fail("sampler.max_nll_rise", f"must be a positive number (or null to disable the guard), got {rise!r}")
    if not cfg["map"]["step_fraction"] <= 2.0:
        _fail("map.step_fraction", f"must be in (0, 2] (forward-backward stability), got {cfg['map']['step_fraction']}")
    if cfg["map"]["splitting"] not in ("auto", "proximal", "gradient"):
        _fail("map.splitting", f"must be 'auto', 'proximal' or 'gradient', got {cfg['map']['splitting']!r}")
    box = s["box"]
    if box is not None and (not isinstance(box, (list, tuple)) or len(box) != 2 or not box[0] < box[1]):
        _fail("sampler.box", f"must be [low, high] with low < high (or null), got {box!r}")
    if cfg["map"]["type"] not in _MAP_TYPES:
        _fail("map.type", f"unknown MAP estimator {cfg['map']['type']!r}; valid: {', '.join(_MAP_TYPES)}")
    level = cfg["estimates"]["credible_level"]
    if not isinstance(level, (int, float)) or not 0.0 < level < 1.0:
        _fail("estimates.credible_level", f"must be in (0, 1), e.g. 0.9; got {level!r}")
    scales = cfg["estimates"]["scales"]
    if not isinstance(scales, list) or not all(isinstance(k, int) and k >= 1 for k in scales):
        _fail("estimates.scales", f"must be a list of positive integers like [1, 2, 4, 8], got {scales!r}")
    if cfg["dtype"] not in ("float32", "float64"):
        _fail("dtype", f"must be 'float32' or 'float64', got {cfg['dtype']!r}")
    if cfg["device"] not in ("auto", "cpu") and not str(cfg["device"]).startswith("cuda"):
        _fail("device", f"must be 'auto', 'cpu' or 'cuda[:N]', got {cfg['device']!r}")
    if not isinstance(cfg["prior"]["denoiser"], str):
        _fail("prior.denoiser", "must be a zoo name (see `pnp-imaging zoo list`)")
    if cfg["image"] is None and cfg["observation"] is None:
        _fail("image", "missing; give 'image' (ground truth, observation simulated) and/or 'observation' (measured y)")
    for key in ("image", "observation"):
        if cfg[key] is not None:
            path = Path(cfg[key])
            if not path.is_absolute():
                path = base_dir / path
            if not path.is_file():
                _fail(key, f"file not found: {path}; give a path to a .png/.tif/.jpg/.npy file")
            cfg[key] = str(path)
    if cfg["mismatch"] is not None:
        _check_keys(cfg["mismatch"], {"denoiser": None, "operator": None, "n_states": None}, "mismatch.")
        if cfg["mismatch"].get("operator") is not None:
            _resolve_operator_files(cfg["mismatch"]["operator"], base_dir, "mismatch.operator")
    _resolve_operator_files(cfg["operator"], base_dir, "operator")


_FILE_KEYS = ("kernel", "mask")


def _resolve_operator_files(section: Any, base_dir: Path, where: str) -> None:
    """Make kernel/mask file paths in an operator section absolute (relative to the config)."""
    if isinstance(section, list):
        for i, sub in enumerate(section):
            _resolve_operator_files(sub, base_dir, f"{where}[{i}]")
        return
    if not isinstance(section, dict):
        return
    for key, value in section.items():
        if isinstance(value, dict):
            _resolve_operator_files(value, base_dir, f"{where}.{key}")
        elif key in _FILE_KEYS and isinstance(value, str) and Path(value).suffix:
            path = Path(value) if Path(value).is_absolute() else base_dir / value
            if not path.is_file():
                _fail(f"{where}.{key}", f"file not found: {path}; give an existing .npy/.png file or a built-in name")
            section[key] = str(path)


def resolve_config(config: Mapping[str, Any] | str | os.PathLike, *, base_dir: str | os.PathLike | None = None) -> dict:
    """Return the full, validated config (defaults filled in, paths made absolute).

    ``config`` is a dict or the path of a YAML file; relative file paths are resolved against
    ``base_dir`` (default: the YAML file's folder, or the working directory for a dict).
    Raises :class:`ConfigError` on the first problem.
    """
    if isinstance(config, (str, os.PathLike)):
        path = Path(config)
        given = load_config(path)
        base = Path(base_dir) if base_dir is not None else path.parent
    else:
        given = dict(config)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    cfg = _merge(DEFAULTS, given, "", free={"operator", "noise", "mismatch"})
    _validate(cfg, base.resolve())
    return cfg


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
