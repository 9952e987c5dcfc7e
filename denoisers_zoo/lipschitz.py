r"""Lipschitz constant of the residual ``R(x) = x - D(x, sigma)`` by power iteration on the Jacobian.

At a point ``x`` the local Lipschitz constant is the spectral norm of the Jacobian :math:`J_R(x)`;
power iteration on :math:`J^\top J` (``jvp`` then ``vjp``) converges to it from below. The maximum
over a few points is a lower bound of the global constant (PnP-ULA pitfall 6: the step-size rules
assume ``L`` known).
"""
from __future__ import annotations

import torch

__all__ = ["residual_lipschitz"]


def residual_lipschitz(
    denoiser,
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    n_iter: int = 30,
    generator: torch.Generator | None = None,
    reduce: str = "max",
) -> float | torch.Tensor:
    """Spectral norm of the Jacobian of ``x -> x - denoiser(x, sigma)`` at each image of ``x``.

    :param denoiser: any zoo ``Denoiser`` (differentiable in x).
    :param x: ``[B, C, H, W]`` points (e.g. noisy images).
    :param sigma: float or ``[B]`` noise std on the [0, 1] scale.
    :param n_iter: power iterations (keyword-only int >= 1).
    :param generator: ``torch.Generator`` for the random start.
    :param reduce: ``"max"`` (float, max over the batch) or ``"none"`` (``[B]`` tensor).
    """
    if not isinstance(n_iter, int) or isinstance(n_iter, bool) or n_iter < 1:
        raise ValueError(f"n_iter: must be an int >= 1, got {n_iter!r}")
    if reduce not in ("max", "none"):
        raise ValueError(f"reduce: must be 'max' or 'none', got {reduce!r}")
    x = x.detach()
    b = x.shape[0]

    def res(z):
        return z - denoiser(z, sigma)

    v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)

    def normalize(t):
        n = t.reshape(b, -1).norm(dim=1).clamp_min(1e-30)
        return t / n.view(b, *([1] * (t.ndim - 1))), n

    v, _ = normalize(v)
    est = torch.zeros(b, dtype=x.dtype)
    with torch.enable_grad():
        _, vjp_fn = torch.func.vjp(res, x)
        for _ in range(n_iter):
            _, jv = torch.func.jvp(res, (x,), (v,))  # J v (block-diagonal over the batch)
            (jtjv,) = vjp_fn(jv)  # J^T J v
            est = jv.reshape(b, -1).norm(dim=1).detach().cpu()
            v, _ = normalize(jtjv.detach())
    return float(est.max()) if reduce == "max" else est
