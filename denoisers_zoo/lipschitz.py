r"""Lipschitz constants by power iteration on the Jacobian: any batched map
(:func:`jacobian_spectral_norm`, used for generators and denoisers) and the residual
``R(x) = x - D(x, sigma)`` of a denoiser (:func:`residual_lipschitz`, the zoo cards' figure).

At a point ``x`` the local Lipschitz constant is the spectral norm of the Jacobian :math:`J_R(x)`;
power iteration on :math:`J^\top J` (``jvp`` then ``vjp``) converges to it from below. The maximum
over a few points is a lower bound of the global constant (the PnP-ULA and SK-ROCK step-size
rules assume ``L`` known: ``docs/algorithms.md §residual-lipschitz``).
"""
from __future__ import annotations

import math

import torch

__all__ = ["jacobian_spectral_norm", "residual_lipschitz", "conv_norm_bound", "certified_residual_bound"]


def jacobian_spectral_norm(
    fn,
    x: torch.Tensor,
    *,
    n_iter: int = 30,
    generator: torch.Generator | None = None,
    reduce: str = "max",
) -> float | torch.Tensor:
    r"""Spectral norm :math:`\|J_{fn}(x_b)\|_2` at each point ``x_b`` of a batch, by power iteration.

    Iterates :math:`v \leftarrow J^\top J v / \|J^\top J v\|` (``torch.func.jvp`` then ``vjp``) and
    reports :math:`\|J v\|`, which increases to the top singular value from below. ``fn`` must act on
    each batch item separately (output item ``b`` depends on input item ``b`` only) so that the
    Jacobian is block-diagonal over the batch; input and output shapes may differ (a generator
    ``[B, k] -> [B, C, H, W]``). The maximum over points is a lower bound of the global
    Lipschitz constant of ``fn``.

    :param fn: differentiable map ``[B, ...] -> [B, ...]``.
    :param x: ``[B, ...]`` points.
    :param n_iter: power iterations (keyword-only int >= 1).
    :param generator: ``torch.Generator`` for the random start.
    :param reduce: ``"max"`` (float, max over the batch) or ``"none"`` (``[B]`` tensor).

    >>> import torch
    >>> W = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    >>> round(jacobian_spectral_norm(lambda z: z @ W.T, torch.ones(2, 2), n_iter=20), 6)
    3.0
    """
    if not isinstance(n_iter, int) or isinstance(n_iter, bool) or n_iter < 1:
        raise ValueError(f"n_iter: must be an int >= 1, got {n_iter!r}")
    if reduce not in ("max", "none"):
        raise ValueError(f"reduce: must be 'max' or 'none', got {reduce!r}")
    x = x.detach()
    b = x.shape[0]

    def normalize(t):
        n = t.reshape(b, -1).norm(dim=1).clamp_min(1e-30)
        return t / n.view(b, *([1] * (t.ndim - 1)))

    v = normalize(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))
    est = torch.zeros(b, dtype=x.dtype)
    with torch.enable_grad():
        _, vjp_fn = torch.func.vjp(fn, x)
        for _ in range(n_iter):
            _, jv = torch.func.jvp(fn, (x,), (v,))  # J v (block-diagonal over the batch)
            (jtjv,) = vjp_fn(jv)  # J^T J v
            est = jv.reshape(b, -1).norm(dim=1).detach().cpu()
            v = normalize(jtjv.detach())
    return float(est.max()) if reduce == "max" else est


