r"""Lipschitz constants of generators and denoisers, and what the push-forward bound makes of them.

One power-iteration implementation serves the whole project:
:func:`denoisers_zoo.lipschitz.jacobian_spectral_norm` (power iteration on :math:`J^\top J` with
``torch.func`` JVP/VJP; the local constant at a point is :math:`\|J(x)\|_2`) and its residual form
:func:`denoisers_zoo.lipschitz.residual_lipschitz` (:math:`x - D(x, \sigma)`, the figure on the zoo
cards and in the PnP step-size rules). This module only chooses the points: the maximum over
sampled points is a *lower* bound of the global constant; :func:`layer_norm_product` gives an
*upper* bound for MLPs (Salmona et al. 2022, App.: product of layer spectral norms, 1-Lipschitz
activations). ``docs/algorithms.md §lipschitz-estimation``.
"""
from __future__ import annotations

import math

import torch

from denoisers_zoo.lipschitz import jacobian_spectral_norm, residual_lipschitz

__all__ = ["local_lipschitz", "sampled_lipschitz", "generator_lipschitz", "denoiser_lipschitz", "layer_norm_product",
           "zoo_lipschitz_report", "DEFAULT_SEPARATIONS"]

#: gap widths (l2 distance on the [0, 1] scale) for which ``zoo_lipschitz_report`` states the bound
DEFAULT_SEPARATIONS = (1.0, 2.0, 4.0, 8.0)
ONE_LIPSCHITZ = (torch.nn.ReLU, torch.nn.LeakyReLU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.Identity)


def local_lipschitz(fn, points: torch.Tensor, *, n_iter: int = 30, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B]`` local Lipschitz constants :math:`\\|J_{fn}(x_b)\\|_2` (``fn`` acts per batch item)."""
    return jacobian_spectral_norm(fn, points, n_iter=n_iter, generator=generator, reduce="none")


def sampled_lipschitz(fn, points: torch.Tensor, *, n_iter: int = 30, generator: torch.Generator | None = None) -> dict:
    """``{"max", "values"}``: the local constants at ``points`` and their maximum (a lower bound of Lip(fn))."""
    values = local_lipschitz(fn, points, n_iter=n_iter, generator=generator)
    return {"max": float(values.max()), "values": [float(v) for v in values]}


def generator_lipschitz(generator_net, latent_shape, *, n_points: int = 16, n_iter: int = 30,
                        generator: torch.Generator | None = None) -> dict:
    """Lower bound of Lip(G) for a generator ``G: [B, *latent_shape] -> [B, ...]``: the maximum local
    constant at ``n_points`` latents drawn from N(0, I)."""
    if not isinstance(n_points, int) or n_points < 1:
        raise ValueError(f"n_points: must be an int >= 1, got {n_points!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    z = torch.randn(n_points, *tuple(latent_shape), generator=g)
    return sampled_lipschitz(generator_net, z, n_iter=n_iter, generator=g)


def denoiser_lipschitz(denoiser, x: torch.Tensor, sigma: float, *, n_iter: int = 30,
                       generator: torch.Generator | None = None) -> dict:
    """``{"denoiser", "residual"}``: max local constants of ``x -> D(x, sigma)`` and of
    ``x -> x - D(x, sigma)`` over the images of ``x`` (both lower bounds)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    lip_d = jacobian_spectral_norm(lambda z: denoiser(z, sigma), x, n_iter=n_iter, generator=g)
    lip_r = residual_lipschitz(denoiser, x, sigma, n_iter=n_iter, generator=g)
    return {"denoiser": float(lip_d), "residual": float(lip_r)}


def layer_norm_product(module: torch.nn.Module) -> float:
    """Upper bound of Lip for a ``torch.nn.Sequential`` of ``Linear`` layers and 1-Lipschitz
    activations: the product of the layers' exact spectral norms."""
    if not isinstance(module, torch.nn.Sequential):
        raise ValueError("module: layer_norm_product needs a torch.nn.Sequential of Linear layers and activations")
    bound = 1.0
    for layer in module:
        if isinstance(layer, torch.nn.Linear):
            bound *= float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))
        elif not isinstance(layer, ONE_LIPSCHITZ):
            raise ValueError(f"module: cannot bound the Lipschitz constant of {type(layer).__name__}; "
                             "use Linear layers and ReLU/LeakyReLU/Tanh/Sigmoid activations")
    return bound


