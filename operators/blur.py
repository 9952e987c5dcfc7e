"""Shift-invariant blur ``A x = k * x`` with a choice of boundary condition.

``A`` is a convolution (flipped kernel) and ``A^T`` the correlation, as in the PnP-ULA
authors' code; the kernel origin is ``(h//2, w//2)`` (see :mod:`operators.functional`).

* ``boundary="circular"`` with a known ``image_shape``: deepinv ``BlurFFT`` (exact circular
  convolution by real FFT; adjoint = multiplication by the conjugate transfer function). One
  ``BlurFFT`` is kept per dtype/device so float32 stays float32 and float64 stays float64.
* otherwise (``reflect``, ``replicate``, ``zero``, or circular without ``image_shape``):
  explicit extension + deepinv valid ``conv2d`` and its exact transpose
  (:func:`operators.functional.conv2d_padded`); deepinv's own padded transposes are not used
  because they fail for kernels with a dimension of size 1 or 2 (see :mod:`operators.functional`).
"""
from __future__ import annotations

from typing import Sequence

import torch

from operators import functional as Fn
from operators.base import LinearOperator
from operators.kernels import load_kernel

__all__ = ["Blur", "normalise_image_shape"]


def normalise_image_shape(image_shape, name: str = "image_shape") -> tuple[int, int, int] | None:
    """``(C, H, W)`` from ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` (``None`` passes)."""
    if image_shape is None:
        return None
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1,) + shape
    elif len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name}: expected (H, W), (C, H, W) or (B, C, H, W), got {image_shape!r}")
    return shape


