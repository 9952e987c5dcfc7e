"""Denoisers used as priors: trained networks, exact closed-form denoisers, BM3D.

All share one interface ``D(x, sigma)`` (``denoisers_zoo.base.Denoiser``): x ``[B, C, H, W]`` in
[0, 1], sigma a float or ``[B]`` tensor (noise std on the [0, 1] scale).

* ``available()`` — names loadable with ``load`` (trained models from the manifest, plus ``"bm3d"``).
* ``load(name, *, device="cpu")`` — local weights only (never the network), sha256-checked
  against ``denoisers_zoo/weights/manifest.json``, read with ``torch.load(..., weights_only=True)``.
* ``denoisers_zoo.exact`` — ``GaussianDenoiser``, ``GMMDenoiser`` (closed-form MMSE denoisers).
* ``denoisers_zoo.lipschitz.residual_lipschitz`` — power iteration on the residual's Jacobian
  (``jacobian_spectral_norm``: the same for any batched map, e.g. a generator).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from denoisers_zoo.base import Denoiser, as_sigma_tensor

__all__ = ["Denoiser", "as_sigma_tensor", "available", "load", "card", "read_manifest", "default_prior", "MANIFEST_PATH",
           "SAMPLING_PRIORS", "FULL_RANGE_PRIORS"]

MANIFEST_PATH = Path(__file__).resolve().parent / "weights" / "manifest.json"
CLASSICAL = ("bm3d",)
#: the PnP sampling prior for each channel count: residual 1-Lipschitz by construction, trained at
#: sigma = 5/255 with the perturbations that keep PnP chains from drifting (model cards)
SAMPLING_PRIORS = {1: "lipdncnn_gray_s5", 3: "lipdncnn_rgb_s5"}
#: the diffusion samplers' prior for each channel count: one network for sigma in [0.001, 100]
#: (EDM preconditioning; model card), the range the DDPM schedule calls it at
FULL_RANGE_PRIORS = {1: "edm_gray"}


def _manifest_path(manifest: str | os.PathLike | None) -> Path:
    if manifest is not None:
        return Path(manifest)
    env = os.environ.get("DENOISERS_ZOO_MANIFEST")
    return Path(env) if env else MANIFEST_PATH


def read_manifest(manifest: str | os.PathLike | None = None) -> dict:
    """The manifest dict ``{"models": {name: entry}}`` (empty if the file does not exist)."""
    p = _manifest_path(manifest)
    if not p.exists():
        return {"models": {}}
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"manifest: {p} is not valid JSON ({e.msg}); restore it with git checkout") from None
    data.setdefault("models", {})
    return data


def available(manifest: str | os.PathLike | None = None) -> list[str]:
    """Names accepted by :func:`load`: manifest entries (trained models) and classical baselines."""
    names = sorted(read_manifest(manifest)["models"])
    try:
        import bm3d  # noqa: F401

        names += list(CLASSICAL)
    except ImportError:  # pragma: no cover
        pass
    return names


def default_prior(channels: int, manifest: str | os.PathLike | None = None, *, full_range: bool = False) -> str:
    """The zoo's sampling prior for images with ``channels`` channels (:data:`SAMPLING_PRIORS`), or
    with ``full_range`` the diffusion samplers' full-noise-range model (:data:`FULL_RANGE_PRIORS`)."""
    table = FULL_RANGE_PRIORS if full_range else SAMPLING_PRIORS
    name = table.get(int(channels))
    if name is None or name not in read_manifest(manifest)["models"]:
        shipped = [n for n in table.values() if n in read_manifest(manifest)["models"]]
        raise ValueError(f"prior.denoiser: no sampling prior for {channels}-channel images is shipped "
                         f"(shipped: {', '.join(shipped)}); set prior.denoiser to a {channels}-channel model")
    return name


def load(name: str, *, device: str = "cpu", manifest: str | os.PathLike | None = None) -> Denoiser:
    """Load a zoo denoiser by name (no network access; weights sha256-checked).

    :param name: one of :func:`available`.
    :param device: torch device for the parameters.
    :param manifest: path of an alternative manifest (tests); weight files are resolved next to it.
        Defaults to ``$DENOISERS_ZOO_MANIFEST`` or ``denoisers_zoo/weights/manifest.json``.
    :raises FileNotFoundError: the weights file is missing (message names it and the fix).
    :raises ValueError: unknown name or sha256 mismatch (corrupt file).
    """
    import torch

    if name == "bm3d":
        from denoisers_zoo.bm3d_denoiser import BM3DDenoiser

        return BM3DDenoiser()
    mpath = _manifest_path(manifest)
    models = read_manifest(mpath)["models"]
    if name not in models:
        raise ValueError(f"denoisers_zoo.load: unknown denoiser {name!r}; available: {available(mpath)}")
    entry = models[name]
    wfile = mpath.parent / entry["file"]
    recipe = entry.get("recipe", f"denoisers_zoo/recipes/{name}.yaml")
    fix = f"re-run `python -m denoisers_zoo.train {recipe} --install` (or restore it with git checkout)"
    if not wfile.exists():
        raise FileNotFoundError(f"denoisers_zoo.load: weights file {wfile} for {name!r} is missing; {fix}")
    from denoisers_zoo.train import sha256_file

    digest = sha256_file(wfile)
    if digest != entry["sha256"]:
        raise ValueError(
            f"denoisers_zoo.load: weights file {wfile} is corrupt (sha256 {digest[:12]}... != manifest "
            f"{entry['sha256'][:12]}...); {fix}"
        )
    from denoisers_zoo.nets import NetDenoiser, build_net

    try:
        state = torch.load(wfile, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"denoisers_zoo.load: cannot read weights file {wfile} ({type(e).__name__}); {fix}") from None
    net = build_net(entry["arch"])
    net.load_state_dict(state, strict=True)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    den = NetDenoiser(
        net,
        name=name,
        channels=int(entry["channels"]),
        sigma_range=tuple(entry["sigma_range"]),
        blind=bool(entry.get("blind", False)),
        lipschitz=entry.get("lipschitz"),
        arch=entry["arch"],
    )
    return den.to(device).eval()


def _read_card(name: str, *, manifest: str | os.PathLike | None = None) -> str:
    """The model card (markdown text) of a zoo denoiser.

    Cards are generated from measurements by ``python -m denoisers_zoo.card NAME``; this
    function only reads them. (Importing the ``denoisers_zoo.card`` module replaces this
    attribute by that module, which is callable with the same behaviour.)
    """
    if name == "bm3d":
        return ("# bm3d\n\nClassical baseline: BM3D (gray, per image and channel) / CBM3D (3 channels) from the "
                "`bm3d` package; uses sigma (std on the [0,1] scale); not differentiable; no weights.\n")
    mpath = _manifest_path(manifest)
    models = read_manifest(mpath)["models"]
    if name not in models:
        raise ValueError(f"denoisers_zoo.card: unknown denoiser {name!r}; available: {available(mpath)}")
    p = mpath.parent / f"{name}.md"
    if not p.exists():
        raise FileNotFoundError(f"denoisers_zoo.card: card {p} is missing; generate it with `python -m denoisers_zoo.card {name}`")
    return p.read_text()


card = _read_card