def residual_lipschitz(
    denoiser,
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    n_iter: int = 30,
    generator: torch.Generator | None = None,
    reduce: str = "max",
) -> float | torch.Tensor:
    """Spectral norm of the Jacobian of ``x -> x - denoiser(x, sigma)`` at each image of ``x``
    (:func:`jacobian_spectral_norm` applied to the residual).

    :param denoiser: any zoo ``Denoiser`` (differentiable in x).
    :param x: ``[B, C, H, W]`` points (e.g. noisy images).
    :param sigma: float or ``[B]`` noise std on the [0, 1] scale.
    :param n_iter: power iterations (keyword-only int >= 1).
    :param generator: ``torch.Generator`` for the random start.
    :param reduce: ``"max"`` (float, max over the batch) or ``"none"`` (``[B]`` tensor).

    >>> import torch
    >>> from denoisers_zoo.exact import GaussianDenoiser
    >>> D = GaussianDenoiser(torch.zeros(3), torch.diag(torch.tensor([1.0, 0.5, 0.25])))
    >>> g = torch.Generator().manual_seed(0)
    >>> round(residual_lipschitz(D, torch.randn(2, 3, generator=g), 0.5, n_iter=50, generator=g), 4)
    0.5
    >>> D.residual_lipschitz(0.5)  # exact: sigma^2 / (lambda_min + sigma^2)
    0.5
    """

    def residual(z):
        return z - denoiser(z, sigma)

    return jacobian_spectral_norm(residual, x, n_iter=n_iter, generator=generator, reduce=reduce)


def conv_norm_bound(weight: torch.Tensor, grid: int = 128) -> tuple[float, float]:
    r"""Operator norm of the 2-D convolution with ``weight`` ``[C_out, C_in, k, k]`` on :math:`\ell^2(\mathbb Z^2)`.

    The norm is :math:`\sup_\omega \|\hat W(\omega)\|_2` with :math:`\hat W(\omega)=\sum_k W_k e^{i\omega\cdot k}`.
    Returns ``(grid_max, certified)``: the maximum over a ``grid x grid`` frequency grid (a lower bound)
    and a certified upper bound, the smaller of ``grid_max + (h/2) (L_1 + L_2)`` (``h = 2 pi / grid``,
    :math:`L_j = \sum_k |k_j| \|W_k\|_2` bounds the derivative of the symbol) and, by Bernstein's
    inequality for the (phase-centred) symbol of degree :math:`n_j = (k_j - 1)/2`,
    ``grid_max / (1 - (h/2)(n_1 + n_2))``.
    Zero-padded ("same") convolutions on a finite image are compressions of this operator, so
    their norm is at most the same bound.
    """
    w = weight.detach().to(torch.float64)
    k1, k2 = w.shape[-2:]
    sym = torch.fft.fft2(w, s=(grid, grid)).permute(2, 3, 0, 1)  # [G, G, C_out, C_in]
    grid_max = float(torch.linalg.matrix_norm(sym, ord=2).max())
    blocks = torch.linalg.matrix_norm(w.permute(2, 3, 0, 1), ord=2)  # ||W_k||_2, [k1, k2]
    o1 = (torch.arange(k1, dtype=torch.float64) - (k1 - 1) / 2).abs().view(-1, 1)
    o2 = (torch.arange(k2, dtype=torch.float64) - (k2 - 1) / 2).abs().view(1, -1)
    lip_w = float((blocks * o1).sum() + (blocks * o2).sum())
    cert = grid_max + (math.pi / grid) * lip_w
    # Bernstein: for unit u, v, p = u^* W(w) v (phase-centred) has degree n_j = (k_j - 1)/2 in w_j, so
    # |p'_j| <= n_j sup|p| <= n_j S and S <= grid_max + (pi / grid) (n_1 + n_2) S.
    shrink = 1.0 - (math.pi / grid) * ((k1 - 1) / 2 + (k2 - 1) / 2)
    if shrink > 0:
        cert = min(cert, grid_max / shrink)
    return grid_max, cert


def certified_residual_bound(net: torch.nn.Module, grid: int = 128) -> dict:
    """Certified upper bound of ``Lip(x - D(x))`` for a ``LipDnCNN`` (product of conv norm bounds;
    activations (ReLU / MaxMin) are 1-Lipschitz, biases do not count)."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    per = [conv_norm_bound(m.weight, grid) for m in layers]
    prod_grid = math.prod(p[0] for p in per)
    prod_cert = math.prod(p[1] for p in per)
    return {"per_layer_grid_max": [p[0] for p in per], "per_layer_certified": [p[1] for p in per],
            "product_grid_max": prod_grid, "certified_upper_bound": prod_cert, "grid": grid}
