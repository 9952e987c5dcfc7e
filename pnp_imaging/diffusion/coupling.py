r"""What PnP-DM's coupling ρ costs and buys, in closed form, for an exact stationary Gaussian prior
(``docs/algorithms.md §diffusion``, "the coupling with an exact prior").

Prior ``N(μ, F* diag(P) F)`` (orthonormal 2-D DFT ``F``, power spectrum ``P``), circular blur with
transfer function ``a`` (``|a_k|²`` the eigenvalues of ``AᵀA``), noise ``σ``. Integrating ``z`` out
of ``π_ρ`` leaves the posterior under the noise covariance ``σ²I + ρ²AAᵀ``; per Fourier mode
``k`` its variance and gain are

    V_k(ρ) = 1 / (1/P_k + |a_k|²/(σ² + ρ²|a_k|²)),   G_k(ρ) = V_k(ρ) / (σ² + ρ²|a_k|²)

(``ρ = 0``: the posterior). The likelihood step's ``z`` has the other marginal, the posterior
under the ρ-smoothed prior ``N(μ, F* diag(P + ρ²) F)`` and the true noise ``σ²I``
(``marginal="z"``). For a truth drawn from the prior, the error of the ρ-mean has
variance ``E_k = (1 − G_k|a_k|²)² P_k + G_k²|a_k|²σ²``. The prior is stationary, so every pixel
has the variance ``mean_k V_k`` and the error variance ``mean_k E_k``, and the 90 % interval of
the ρ-marginal covers the truth with probability ``2Φ(1.645 sd/err) − 1`` (0.90 at ρ = 0).

With the exact prior step, a Gibbs sweep is linear per mode: ``z_k = (x_k + …)/(1 + γ|a_k|²)``,
``γ = ρ²/σ²``, then ``x_k = P_k/(P_k + ρ²) z_k + …``, an AR(1) with coefficient
``φ_k = P_k / ((P_k + ρ²)(1 + γ|a_k|²))`` and integrated autocorrelation time
``τ_k = (1 + φ_k)/(1 − φ_k)`` sweeps. ``tau_max`` is the slowest mode's; ``tau_pixel`` the time of
a pixel's value (modes weighted by their share ``V_k`` of its variance). The prior step's Euler
grid is not modelled (it shrinks a little more: variance ×1.075 at 100 levels).

``python -m pnp_imaging.diffusion.coupling`` prints the table of the docs: the power spectrum
measured on training photos (radially averaged periodogram of 256² tiles, the held-out
``camera`` and ``astronaut`` excluded), 9×9 uniform blur, σ = 1/255.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import torch

__all__ = ["coupling_figures", "photo_power_spectrum", "uniform_blur_power"]

_Z90 = NormalDist().inv_cdf(0.95)


def coupling_figures(power: torch.Tensor, blur_power: torch.Tensor, sigma: float, rho: float, *,
                     marginal: str = "x") -> dict:
    """Per-pixel std, error and 90 %-interval coverage of the ρ-marginal of ``x`` (the prior step's
    output, what ``pnp-dm`` reports) or of ``z`` (the likelihood step's), and the Gibbs chain's
    autocorrelation times (module docstring). ``power``, ``blur_power``: ``P_k`` and ``|a_k|²``
    on the same ``H × W`` DFT grid (orthonormal convention for ``P``)."""
    if marginal not in ("x", "z"):
        raise ValueError(f"marginal: 'x' or 'z', got {marginal!r}")
    p, a2 = power.double(), blur_power.double()
    s2, r2 = float(sigma) ** 2, float(rho) ** 2
    prior, noise = (p, s2 + r2 * a2) if marginal == "x" else (p + r2, torch.full_like(a2, s2))
    var = 1.0 / (1.0 / prior + a2 / noise)
    gain = var / noise
    err = (1.0 - gain * a2) ** 2 * p + gain**2 * a2 * s2
    sd, rmse = math.sqrt(float(var.mean())), math.sqrt(float(err.mean()))
    phi = p / (p + r2) / (1.0 + r2 / s2 * a2)
    tau = (1.0 + phi) / (1.0 - phi)
    return {"rho": float(rho), "sd": sd, "err": rmse, "coverage": 2 * NormalDist().cdf(_Z90 * sd / rmse) - 1,
            "phi_max": float(phi.max()), "tau_max": float(tau.max()),
            "tau_pixel": float((var * tau).sum() / var.sum())}


def uniform_blur_power(size: int, n: int) -> torch.Tensor:
    """``|a_k|²`` of the ``size × size`` uniform blur on the circular ``n × n`` grid."""
    k = torch.zeros(n, n, dtype=torch.float64)
    k[:size, :size] = 1.0 / size**2
    return torch.fft.fft2(k).abs() ** 2


def photo_power_spectrum(n: int = 256, names: tuple[str, ...] | None = None) -> torch.Tensor:
    """Isotropic power spectrum ``P_k`` (orthonormal DFT) of gray photos (default: the training
    photos of ``drunet_gray``'s recipe; ``camera`` and ``astronaut`` are held out): the mean
    periodogram of their ``n × n`` tiles, radially averaged; ``P_0`` = n² × the variance of the
    tiles' means (the prior's mean is then the mean of the tiles' means)."""
    from denoisers_zoo.data import load_skimage
    from denoisers_zoo.train import ROOT, load_recipe

    names = names or tuple(load_recipe(ROOT / "recipes" / "drunet_gray.yaml")["data"]["train"])
    tiles = [im.unfold(0, n, n).unfold(1, n, n).reshape(-1, n, n)
             for im in (load_skimage(name, 1)[0].double() for name in names) if min(im.shape) >= n]
    tiles = torch.cat(tiles)
    means = tiles.mean(dim=(1, 2))
    periodogram = (torch.fft.fft2(tiles - means.view(-1, 1, 1), norm="ortho").abs() ** 2).mean(0)
    f = torch.fft.fftfreq(n, d=1.0 / n)
    radius = torch.sqrt(f.view(-1, 1) ** 2 + f.view(1, -1) ** 2).round().long()
    radial = torch.bincount(radius.flatten(), periodogram.flatten()) / torch.bincount(radius.flatten())
    power = radial[radius]
    power[0, 0] = n * n * float(means.var())
    return power


def main() -> None:
    power, blur = photo_power_spectrum(256), uniform_blur_power(9, 256)
    exact = coupling_figures(power, blur, 1 / 255, 0.0)
    print(f"posterior pixel std {exact['sd']:.4f}")
    print("rho_min  std/posterior  err/posterior  coverage  tau_max  tau_pixel")
    for rho in (0.3, 0.15, 0.1, 0.08, 0.05, 0.03, 0.02, 0.01):
        c = coupling_figures(power, blur, 1 / 255, rho)
        print(f"{rho:7.3f}  {c['sd'] / exact['sd']:13.3f}  {c['err'] / exact['sd']:13.3f}  {c['coverage']:8.3f}  "
              f"{c['tau_max']:7.1f}  {c['tau_pixel']:9.1f}")
    print("the likelihood step's z instead: rho_min  std/posterior  err/posterior  coverage")
    for rho in (0.15, 0.05):
        c = coupling_figures(power, blur, 1 / 255, rho, marginal="z")
        print(f"{rho:7.3f}  {c['sd'] / exact['sd']:13.3f}  {c['err'] / exact['sd']:13.3f}  {c['coverage']:8.3f}")


if __name__ == "__main__":
    main()