class Blur(LinearOperator):
    r"""Convolution with ``kernel`` under a boundary rule.

    .. math:: A x = k * \bar x, \qquad A^T y = \bar{\,\cdot\,}^T (k \star y),

    ``*`` convolution, ``\star`` correlation, ``\bar x`` the boundary extension.

    Args:
        kernel: ``[h, w]`` (all channels) or ``[C, h, w]`` tensor/array, or a ``.npy``/image
            path; validated by :func:`operators.kernels.check_kernel` (non-negative, finite,
            normalised to sum 1).
        boundary: ``"circular"`` (FFT), ``"reflect"``, ``"replicate"`` or ``"zero"``.
        image_shape: ``(C, H, W)`` (or ``(H, W)``/``(B, C, H, W)``) if known; enables the
            FFT path and the checks at construction.

    Inputs ``x`` are ``[B, C, H, W]`` of any dtype; the kernel is cast to ``x``'s dtype.
    A ``[C, h, w]`` kernel sets ``channels = C``. The kernel must not be larger than the
    image (``h <= H``, ``w <= W``).

    >>> op = Blur(torch.ones(3, 3) / 9, boundary="reflect")
    >>> op.A(torch.ones(2, 1, 8, 8)).allclose(torch.ones(2, 1, 8, 8))
    True
    """

    name = "blur"

    def __init__(self, kernel, *, boundary: str = "circular", image_shape: Sequence[int] | None = None):
        if boundary not in Fn.BOUNDARIES:
            raise ValueError(f"boundary: {boundary!r} is not valid; use one of {list(Fn.BOUNDARIES)}")
        self.kernel = load_kernel(kernel, "kernel")
        self.boundary = boundary
        self.image_shape = normalise_image_shape(image_shape)
        kc = self.kernel.shape[0] if self.kernel.ndim == 3 else None
        self.channels = kc
        if self.image_shape is not None:
            self._check_shape(self.image_shape, "image_shape")
            self.channels = self.image_shape[0]
        self._cache: dict = {}

    def __repr__(self) -> str:
        return (
            f"Blur(kernel={tuple(self.kernel.shape)}, boundary={self.boundary!r}, "
            f"image_shape={self.image_shape})"
        )

    def _check_shape(self, shape: tuple[int, ...], name: str) -> None:
        C, H, W = shape[-3:]
        h, w = self.kernel.shape[-2:]
        if h > H or w > W:
            raise ValueError(
                f"{name}: kernel {h}x{w} is larger than the image {H}x{W}; use a smaller kernel"
            )
        if self.kernel.ndim == 3 and self.kernel.shape[0] != C:
            raise ValueError(
                f"{name}: kernel has {self.kernel.shape[0]} channels but the image has {C}; "
                "pass a [h, w] kernel or one per image channel"
            )
        if self.image_shape is not None and tuple(shape[-3:]) != self.image_shape:
            raise ValueError(
                f"x: shape {tuple(shape[-3:])} differs from the operator's image_shape "
                f"{self.image_shape}; build the operator for this image size"
            )

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        """Kernel as ``[1, 1|C, h, w]`` in x's dtype/device (cached)."""
        key = ("filter", x.dtype, x.device)
        if key not in self._cache:
            k = self.kernel if self.kernel.ndim == 3 else self.kernel[None]
            self._cache[key] = k[None].to(device=x.device, dtype=x.dtype)
        return self._cache[key]

    def _fft(self, x: torch.Tensor):
        key = ("fft", x.dtype, x.device)
        if key not in self._cache:
            from deepinv.physics import BlurFFT

            self._cache[key] = BlurFFT(
                img_size=self.image_shape, filter=self._filter(x), device=x.device
            )
        return self._cache[key]

    def _use_fft(self) -> bool:
        return self.boundary == "circular" and self.image_shape is not None

    def norm_squared(self, shape: Sequence[int], **kwargs) -> float:
        """``||A||_2^2``. Circular: exact, ``max_ω |k̂(ω)|^2`` (the eigenvalues of a circulant
        ``A^T A`` are the squared moduli of the kernel's DFT on the ``H × W`` grid; = 1 for a
        non-negative kernel summing to 1). Other boundaries: power iteration
        (:func:`operators.base.power_norm_squared`, same keyword arguments)."""
        if self.boundary != "circular":
            return super().norm_squared(shape, **kwargs)
        self._check_shape(tuple(shape), "shape")
        return float(self._gram_eigenvalues(shape).max())

    def _gram_eigenvalues(self, shape) -> torch.Tensor:
        """``|k̂(ω)|²`` on the ``H × W`` grid (rfft2 half-plane), float64 ``[C|1, H, W//2+1]``."""
        H, W = tuple(shape)[-2:]
        k = self.kernel if self.kernel.ndim == 3 else self.kernel[None]
        k_pad = torch.zeros(k.shape[0], H, W, dtype=torch.float64)
        k_pad[:, : k.shape[-2], : k.shape[-1]] = k
        return torch.fft.rfft2(k_pad).abs() ** 2

    def gram_spectrum(self, shape: Sequence[int]):
        """Circular boundary: ``A^T A`` is diagonal in the Fourier basis with eigenvalues
        ``|k̂(ω)|²`` (the kernel's position does not change them). Other boundaries raise."""
        from operators.spectral import GramSpectrum

        if not self._use_fft():
            return super().gram_spectrum(shape)
        self._check_shape(tuple(shape), "shape")
        H, W = tuple(shape)[-2:]
        return GramSpectrum(self._gram_eigenvalues(shape), "fourier", (H, W))

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self._check_shape(tuple(x.shape), "x")
        if self._use_fft():
            return self._fft(x).A(x)
        return Fn.conv2d_padded(x, self._filter(x), self.boundary)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self._check_shape(tuple(y.shape), "y")
        if self._use_fft():
            return self._fft(y).A_adjoint(y)
        return Fn.conv2d_padded_adjoint(y, self._filter(y), self.boundary)

    @property
    def has_exact_prox(self) -> bool:  # circular: A^T A is diagonal in the Fourier basis
        return self._use_fft()

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
        """Circular boundary: ``(I + gamma A^T A)^{-1}(z + gamma A^T y)`` by FFT (deepinv
        ``BlurFFT.prox_l2``). Other boundaries have no exact prox (raises)."""
        if not self._use_fft():
            return super().prox_l2(z, y, gamma)
        self._check_shape(tuple(z.shape), "z")
        return self._fft(z).prox_l2(z, y, gamma)
