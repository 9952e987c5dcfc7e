"""Build operators and noise models from plain config dicts.

Operator config (``type`` picks the builder in :data:`OPERATORS`):

* ``{"type": "identity"}``
* ``{"type": "blur", "kernel": K, "boundary": "circular"|"reflect"|"replicate"|"zero"}`` with
  ``K`` one of ``"uniform"`` (+ ``size``), ``"gaussian"`` (+ ``size``, ``std`` in pixels),
  ``"motion"`` (+ ``size``, ``seed``, optional ``length``, ``curvature``), a ``.npy``/image
  file path, or an array. ``boundary`` defaults to ``"circular"``.
* ``{"type": "inpainting", "mask": M}`` with ``M`` one of ``"random"`` (+ ``missing_ratio``,
  ``seed``), ``"box"`` (+ ``box = [top, left, height, width]``, the missing rectangle), a file
  path, or an array.
* ``{"type": "blur_inpainting", "blur": {...blur keys...}, "inpainting": {...inpainting keys...}}``:
  blur then mask, ``A = M K``.
* a list of operator configs, applied in order (``[blur_cfg, inpainting_cfg]`` = blur then mask).

Random kernels/masks use ``seed`` from the config when given, else the ``generator`` passed to
:func:`build_operator`; with neither, an error asks for a seed.

Noise config (:data:`NOISES`): ``{"type": "gaussian", "sigma": s}``,
``{"type": "poisson", "gain": g[, "threshold": t]}``,
``{"type": "poisson_gaussian", "gain": g, "sigma": s[, "threshold": t]}``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from operators._io import ARRAY_SUFFIXES
from operators.base import LinearOperator
from operators.blur import Blur, normalise_image_shape
from operators.identity import Composition, Identity
from operators.inpainting import Inpainting, box_mask, random_mask
from operators.kernels import gaussian_kernel, motion_kernel, uniform_kernel
from operators.noise import GaussianNoise, NoiseModel, PoissonGaussianNoise, PoissonNoise

__all__ = ["OPERATORS", "NOISES", "build_operator", "build_noise", "validate_operator", "validate_noise"]


def _check_keys(cfg: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(cfg) - allowed - {"type"})
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; valid keys are {sorted(allowed | {'type'})}")


def _require(cfg: dict, key: str, where: str, example: str):
    if key not in cfg:
        raise ValueError(f"{where}.{key}: missing; add e.g. {example}")
    return cfg[key]


def _generator(cfg: dict, where: str, generator: torch.Generator | None) -> torch.Generator:
    if "seed" in cfg:
        return torch.Generator().manual_seed(cfg["seed"])
    if generator is None:
        raise ValueError(f"{where}.seed: missing; add e.g. 'seed': 0 (or pass generator=...)")
    return generator


_BLUR_KEYS = {"kernel", "size", "std", "seed", "length", "curvature", "boundary"}
_KERNELS = ("uniform", "gaussian", "motion")
_INPAINT_KEYS = {"mask", "missing_ratio", "seed", "box"}
_MASKS = ("random", "box")


def _validate_seed(cfg: dict, where: str) -> None:
    seed = cfg.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{where}.seed: must be an int, got {seed!r}")


def _validate_blur(cfg: dict, where: str) -> None:
    _check_keys(cfg, _BLUR_KEYS, where)
    kernel = _require(cfg, "kernel", where, "'kernel': 'uniform', 'size': 9")
    if isinstance(kernel, str) and kernel in _KERNELS:
        _require(cfg, "size", where, "'size': 9")
        if kernel == "gaussian":
            _require(cfg, "std", where, "'std': 1.6")
    elif isinstance(kernel, str) and not kernel.lower().endswith(ARRAY_SUFFIXES):
        raise ValueError(f"{where}.kernel: {kernel!r} is not valid; use one of {list(_KERNELS)} or a .npy/.png path")
    _validate_seed(cfg, where)


def _validate_inpainting(cfg: dict, where: str) -> None:
    _check_keys(cfg, _INPAINT_KEYS, where)
    mask = _require(cfg, "mask", where, "'mask': 'random', 'missing_ratio': 0.5, 'seed': 0")
    if isinstance(mask, str) and mask == "random":
        _require(cfg, "missing_ratio", where, "'missing_ratio': 0.5")
    elif isinstance(mask, str) and mask == "box":
        _require(cfg, "box", where, "'box': [96, 96, 64, 64]")
    elif isinstance(mask, str) and not mask.lower().endswith(ARRAY_SUFFIXES):
        raise ValueError(f"{where}.mask: {mask!r} is not valid; use one of {list(_MASKS)} or a .npy/.png path")
    _validate_seed(cfg, where)


def _validate_blur_inpainting(cfg: dict, where: str) -> None:
    _check_keys(cfg, {"blur", "inpainting"}, where)
    blur = _require(cfg, "blur", where, "'blur': {'kernel': 'uniform', 'size': 9}")
    inp = _require(cfg, "inpainting", where, "'inpainting': {'mask': 'random', 'missing_ratio': 0.5, 'seed': 0}")
    for key, sub in (("blur", blur), ("inpainting", inp)):
        if not isinstance(sub, dict):
            raise ValueError(f"{where}.{key}: expected a dict, got {type(sub).__name__}")
    _validate_blur(blur, f"{where}.blur")
    _validate_inpainting(inp, f"{where}.inpainting")


_VALIDATORS = {
    "identity": lambda cfg, where: _check_keys(cfg, set(), where),
    "blur": _validate_blur,
    "inpainting": _validate_inpainting,
    "blur_inpainting": _validate_blur_inpainting,
}


def validate_operator(cfg: dict[str, Any] | Sequence[dict[str, Any]], *, where: str = "operator") -> None:
    """Check an operator config (keys, required values, kernel/mask names) without building it;
    raises ``ValueError`` with one line naming the key. The builders trust a validated config."""
    if isinstance(cfg, (list, tuple)):
        if not cfg:
            raise ValueError(f"{where}: empty list; give at least one operator config")
        for i, sub in enumerate(cfg):
            validate_operator(sub, where=f"{where}[{i}]")
        return
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: expected a dict or a list of dicts, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind not in _VALIDATORS:
        raise ValueError(f"{where}.type: {kind!r} is not valid; use one of {sorted(_VALIDATORS)}")
    _VALIDATORS[kind](cfg, where)


def _build_identity(cfg: dict, shape, generator=None) -> LinearOperator:
    return Identity()


def _build_blur(cfg: dict, shape, generator=None, where: str = "operator") -> LinearOperator:
    kernel = cfg["kernel"]
    if isinstance(kernel, str) and kernel in _KERNELS:
        size = cfg["size"]
        if kernel == "uniform":
            k = uniform_kernel(size)
        elif kernel == "gaussian":
            k = gaussian_kernel(size, cfg["std"])
        else:
            extra = {key: cfg[key] for key in ("length", "curvature") if key in cfg}
            k = motion_kernel(size, generator=_generator(cfg, where, generator), **extra)
    else:
        k = kernel  # path or array; Blur loads and checks it
    return Blur(k, boundary=cfg.get("boundary", "circular"), image_shape=shape)


def _build_inpainting(cfg: dict, shape, generator=None, where: str = "operator") -> LinearOperator:
    mask = cfg["mask"]
    if isinstance(mask, str) and mask == "random":
        C, H, W = shape
        m = random_mask((H, W), cfg["missing_ratio"], generator=_generator(cfg, where, generator))
    elif isinstance(mask, str) and mask == "box":
        m = box_mask(shape, cfg["box"])
    else:
        m = mask
    op = Inpainting(m)
    op.check_shape(shape, f"{where}.mask")
    return op


def _build_blur_inpainting(cfg: dict, shape, generator=None) -> LinearOperator:
    first = _build_blur(cfg["blur"], shape, generator, where="operator.blur")
    second = _build_inpainting(cfg["inpainting"], shape, generator, where="operator.inpainting")
    return Composition(first, second)


OPERATORS: dict[str, Callable[..., LinearOperator]] = {
    "identity": _build_identity,
    "blur": _build_blur,
    "inpainting": _build_inpainting,
    "blur_inpainting": _build_blur_inpainting,
}


def build_operator(
    cfg: dict[str, Any] | Sequence[dict[str, Any]],
    image_shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
) -> LinearOperator:
    """Operator from a config dict (or a list of them, applied in order); see module docstring.

    ``image_shape``: ``(C, H, W)``, ``(H, W)`` or ``(1, C, H, W)`` of the image ``x``.

    >>> build_operator({"type": "blur", "kernel": "uniform", "size": 3}, (1, 16, 16))
    Blur(kernel=(3, 3), boundary='circular', image_shape=(1, 16, 16))
    """
    validate_operator(cfg)
    return _build(cfg, normalise_image_shape(image_shape), generator)


def _build(cfg, shape, generator) -> LinearOperator:
    if isinstance(cfg, (list, tuple)):
        op = _build(cfg[0], shape, generator)
        for sub in cfg[1:]:
            op = Composition(op, _build(sub, shape, generator))
        return op
    return OPERATORS[cfg["type"]](cfg, shape, generator)


_NOISE_KEYS = {"gaussian": (("sigma",), ()), "poisson": (("gain",), ("threshold",)),
               "poisson_gaussian": (("gain", "sigma"), ("threshold",))}
NOISES: dict[str, type] = {"gaussian": GaussianNoise, "poisson": PoissonNoise, "poisson_gaussian": PoissonGaussianNoise}


def validate_noise(cfg: dict[str, Any]) -> None:
    """Check a noise config (type, keys, required values) without building it."""
    if not isinstance(cfg, dict):
        raise ValueError(f"noise: expected a dict, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind not in NOISES:
        raise ValueError(f"noise.type: {kind!r} is not valid; use one of {sorted(NOISES)}")
    required, optional = _NOISE_KEYS[kind]
    _check_keys(cfg, set(required) | set(optional), "noise")
    for key in required:
        _require(cfg, key, "noise", f"'{key}': 0.01")


def build_noise(cfg: dict[str, Any]) -> NoiseModel:
    """Noise model from a config dict, e.g. ``{"type": "gaussian", "sigma": 0.01}``."""
    validate_noise(cfg)
    required, optional = _NOISE_KEYS[cfg["type"]]
    try:
        return NOISES[cfg["type"]](*(cfg[k] for k in required), **{k: cfg[k] for k in optional if k in cfg})
    except ValueError as exc:
        raise ValueError(f"noise.{exc}") from None
