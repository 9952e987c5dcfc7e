"""PnP-DM's coupling ρ in closed form (``pnp_imaging.diffusion.coupling``) against dense linear
algebra, and the pnp-dm chain with an exact stationary Gaussian prior against those figures."""
from __future__ import annotations

import math

import pytest
import torch

import pnp_imaging
from denoisers_zoo.exact import GaussianDenoiser
from operators.blur import Blur
from operators.noise import GaussianNoise
from pnp_imaging.diffusion.coupling import coupling_figures, uniform_blur_power
from pnp_imaging.problem import Problem


def spectrum(n: int) -> torch.Tensor:
    """A photo-like power spectrum ``0.02 / (1 + (|k|/2)²)`` on the ``n × n`` DFT grid."""
    f = torch.fft.fftfreq(n, d=1.0 / n).double()
    return 0.02 / (1.0 + (f.view(-1, 1) ** 2 + f.view(1, -1) ** 2) / 4.0)


def circulant(eig: torch.Tensor) -> torch.Tensor:
    """The dense ``d × d`` matrix ``ifft2(eig · fft2(·))`` on ``n × n`` images."""
    n = eig.shape[0]
    basis = torch.eye(n * n, dtype=torch.float64).view(-1, n, n)
    return torch.fft.ifft2(torch.fft.fft2(basis) * eig).real.reshape(n * n, n * n).T


@pytest.mark.parametrize("marginal", ["x", "z"])
@pytest.mark.parametrize("rho", [0.0, 0.05, 0.2])
def test_coupling_figures_are_the_dense_inflated_posterior(rho, marginal):
    """Per-pixel std and error of the ρ-marginal = the dense posterior with noise covariance
    σ²I + ρ²AAᵀ (x), or with prior covariance Σ + ρ²I and noise σ²I (z), the truth from the
    prior Σ; at ρ = 0 the error is the std and the coverage 0.90."""
    n, sigma = 8, 0.02
    power, a2 = spectrum(n), uniform_blur_power(3, n)
    k = torch.zeros(n, n, dtype=torch.float64)
    k[:3, :3] = 1 / 9
    a = circulant(torch.fft.fft2(k))
    prior, eye = circulant(power), torch.eye(n * n, dtype=torch.float64)
    if marginal == "x":
        model_prior, noise = prior, sigma**2 * eye + rho**2 * a @ a.T
    else:
        model_prior, noise = prior + rho**2 * eye, sigma**2 * eye
    post = torch.linalg.inv(torch.linalg.inv(model_prior) + a.T @ torch.linalg.solve(noise, a))
    gain = post @ a.T @ torch.linalg.inv(noise)
    resid = torch.eye(n * n, dtype=torch.float64) - gain @ a
    err = resid @ prior @ resid.T + sigma**2 * gain @ gain.T
    fig = coupling_figures(power, a2, sigma, rho, marginal=marginal)
    assert fig["sd"] == pytest.approx(math.sqrt(float(post.diagonal().mean())), rel=1e-9)
    assert fig["err"] == pytest.approx(math.sqrt(float(err.diagonal().mean())), rel=1e-9)
    if rho == 0.0:
        assert fig["err"] == pytest.approx(fig["sd"], rel=1e-9) and fig["coverage"] == pytest.approx(0.90, abs=1e-9)
    else:
        assert fig["sd"] > fig["err"] and fig["coverage"] > 0.90


def test_pnpdm_chain_with_an_exact_prior_matches_the_coupling_figures():
    """pnp-dm at a fixed ρ with the exact stationary denoiser on 16² images: its per-pixel variance
    is the closed-form ``sd²`` of the ρ-marginal (and its likelihood step's, of the z-marginal), and the slowest Fourier mode is an AR(1) with the
    closed-form coefficient ``φ_max``. Tolerances: the prior step's Euler error on an 800-level
    grid (variance ≈ +1 %, gain ≈ −0.1 %) + 4 MC standard errors (32 chains × 130 kept sweeps; variance
    pooled over 256 correlated pixels: about 2 % here; lag-1 autocorrelation: (1 − φ²)/√n_draws)."""
    n, sigma, rho = 16, 0.02, 0.05
    power, a2 = spectrum(n), uniform_blur_power(3, n)
    prior = GaussianDenoiser.stationary(0.5, power, (1, n, n))
    gen = torch.Generator().manual_seed(0)
    truth = prior.sample(1, generator=gen)
    op = Blur(torch.full((3, 3), 1 / 9, dtype=torch.float64), boundary="circular", image_shape=(1, n, n))
    y = op.A(truth) + sigma * torch.randn(truth.shape, generator=gen, dtype=torch.float64)
    prob = Problem(operator=op, noise=GaussianNoise(sigma), y=y, x_shape=(1, 1, n, n))
    draws, zs = [], []

    def keep(i, s):
        draws.append(s.x[:, 0].clone())
        zs.append(s.z[:, 0].clone())

    pnp_imaging.sample(prob, prior, "pnp-dm", n_steps=160, n_burnin=30, chains=32, generator=gen, x0=truth,
                       rho0=rho, rho_min=rho, grid_steps=800, clip=False, on_sample=keep)
    x = torch.stack(draws, 1)  # [chain, draw, H, W]
    fig = coupling_figures(power, a2, sigma, rho)
    for drawn, marginal in ((x, fig), (torch.stack(zs, 1), coupling_figures(power, a2, sigma, rho, marginal="z"))):
        var = float(drawn.var(dim=(0, 1)).mean())
        assert var / marginal["sd"] ** 2 == pytest.approx(1.0, abs=0.01 + 4 * 0.02)
    phi = power / (power + rho**2) / (1 + rho**2 / sigma**2 * a2)
    k = divmod(int(phi.argmax()), n)
    mode = torch.fft.fft2(x)[..., k[0], k[1]].real
    mode = mode - mode.mean(1, keepdim=True)
    lag1 = float((mode[:, 1:] * mode[:, :-1]).mean() / (mode * mode).mean())
    assert fig["phi_max"] == pytest.approx(float(phi.max()))
    assert lag1 == pytest.approx(fig["phi_max"], abs=0.01 + 4 * (1 - fig["phi_max"] ** 2) / math.sqrt(x.shape[0] * x.shape[1]))