def _noisy_crops(channels: int, size: int, n_points: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``n_points`` random ``size x size`` crops of a bundled photo (scikit-image camera or astronaut)
    on the [0, 1] scale, plus N(0, sigma²) noise."""
    from skimage import data as skdata

    img = skdata.camera()[None] if channels == 1 else skdata.astronaut().transpose(2, 0, 1)
    img = torch.from_numpy(img.copy()).float() / 255.0
    h, w = img.shape[-2:]
    if not 8 <= size <= min(h, w):
        raise ValueError(f"size: must be between 8 and {min(h, w)} pixels, got {size!r}")
    rows = torch.randint(0, h - size + 1, (n_points,), generator=generator)
    cols = torch.randint(0, w - size + 1, (n_points,), generator=generator)
    crops = torch.stack([img[:, r:r + size, c:c + size] for r, c in zip(rows.tolist(), cols.tolist())])
    return crops + sigma * torch.randn(crops.shape, generator=generator)


def _default_sigma(denoiser) -> float:
    lo, hi = getattr(denoiser, "sigma_range", (0.0, math.inf))
    return float(min(max(5 / 255, lo), hi))


def _certified_residual(denoiser) -> float | None:
    if getattr(denoiser, "arch", {}).get("type") != "lipdncnn":
        return None
    from denoisers_zoo.lipschitz import certified_residual_bound

    return float(certified_residual_bound(denoiser.net)["certified_upper_bound"])


def _bound_rows(lip: float, separations) -> list[dict]:
    from pnp_imaging.analyses.pushforward import gap_mass_lower_bound, guaranteed_tv

    return [{"separation": float(r), "min_gap_mass": float(gap_mass_lower_bound(lip, r, 0.5)),
             "min_tv": guaranteed_tv(lip, r)} for r in separations]


def zoo_lipschitz_report(name: str, *, size: int = 32, sigma: float | None = None, n_points: int = 4, n_iter: int = 20,
                         separations=DEFAULT_SEPARATIONS, certified: bool = False, seed: int = 0) -> dict:
    """Lipschitz estimates of zoo model ``name`` at ``n_points`` noisy ``size x size`` crops (sigma
    default: 5/255 clipped to the model's range), with ``certified`` a certified upper bound of the
    residual's constant for ``lipdncnn`` models (product of convolution norm bounds, ~30 s), and the push-forward bound at the measured Lip(D): read as a one-shot generator fed
    with Gaussian noise, D would leave at least ``min_gap_mass`` between two balanced modes
    ``separation`` apart (l2, [0, 1] scale) and be at least ``min_tv`` away in total variation. The
    measured L is a lower bound of Lip(D), so these are the bound's values *if* Lip(D) equals it;
    with ``certified``, ``pushforward_bound_certified`` uses Lip(D) <= 1 + Lip(x - D) <= 1 + the
    certified bound, which the bound then guarantees."""
    import denoisers_zoo

    if name == "bm3d":
        raise ValueError("model: bm3d is not differentiable (no Jacobian); choose a trained zoo model")
    den = denoisers_zoo.load(name)
    sigma = _default_sigma(den) if sigma is None else float(sigma)
    g = torch.Generator().manual_seed(seed)
    x = _noisy_crops(int(getattr(den, "channels", 1) or 1), size, n_points, sigma, g)
    lips = denoiser_lipschitz(den, x, sigma, n_iter=n_iter, generator=g)
    cert = _certified_residual(den) if certified else None
    return {"model": name, "sigma": sigma, "size": size, "n_points": n_points, "n_iter": n_iter,
            "lipschitz_denoiser": lips["denoiser"], "lipschitz_residual": lips["residual"],
            "certified_residual_upper_bound": cert, "card_lipschitz": getattr(den, "lipschitz", None),
            "pushforward_bound": _bound_rows(lips["denoiser"], separations),
            "pushforward_bound_certified": None if cert is None else _bound_rows(1.0 + cert, separations)}
