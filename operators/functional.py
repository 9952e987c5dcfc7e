"""Pure tensor kernels behind :mod:`operators.blur`: boundary padding, its exact adjoint,
and padded convolution / its transpose.

Convolution convention (as deepinv ``conv2d`` / ``BlurFFT`` and the PnP-ULA authors' FFT
code): for a kernel ``k`` of size ``h × w`` with origin ``(c_h, c_w) = (h // 2, w // 2)``,

.. math:: (A x)[i, j] = \\sum_{m, n} k[m, n]\\; \\bar x[i - m + c_h,\\; j - n + c_w],

where ``\\bar x`` extends ``x`` outside the image by the boundary rule; ``A^T`` is the
correlation with ``k`` followed by the adjoint of the extension. So the padding is
``h - 1 - c_h`` rows before and ``c_h`` after (equal for odd ``h``).

Boundary rules (torch ``F.pad`` names): ``circular`` (periodic), ``reflect`` (mirror without
repeating the edge, ``[b a | a b c | c b]`` -> ``[c b | a b c | b a]``, numpy's "reflect",
scipy.ndimage's "mirror"), ``replicate`` (edge value), ``zero``.

Why the padding is written here rather than with deepinv 0.5's ``conv2d(padding=...)`` /
``conv_transpose2d(padding=...)``: their transposed padding (``_apply_transpose_padding``)
crashes for ``circular``/``reflect`` and returns a wrong adjoint for ``replicate`` when a
kernel dimension is 1 (or 2 for circular), i.e. when one side has a zero-width pad (checked:
relative adjoint error 0.29 for a 7×1 kernel with ``replicate``). Here the extension is an
index gather, ``x̄ = x[idx]``, whose exact adjoint is the scatter-add ``index_add``; it works
for every kernel size and mode. The valid (unpadded) convolution and its transpose are
deepinv's ``conv2d_fft(padding="valid")`` / ``conv_transpose2d_fft(padding="valid")``
(exact linear convolution on a ``(H+h-1) × (W+w-1)`` FFT grid). FFT rather than the direct
``conv2d``: on CPU, torch's direct float64 convolution and its transpose are 10-50× slower
(no oneDNN kernels), and the power iteration for ``||A||^2`` runs in float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "BOUNDARIES",
    "kernel_padding",
    "pad_indices",
    "pad2d",
    "pad2d_adjoint",
    "conv2d_padded",
    "conv2d_padded_adjoint",
]

BOUNDARIES = ("circular", "reflect", "replicate", "zero")


def kernel_padding(h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` padding for a ``h × w`` kernel with origin ``(h//2, w//2)``."""
    return (h - 1 - h // 2, h // 2), (w - 1 - w // 2, w // 2)


def pad_indices(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source index in ``[0, n)`` of each of the ``before + n + after`` padded positions.

    ``mode`` in ``circular``, ``reflect``, ``replicate`` (``zero`` has no source index).
    """
    i = torch.arange(-before, n + after)
    if mode == "circular":
        return torch.remainder(i, n)
    if mode == "replicate":
        return torch.clamp(i, 0, n - 1)
    if mode == "reflect":
        if n == 1:
            return torch.zeros_like(i)
        period = 2 * (n - 1)
        r = torch.remainder(i, period)
        return torch.where(r > n - 1, period - r, r)
    raise ValueError(f"boundary: {mode!r} has no index map; use one of {BOUNDARIES}")


def pad2d(x: torch.Tensor, pad_h: tuple[int, int], pad_w: tuple[int, int], mode: str) -> torch.Tensor:
    """Extend ``x`` (``[..., H, W]``) by ``pad_h`` rows and ``pad_w`` columns using ``mode``."""
    if mode == "zero":
        return F.pad(x, (pad_w[0], pad_w[1], pad_h[0], pad_h[1]))
    H, W = x.shape[-2:]
    ih = pad_indices(H, pad_h[0], pad_h[1], mode).to(x.device)
    iw = pad_indices(W, pad_w[0], pad_w[1], mode).to(x.device)
    return x.index_select(-2, ih).index_select(-1, iw)


def pad2d_adjoint(
    y: torch.Tensor, pad_h: tuple[int, int], pad_w: tuple[int, int], mode: str
) -> torch.Tensor:
    """Exact adjoint of :func:`pad2d`: padded ``[..., H+ph, W+pw]`` -> ``[..., H, W]``.

    ``zero``: crop. Otherwise scatter-add every padded pixel back onto its source pixel.
    """
    Hp, Wp = y.shape[-2:]
    H, W = Hp - pad_h[0] - pad_h[1], Wp - pad_w[0] - pad_w[1]
    if mode == "zero":
        return y[..., pad_h[0] : pad_h[0] + H, pad_w[0] : pad_w[0] + W]
    ih = pad_indices(H, pad_h[0], pad_h[1], mode).to(y.device)
    iw = pad_indices(W, pad_w[0], pad_w[1], mode).to(y.device)
    t = y.new_zeros(y.shape[:-1] + (W,)).index_add_(-1, iw, y)
    return y.new_zeros(y.shape[:-2] + (H, W)).index_add_(-2, ih, t)


def conv2d_padded(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """``A x``: convolution of ``x`` ``[B, C, H, W]`` with ``kernel`` ``[1, 1|C, h, w]``, same size."""
    from deepinv.physics.functional import conv2d_fft

    ph, pw = kernel_padding(*kernel.shape[-2:])
    return conv2d_fft(pad2d(x, ph, pw, mode), kernel, padding="valid")


def conv2d_padded_adjoint(y: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """``A^T y``: correlation with ``kernel`` (transposed valid convolution), then pad adjoint."""
    from deepinv.physics.functional import conv_transpose2d_fft

    ph, pw = kernel_padding(*kernel.shape[-2:])
    return pad2d_adjoint(conv_transpose2d_fft(y, kernel, padding="valid"), ph, pw, mode)
