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

__all__ = ["OPERATORS", "NOISES", "build_operator", "build_noise"]


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
        seed = cfg["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{where}.seed: must be an int, got {seed!r}")
        return torch.Generator().manual_seed(seed)
    if generator is None:
        raise ValueError(f"{where}.seed: missing; add e.g. 'seed': 0 (or pass generator=...)")
    return generator


def _build_identity(cfg: dict, shape, generator=None) -> LinearOperator:
    _check_keys(cfg, set(), "operator")
    return Identity()


_BLUR_KEYS = {"kernel", "size", "std", "seed", "length", "curvature", "boundary"}
_KERNELS = ("uniform", "gaussian", "motion")


def _build_blur(cfg: dict, shape, generator=None, where: str = "operator") -> LinearOperator:
    _check_keys(cfg, _BLUR_KEYS, where)
    kernel = _require(cfg, "kernel", where, "'kernel': 'uniform', 'size': 9")
    if isinstance(kernel, str) and kernel in _KERNELS:
        size = _require(cfg, "size", where, "'size': 9")
        if kernel == "uniform":
            k = uniform_kernel(size)
        elif kernel == "gaussian":
            k = gaussian_kernel(size, _require(cfg, "std", where, "'std': 1.6"))
        else:
            extra = {key: cfg[key] for key in ("length", "curvature") if key in cfg}
            k = motion_kernel(size, generator=_generator(cfg, where, generator), **extra)
    elif isinstance(kernel, str) and not kernel.lower().endswith(ARRAY_SUFFIXES):
        raise ValueError(
            f"{where}.kernel: {kernel!r} is not valid; use one of {list(_KERNELS)} or a .npy/.png path"
        )
    else:
        k = kernel  # path or array; Blur loads and checks it
    return Blur(k, boundary=cfg.get("boundary", "circular"), image_shape=shape)


_INPAINT_KEYS = {"mask", "missing_ratio", "seed", "box"}
_MASKS = ("random", "box")


def _build_inpainting(cfg: dict, shape, generator=None, where: str = "operator") -> LinearOperator:
    _check_keys(cfg, _INPAINT_KEYS, where)
    mask = _require(cfg, "mask", where, "'mask': 'random', 'missing_ratio': 0.5, 'seed': 0")
    if isinstance(mask, str) and mask == "random":
        ratio = _require(cfg, "missing_ratio", where, "'missing_ratio': 0.5")
        C, H, W = shape
        m = random_mask((H, W), ratio, generator=_generator(cfg, where, generator))
    elif isinstance(mask, str) and mask == "box":
        m = box_mask(shape, _require(cfg, "box", where, "'box': [96, 96, 64, 64]"))
    elif isinstance(mask, str) and not mask.lower().endswith(ARRAY_SUFFIXES):
        raise ValueError(f"{where}.mask: {mask!r} is not valid; use one of {list(_MASKS)} or a .npy/.png path")
    else:
        m = mask
    op = Inpainting(m)
    op.check_shape(shape, f"{where}.mask")
    return op


def _build_blur_inpainting(cfg: dict, shape, generator=None) -> LinearOperator:
    _check_keys(cfg, {"blur", "inpainting"}, "operator")
    blur = _require(cfg, "blur", "operator", "'blur': {'kernel': 'uniform', 'size': 9}")
    inp = _require(cfg, "inpainting", "operator", "'inpainting': {'mask': 'random', 'missing_ratio': 0.5, 'seed': 0}")
    for key, sub in (("blur", blur), ("inpainting", inp)):
        if not isinstance(sub, dict):
            raise ValueError(f"operator.{key}: expected a dict, got {type(sub).__name__}")
    first = _build_blur(blur, shape, generator, where="operator.blur")
    second = _build_inpainting(inp, shape, generator, where="operator.inpainting")
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
    shape = normalise_image_shape(image_shape)
    if isinstance(cfg, (list, tuple)):
        if not cfg:
            raise ValueError("operator: empty list; give at least one operator config")
        op = build_operator(cfg[0], shape, generator=generator)
        for sub in cfg[1:]:
            op = Composition(op, build_operator(sub, shape, generator=generator))
        return op
    if not isinstance(cfg, dict):
        raise ValueError(f"operator: expected a dict or a list of dicts, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind not in OPERATORS:
        raise ValueError(f"operator.type: {kind!r} is not valid; use one of {sorted(OPERATORS)}")
    return OPERATORS[kind](cfg, shape, generator)


def _noise_builder(cls, required: tuple[str, ...], optional: tuple[str, ...] = ()):
    def build(cfg: dict) -> NoiseModel:
        _check_keys(cfg, set(required) | set(optional), "noise")
        args = [_require(cfg, key, "noise", f"'{key}': 0.01") for key in required]
        kwargs = {key: cfg[key] for key in optional if key in cfg}
        try:
            return cls(*args, **kwargs)
        except ValueError as exc:
            raise ValueError(f"noise.{exc}") from None

    return build


NOISES: dict[str, Callable[[dict], NoiseModel]] = {
    "gaussian": _noise_builder(GaussianNoise, ("sigma",)),
    "poisson": _noise_builder(PoissonNoise, ("gain",), ("threshold",)),
    "poisson_gaussian": _noise_builder(PoissonGaussianNoise, ("gain", "sigma"), ("threshold",)),
}


def build_noise(cfg: dict[str, Any]) -> NoiseModel:
    """Noise model from a config dict, e.g. ``{"type": "gaussian", "sigma": 0.01}``."""
    if not isinstance(cfg, dict):
        raise ValueError(f"noise: expected a dict, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind not in NOISES:
        raise ValueError(f"noise.type: {kind!r} is not valid; use one of {sorted(NOISES)}")
    return NOISES[kind](cfg)
