r"""Exact MMSE denoisers for Gaussian and Gaussian-mixture priors (closed forms, for tests).

For a prior :math:`p` on the flattened vector :math:`x \in \mathbb{R}^d` and the observation
:math:`y = x + \sigma n`, :math:`n \sim \mathcal N(0, I)`, the MMSE denoiser is
:math:`D(y, \sigma) = \mathbb E[x \mid y]` and Tweedie's formula gives the score of the smoothed
prior :math:`p_\sigma = p * \mathcal N(0, \sigma^2 I)`: :math:`\nabla \log p_\sigma(y) = (D(y,\sigma) - y)/\sigma^2`.

* Gaussian :math:`\mathcal N(\mu, \Sigma)`: :math:`D(y,\sigma) = \mu + \Sigma(\Sigma + \sigma^2 I)^{-1}(y - \mu)`;
  the residual :math:`I - D = \sigma^2(\Sigma+\sigma^2 I)^{-1}` has norm
  :math:`\sigma^2 / (\lambda_{\min}(\Sigma) + \sigma^2) \le 1`.
* Mixture :math:`\sum_k w_k \mathcal N(\mu_k, \Sigma_k)`: :math:`D(y,\sigma) = \sum_k r_k(y) D_k(y,\sigma)` with
  responsibilities :math:`r_k \propto w_k \mathcal N(y; \mu_k, \Sigma_k + \sigma^2 I)` (log-sum-exp stable).

Inputs are ``[B, C, H, W]`` (flattened to ``C*H*W``) or ``[B, d]``; sigma a float or ``[B]`` tensor
on the [0, 1] scale. Computation is in float64; the output has x's dtype.

Example:

>>> import torch
>>> D = GaussianDenoiser.isotropic(0.5, 0.01, (1, 4, 4))
>>> y = torch.full((2, 1, 4, 4), 0.7)
>>> torch.allclose(D(y, 0.1), torch.full_like(y, 0.6))
True
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from denoisers_zoo.base import Denoiser, as_sigma_tensor

__all__ = ["GaussianDenoiser", "GMMDenoiser", "linear_gaussian_posterior"]

_F64 = torch.float64


def _flatten(x: torch.Tensor, d: int, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim not in (2, 4):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: x must be [B, C, H, W] or [B, d], got {shape}")
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] != d:
        raise ValueError(f"{name}: x has {flat.shape[1]} entries per sample but the prior has dimension d={d}; "
                         f"pass images of shape {d} when flattened")
    return flat


def _ratio(lam: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """lam / (lam + s2) with the convention 1 where both are 0. Broadcasts."""
    den = lam + s2
    return torch.where(den > 0, lam / torch.where(den > 0, den, torch.ones_like(den)), torch.ones_like(den))


class GaussianDenoiser(Denoiser):
    r"""Exact denoiser for the Gaussian prior :math:`\mathcal N(\mu, \Sigma)` on the flattened vector.

    :param mean: ``[d]`` tensor (or anything reshaped to it; a scalar is broadcast when ``shape`` is given).
    :param cov: ``[d, d]`` SPD matrix (eigendecomposed once), ``[d]`` diagonal, or scalar (isotropic).
    :param shape: optional image shape ``(C, H, W)``; sets ``channels`` and lets ``sample`` return images.

    Special constructors: :meth:`isotropic` and :meth:`stationary` (circulant covariance diagonalised
    by the 2-D FFT, given its power spectrum), which never build a ``d x d`` matrix.
    """

    blind = False
    sigma_range = (0.0, float("inf"))

    def __init__(self, mean, cov, *, shape: Sequence[int] | None = None, name: str = "gaussian"):
        super().__init__()
        self.name = name
        self.shape = tuple(int(s) for s in shape) if shape is not None else None
        cov = torch.as_tensor(cov, dtype=_F64)
        mean = torch.as_tensor(mean, dtype=_F64)
        if self.shape is not None:
            d = math.prod(self.shape)
        elif mean.ndim >= 1:
            d = mean.numel()
        elif cov.ndim >= 1:
            d = cov.shape[0]
        else:
            raise ValueError("GaussianDenoiser: cannot infer the dimension; pass shape=(C, H, W) or a [d] mean")
        self.d = d
        self.channels = self.shape[0] if self.shape is not None and len(self.shape) == 3 else None
        mean = mean.reshape(-1) if mean.numel() == d else mean.reshape(()).expand(d).clone()
        self.register_buffer("mean", mean)
        if cov.ndim == 2:
            if cov.shape != (d, d):
                raise ValueError(f"GaussianDenoiser.cov: shape {tuple(cov.shape)} does not match d={d}; pass [d, d]")
            if not torch.allclose(cov, cov.T, atol=1e-10 * float(cov.abs().max()) + 1e-300):
                raise ValueError("GaussianDenoiser.cov: matrix is not symmetric; pass (S + S.T) / 2")
            lam, u = torch.linalg.eigh(cov)
            if float(lam.min()) < -1e-10 * max(1.0, float(lam.max())):
                raise ValueError(f"GaussianDenoiser.cov: not positive semi-definite (min eigenvalue {float(lam.min()):.3g})")
            self.kind = "full"
            self.register_buffer("eigvals", lam.clamp(min=0.0))
            self.register_buffer("eigvecs", u)
        elif cov.ndim == 1:
            if cov.numel() != d or float(cov.min()) < 0:
                raise ValueError(f"GaussianDenoiser.cov: diagonal must have {d} nonnegative entries")
            self.kind = "diag"
            self.register_buffer("eigvals", cov.clone())
        elif cov.ndim == 0:
            if float(cov) < 0:
                raise ValueError("GaussianDenoiser.cov: variance must be >= 0")
            self.kind = "iso"
            self.register_buffer("eigvals", cov.reshape(1).clone())
        else:
            raise ValueError("GaussianDenoiser.cov: pass a scalar, a [d] diagonal or a [d, d] matrix")
        # residual I - D has norm sigma^2 / (lambda_min + sigma^2) <= 1 for every sigma
        self.lipschitz = 1.0

    # ------------------------------------------------------------------ constructors
    @classmethod
    def isotropic(cls, mean, var: float, shape: Sequence[int], *, name: str = "gaussian_iso") -> "GaussianDenoiser":
        """Prior ``N(mean, var I)`` on images of ``shape`` (mean: scalar or tensor of ``shape``)."""
        return cls(mean, torch.as_tensor(float(var), dtype=_F64), shape=shape, name=name)

    @classmethod
    def stationary(cls, mean, power_spectrum, shape: Sequence[int], *, name: str = "gaussian_stationary") -> "GaussianDenoiser":
        r"""Stationary (circulant, periodic boundary) prior per channel: ``Cov = F^* diag(P) F`` with
        ``P = power_spectrum`` of shape ``[H, W]`` or ``[C, H, W]`` (nonnegative, the 2-D DFT of the
        autocovariance; must be even-symmetric ``P[k] = P[-k]`` for a real covariance)."""
        c, h, w = (int(s) for s in shape)
        p = torch.as_tensor(power_spectrum, dtype=_F64)
        if p.ndim == 2:
            p = p.expand(c, h, w)
        if tuple(p.shape) != (c, h, w) or float(p.min()) < 0:
            raise ValueError(f"GaussianDenoiser.stationary: power_spectrum must be nonnegative [H, W] or [C, H, W] = {(c, h, w)}")
        obj = cls(mean, torch.as_tensor(1.0, dtype=_F64), shape=shape, name=name)
        obj.kind = "stationary"
        obj.eigvals = p.clone().contiguous()
        return obj

    # ------------------------------------------------------------------ core maps
    def _filter(self, v: torch.Tensor, s2: torch.Tensor, fn) -> torch.Tensor:
        """Apply ``f(Sigma, s2)`` (spectral function ``fn(lam, s2)``) to rows of ``v`` [B, d]."""
        s2b = s2.view(-1, 1)
        if self.kind == "iso":
            return fn(self.eigvals, s2b) * v
        if self.kind == "diag":
            return fn(self.eigvals.view(1, -1), s2b) * v
        if self.kind == "full":
            c = v @ self.eigvecs
            return (fn(self.eigvals.view(1, -1), s2b) * c) @ self.eigvecs.T
        # stationary
        c, h, w = self.shape
        img = v.view(-1, c, h, w)
        f = torch.fft.fft2(img)
        f = f * fn(self.eigvals.unsqueeze(0), s2.view(-1, 1, 1, 1))
        return torch.fft.ifft2(f).real.reshape(v.shape[0], -1)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        flat = _flatten(x, self.d, self.name).to(_F64)
        s = as_sigma_tensor(sigma, flat)
        out = self.mean + self._filter(flat - self.mean, s * s, _ratio)
        return out.reshape(x.shape).to(x.dtype)

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla \log p_\sigma(x) = -(\Sigma + \sigma^2 I)^{-1}(x - \mu)`."""
        flat = _flatten(x, self.d, self.name).to(_F64)
        s = as_sigma_tensor(sigma, flat)
        inv = lambda lam, s2: 1.0 / (lam + s2)  # noqa: E731
        return (-self._filter(flat - self.mean, s * s, inv)).reshape(x.shape).to(x.dtype)

    def residual_lipschitz(self, sigma: float) -> float:
        r"""Exact Lipschitz constant of ``x - D(x, sigma)``: :math:`\sigma^2/(\lambda_{\min}+\sigma^2)`."""
        s2 = float(sigma) ** 2
        lam_min = float(self.eigvals.min())
        return 1.0 if lam_min + s2 == 0 else s2 / (lam_min + s2)

    def smoothed(self, eps: float) -> "GaussianDenoiser":
        r"""The smoothed prior :math:`p_\epsilon = \mathcal N(\mu, \Sigma + \epsilon I)` (PnP-ULA's target prior)."""
        new = GaussianDenoiser.__new__(GaussianDenoiser)
        Denoiser.__init__(new)
        new.name, new.shape, new.d, new.channels, new.kind, new.lipschitz = (
            f"{self.name}_smoothed", self.shape, self.d, self.channels, self.kind, 1.0)
        new.register_buffer("mean", self.mean.clone())
        new.register_buffer("eigvals", self.eigvals + float(eps))
        if self.kind == "full":
            new.register_buffer("eigvecs", self.eigvecs.clone())
        return new

    def covariance(self) -> torch.Tensor:
        """Dense ``[d, d]`` covariance (for tests; avoid for large d)."""
        if self.kind == "full":
            return (self.eigvecs * self.eigvals) @ self.eigvecs.T
        if self.kind == "diag":
            return torch.diag(self.eigvals)
        if self.kind == "iso":
            return torch.eye(self.d, dtype=_F64) * self.eigvals
        return self._filter(torch.eye(self.d, dtype=_F64), torch.zeros(self.d, dtype=_F64), lambda lam, s2: lam + s2)

    def posterior(self, y: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Posterior of ``x`` given ``y = x + sigma n``: ``(mean [B, d], marginal variances [d])``;
        the posterior covariance is :math:`\Sigma(\Sigma+\sigma^2)^{-1}\sigma^2`."""
        flat = _flatten(y, self.d, self.name).to(_F64)
        s2 = torch.as_tensor(float(sigma) ** 2, dtype=_F64)
        mean = self.forward(flat, float(sigma))
        pv = lambda lam, t: lam * t / (lam + t) if float(t) > 0 else lam * 0  # noqa: E731
        if self.kind in ("iso", "diag"):
            var = pv(self.eigvals, s2).expand(self.d) if self.kind == "iso" else pv(self.eigvals, s2)
        elif self.kind == "full":
            var = ((self.eigvecs ** 2) * pv(self.eigvals, s2)).sum(1)
        else:
            c, h, w = self.shape
            var = pv(self.eigvals, s2).mean(dim=(-2, -1), keepdim=True).expand(c, h, w).reshape(-1)
        return mean, var

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` prior samples, ``[n, C, H, W]`` if ``shape`` is set else ``[n, d]`` (float64)."""
        z = torch.randn(n, self.d, dtype=_F64, generator=generator)
        if self.kind == "stationary":
            c, h, w = self.shape
            f = torch.fft.fft2(z.view(n, c, h, w)) * self.eigvals.sqrt()
            v = torch.fft.ifft2(f).real.reshape(n, -1)
        else:
            v = self._filter(z, torch.zeros(n, dtype=_F64), lambda lam, s2: lam.sqrt() + 0 * s2)
        out = self.mean + v
        return out.view(n, *self.shape) if self.shape is not None else out

    def log_prob(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        r""":math:`\log p_\sigma(x)` ``[B]`` (full / diag / iso kinds)."""
        flat = _flatten(x, self.d, self.name).to(_F64)
        s2 = float(sigma) ** 2
        lam = (self.eigvals if self.kind != "iso" else self.eigvals.expand(self.d)) + s2
        if self.kind == "stationary":
            raise NotImplementedError("log_prob is not implemented for the stationary kind")
        r = flat - self.mean
        c = r @ self.eigvecs if self.kind == "full" else r
        return -0.5 * ((c ** 2) / lam).sum(1) - 0.5 * torch.log(lam).sum() - 0.5 * self.d * math.log(2 * math.pi)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, d={self.d}, kind={self.kind!r}, shape={self.shape}"


class GMMDenoiser(Denoiser):
    r"""Exact MMSE denoiser for :math:`p = \sum_k w_k \mathcal N(\mu_k, \Sigma_k)` on the flattened vector.

    :param weights: ``[K]`` nonnegative (normalised internally).
    :param means: ``[K, d]``.
    :param covs: ``[K, d, d]`` (full), ``[K, d]`` (diagonal) or ``[K]`` (isotropic per component).
    :param shape: optional image shape ``(C, H, W)``.
    """

    blind = False
    sigma_range = (0.0, float("inf"))
    lipschitz = None

    def __init__(self, weights, means, covs, *, shape: Sequence[int] | None = None, name: str = "gmm"):
        super().__init__()
        self.name = name
        w = torch.as_tensor(weights, dtype=_F64).reshape(-1)
        mu = torch.as_tensor(means, dtype=_F64)
        cv = torch.as_tensor(covs, dtype=_F64)
        if mu.ndim != 2 or mu.shape[0] != w.numel():
            raise ValueError(f"GMMDenoiser.means: expected [K={w.numel()}, d], got {tuple(mu.shape)}")
        if float(w.min()) < 0 or float(w.sum()) <= 0:
            raise ValueError("GMMDenoiser.weights: must be nonnegative with a positive sum")
        k, d = mu.shape
        self.d, self.k = d, k
        self.shape = tuple(int(s) for s in shape) if shape is not None else None
        if self.shape is not None and math.prod(self.shape) != d:
            raise ValueError(f"GMMDenoiser.shape: {self.shape} has {math.prod(self.shape)} entries but d={d}")
        self.channels = self.shape[0] if self.shape is not None and len(self.shape) == 3 else None
        self.register_buffer("log_weights", torch.log(w / w.sum()))
        self.register_buffer("means", mu)
        if cv.ndim == 3:
            if cv.shape != (k, d, d):
                raise ValueError(f"GMMDenoiser.covs: expected [K, d, d] = {(k, d, d)}, got {tuple(cv.shape)}")
            lam, u = torch.linalg.eigh(0.5 * (cv + cv.transpose(1, 2)))
            if float(lam.min()) < -1e-10 * max(1.0, float(lam.max())):
                raise ValueError("GMMDenoiser.covs: a covariance is not positive semi-definite")
            self.kind = "full"
            self.register_buffer("eigvals", lam.clamp(min=0.0))  # [K, d]
            self.register_buffer("eigvecs", u)  # [K, d, d]
        elif cv.ndim == 2:
            if cv.shape != (k, d) or float(cv.min()) < 0:
                raise ValueError(f"GMMDenoiser.covs: diagonal covs must be nonnegative [K, d] = {(k, d)}")
            self.kind = "diag"
            self.register_buffer("eigvals", cv.clone())
        elif cv.ndim == 1:
            if cv.numel() != k or float(cv.min()) < 0:
                raise ValueError(f"GMMDenoiser.covs: isotropic covs must be nonnegative [K] = {k}")
            self.kind = "iso"
            self.register_buffer("eigvals", cv.view(k, 1).expand(k, d).clone())
        else:
            raise ValueError("GMMDenoiser.covs: pass [K, d, d], [K, d] or [K]")

    def _components(self, flat: torch.Tensor, s2: torch.Tensor):
        """Per-component log N(y; mu_k, Sigma_k + s2 I) [B, K] and posterior means [B, K, d]."""
        r = flat.unsqueeze(1) - self.means.unsqueeze(0)  # [B, K, d]
        lam = self.eigvals.unsqueeze(0) + s2.view(-1, 1, 1)  # [B, K, d]
        lam_safe = lam.clamp(min=1e-300)
        if self.kind == "full":
            c = torch.einsum("bkd,kde->bke", r, self.eigvecs)  # coordinates in eigenbasis
        else:
            c = r
        maha = (c * c / lam_safe).sum(-1)
        logn = -0.5 * maha - 0.5 * torch.log(lam_safe).sum(-1) - 0.5 * self.d * math.log(2 * math.pi)
        ratio = _ratio(self.eigvals.unsqueeze(0), s2.view(-1, 1, 1))
        if self.kind == "full":
            post = self.means.unsqueeze(0) + torch.einsum("bke,kde->bkd", ratio * c, self.eigvecs)
        else:
            post = self.means.unsqueeze(0) + ratio * c
        return logn, post

    def responsibilities(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities ``[B, K]`` given the noisy ``x``."""
        flat = _flatten(x, self.d, self.name).to(_F64)
        s = as_sigma_tensor(sigma, flat)
        logn, _ = self._components(flat, s * s)
        return torch.softmax(self.log_weights + logn, dim=1)

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        flat = _flatten(x, self.d, self.name).to(_F64)
        s = as_sigma_tensor(sigma, flat)
        logn, post = self._components(flat, s * s)
        resp = torch.softmax(self.log_weights + logn, dim=1)  # log-sum-exp stable
        out = (resp.unsqueeze(-1) * post).sum(1)
        return out.reshape(x.shape).to(x.dtype)

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        r"""Tweedie: :math:`\nabla\log p_\sigma(x) = (D(x,\sigma) - x)/\sigma^2` (sigma > 0)."""
        s = as_sigma_tensor(sigma, x.reshape(x.shape[0], -1).to(_F64))
        if torch.any(s <= 0):
            raise ValueError("GMMDenoiser.score: sigma must be > 0")
        d = self.forward(x.to(_F64), s)
        return ((d - x.to(_F64)) / (s * s).view(-1, *([1] * (x.ndim - 1)))).to(x.dtype)

    def log_prob(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0) -> torch.Tensor:
        r""":math:`\log p_\sigma(x)` ``[B]``."""
        flat = _flatten(x, self.d, self.name).to(_F64)
        s = as_sigma_tensor(sigma, flat)
        logn, _ = self._components(flat, s * s)
        return torch.logsumexp(self.log_weights + logn, dim=1)

    def sample(self, n: int, *, generator: torch.Generator | None = None, return_labels: bool = False):
        """Draw ``n`` prior samples (``[n, C, H, W]`` if ``shape`` is set, else ``[n, d]``; float64)."""
        lab = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.d, dtype=_F64, generator=generator)
        sd = self.eigvals[lab].sqrt() * z
        if self.kind == "full":
            sd = torch.einsum("nde,ne->nd", self.eigvecs[lab], sd)
        out = self.means[lab] + sd
        out = out.view(n, *self.shape) if self.shape is not None else out
        return (out, lab) if return_labels else out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, K={self.k}, d={self.d}, kind={self.kind!r}"


def linear_gaussian_posterior(mean, cov, A, y, sigma_y: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Exact posterior of :math:`x \sim \mathcal N(m, S)` given :math:`y = A x + \sigma_y n` (dense).

    Returns ``(post_mean [d], post_cov [d, d])`` with
    :math:`C = (S^{-1} + A^\top A/\sigma_y^2)^{-1}` computed stably as
    :math:`S - S A^\top (A S A^\top + \sigma_y^2 I)^{-1} A S` and :math:`\mu = m + S A^\top(ASA^\top+\sigma_y^2 I)^{-1}(y - Am)`.
    Useful to check samplers with a Gaussian prior (use ``S + eps I`` for PnP-ULA's smoothed prior).
    """
    m = torch.as_tensor(mean, dtype=_F64).reshape(-1)
    S = torch.as_tensor(cov, dtype=_F64)
    A = torch.as_tensor(A, dtype=_F64)
    yv = torch.as_tensor(y, dtype=_F64).reshape(-1)
    G = A @ S @ A.T + float(sigma_y) ** 2 * torch.eye(A.shape[0], dtype=_F64)
    K = torch.linalg.solve(G, A @ S).T  # S A^T G^{-1}
    post_mean = m + K @ (yv - A @ m)
    post_cov = S - K @ A @ S
    return post_mean, 0.5 * (post_cov + post_cov.T)
