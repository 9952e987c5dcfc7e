"""Trained-network denoisers: architectures and the common ``D(x, sigma)`` wrapper.

Two architectures, both built from an ``arch`` dict (stored in the recipe and in the manifest):

* ``{"type": "drunet", "channels": C, "nc": [16, 32, 64, 128], "nb": 2}`` — deepinv's DRUNet
  (noise-conditional U-Net). DRUNet's convention: the noise level map is an extra input channel
  filled with sigma on the [0, 1] scale (``deepinv/models/drunet.py``: ``torch.cat((x, noise_level_map), 1)``);
  the network predicts the clean image directly. We build the noise map ourselves (in x's dtype)
  and call ``forward_unet`` on an input reflect-padded to a multiple of 8.
* ``{"type": "lipdncnn", "channels": 1, "features": 32, "depth": 8, "activation": "maxmin",
  "sn_method": "fft", "sn_size": 16, "sn_power": 2}`` — a DnCNN-style residual network
  ``D(x) = x - R(x)`` with **no BatchNorm**, 1-Lipschitz activations (MaxMin or ReLU), and every
  convolution divided by ``max(1, ||conv||)`` where ``||conv||`` is the operator norm of the
  convolution itself (per-frequency power iteration on its DFT symbol, or power iteration on the
  circular convolution), not the norm of the reshaped weight matrix that
  ``torch.nn.utils.spectral_norm`` uses (which can under-estimate it by up to the kernel size).
  At export every conv is rescaled to norm <= 1 on a fine frequency grid (``fold_grid_norms``), so
  ``Lip(R) = Lip(I - D) <= 1`` by construction up to that grid's accuracy (see
  ``denoisers_zoo.lipschitz.certified_residual_bound`` for a certified bound).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from denoisers_zoo.base import Denoiser, as_sigma_tensor

__all__ = ["NetDenoiser", "build_net", "DRUNetNet", "LipDnCNN", "ConvSpectralNorm", "check_input", "check_sigma"]


def check_input(x: torch.Tensor, channels: int | None, name: str) -> None:
    """One-line ValueError for non-4D input or wrong channel count."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: x must be a [B, C, H, W] tensor, got {shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name}: expects {channels} channel(s) but x has {x.shape[1]}; "
            f"use a {'grayscale' if channels == 1 else 'colour'} image or a zoo model with {x.shape[1]} channel(s)"
        )


def check_sigma(s: torch.Tensor, sigma_range: tuple[float, float], name: str) -> None:
    lo, hi = sigma_range
    tol = 1e-6 * max(hi, 1e-12)
    if torch.any(s < lo - tol) or torch.any(s > hi + tol):
        raise ValueError(
            f"{name}: sigma in [{float(s.min()):.5g}, {float(s.max()):.5g}] is outside sigma_range "
            f"[{lo:.5g}, {hi:.5g}] (= [{lo * 255:.3g}, {hi * 255:.3g}]/255); pass sigma on the [0,1] scale within it"
        )


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w


class DRUNetNet(nn.Module):
    """deepinv DRUNet with the noise map built in x's dtype; ``forward(x, s)`` with s a [B] tensor.

    On CPU the network runs on a channels-last copy of its input (oneDNN then picks its NHWC
    convolution kernels; the output is returned in the usual layout). Same numbers to ~1e-8;
    measured here on one thread at 256² (nc [16, 32, 96, 192]): 78-83 ms -> 63-66 ms forward, and
    a training step (8 x 128², forward + backward) ~10 % faster. Our choice: not applied on GPU,
    where it was not measured.
    """

    multiple = 8

    def __init__(self, channels: int, nc=(16, 32, 64, 128), nb: int = 2):
        super().__init__()
        from deepinv.models import DRUNet

        self.drunet = DRUNet(in_channels=channels, out_channels=channels, nc=tuple(nc), nb=int(nb), pretrained=None)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        noise_map = s.to(x.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)
        z = torch.cat((x, noise_map), 1)
        if z.device.type != "cpu":
            return self.drunet.forward_unet(z)
        return self.drunet.forward_unet(z.contiguous(memory_format=torch.channels_last)).contiguous()


class _SpectralNormParam(nn.Module):
    """Shared forward of the conv-norm parametrizations: ``W -> W / max(1, ||conv_W||)`` (or
    ``W / ||conv_W||`` with ``always_normalize``); the norm estimate is refined by ``n_power``
    power-iteration steps per training forward and frozen in eval mode. Subclasses provide
    ``power_iterate(w, n)`` and ``operator_norm(w)``."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.training and self.n_power > 0:
            self.power_iterate(w, self.n_power)
        # In eval mode without autograd the result depends only on w: reuse it while w is unchanged
        # (its FFT operator norm cost ~3x the convolutions of a 64x64 forward).
        cacheable = not self.training and not (torch.is_grad_enabled() and w.requires_grad)
        key = (id(w), w._version, w.dtype, w.device)
        cached = self.__dict__.get("_eval_cache")
        if cacheable and cached is not None and cached[0] == key:
            return cached[1]
        sigma = self.operator_norm(w)
        out = w / sigma if self.always_normalize else w / torch.clamp(sigma, min=1.0)
        self.__dict__["_eval_cache"] = (key, out.detach()) if cacheable else None
        return out


class ConvSpectralNorm(_SpectralNormParam):
    """Parametrization ``W -> W / max(1, ||conv_W||)`` with ``||conv_W||`` the operator norm of the
    (circular, ``size x size``) convolution, estimated by persistent power iteration (one step per
    training forward; frozen in eval mode)."""

    def __init__(self, weight: torch.Tensor, size: int = 32, n_power: int = 1, always_normalize: bool = False):
        super().__init__()
        cin = weight.shape[1]
        u = torch.randn(1, cin, size, size)
        self.register_buffer("u", u / u.norm())
        self.n_power = int(n_power)
        self.always_normalize = bool(always_normalize)

    @staticmethod
    def _conv(u, w):
        p = w.shape[-1] // 2
        return F.conv2d(F.pad(u, (p, p, p, p), mode="circular"), w)

    @staticmethod
    def _conv_t(v, w):
        p = w.shape[-1] // 2
        return F.conv2d(F.pad(v, (p, p, p, p), mode="circular"), w.transpose(0, 1).flip(2, 3))

    def power_iterate(self, w: torch.Tensor, n: int) -> None:
        with torch.no_grad():
            u = self.u.to(w.dtype)
            for _ in range(n):
                u = self._conv_t(self._conv(u, w), w)
                u = u / (u.norm() + 1e-30)
            self.u.copy_(u)

    def operator_norm(self, w: torch.Tensor) -> torch.Tensor:
        return self._conv(self.u.to(w.dtype), w).norm()



class FFTSpectralNorm(_SpectralNormParam):
    """Parametrization ``W -> W / max(1, ||conv_W||)`` where ``||conv_W||`` is computed in the Fourier
    domain: the circular ``size x size`` convolution is block-diagonalised by the 2-D DFT into
    ``size^2`` small ``C_out x C_in`` matrices (the kernel's symbol), and the norm is the max over
    frequencies of their spectral norms, each tracked by a warm-started power iteration (``n_power``
    steps per training forward). Unlike power iteration on the whole conv operator, there is no
    near-degeneracy across frequencies, so the estimate stays converged while the weights move."""

    def __init__(self, weight: torch.Tensor, size: int = 32, n_power: int = 2, always_normalize: bool = False):
        super().__init__()
        cin = weight.shape[1]
        u = torch.randn(size * size, cin, 2)
        self.register_buffer("u", u / u.norm(dim=(1, 2), keepdim=True))
        self.size = int(size)
        self.n_power = int(n_power)
        self.always_normalize = bool(always_normalize)

    def symbol(self, w: torch.Tensor) -> torch.Tensor:
        sym = torch.fft.fft2(w, s=(self.size, self.size))  # [C_out, C_in, G, G]
        return sym.permute(2, 3, 0, 1).reshape(self.size * self.size, w.shape[0], w.shape[1])

    def _u(self, dtype) -> torch.Tensor:
        return torch.view_as_complex(self.u.to(torch.float64 if dtype == torch.float64 else torch.float32).contiguous())

    def power_iterate(self, w: torch.Tensor, n: int) -> None:
        with torch.no_grad():
            sym = self.symbol(w)
            u = self._u(w.dtype).to(sym.dtype)
            for _ in range(n):
                v = torch.einsum("foi,fi->fo", sym, u)
                u = torch.einsum("foi,fo->fi", sym.conj(), v)
                u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-30)
            self.u.copy_(torch.view_as_real(u).to(self.u.dtype))

    def operator_norm(self, w: torch.Tensor) -> torch.Tensor:
        sym = self.symbol(w)
        u = self._u(w.dtype).to(sym.dtype)
        return torch.einsum("foi,fi->fo", sym, u).abs().pow(2).sum(1).sqrt().max()



class MaxMin(nn.Module):
    """GroupSort-2 activation: channel pairs -> (max, min). 1-Lipschitz and gradient-norm preserving
    (Anil et al. 2019), unlike ReLU which halves the signal energy at every layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat((torch.maximum(a, b), torch.minimum(a, b)), dim=1)


class LipDnCNN(nn.Module):
    """Residual ``R`` of a DnCNN without BatchNorm; all convs 1-Lipschitz -> ``Lip(R) <= 1``.
    ``forward(x, s)`` returns the denoised image ``x - R(x)`` (sigma is not an input: fixed-sigma model)."""

    multiple = 1

    def __init__(self, channels: int = 1, features: int = 32, depth: int = 10, sn_size: int = 32, bias: bool = True,
                 activation: str = "relu", normalize: str = "clamp", init_gain: float = 1.0 / 3.0,
                 sn_method: str = "circular", sn_power: int = 1):
        super().__init__()
        if activation not in ("relu", "maxmin"):
            raise ValueError(f"arch.activation: unknown {activation!r}; use 'relu' or 'maxmin'")
        if normalize not in ("clamp", "always"):
            raise ValueError(f"arch.normalize: unknown {normalize!r}; use 'clamp' (W/max(1,||W||)) or 'always' (W/||W||)")
        if sn_method not in ("circular", "fft"):
            raise ValueError(f"arch.sn_method: unknown {sn_method!r}; use 'fft' (per-frequency power iteration) or 'circular'")
        if activation == "maxmin" and features % 2:
            raise ValueError(f"arch.features: MaxMin needs an even number of features, got {features}")
        sn_cls = FFTSpectralNorm if sn_method == "fft" else ConvSpectralNorm
        layers: list[nn.Module] = []
        cin = channels
        for i in range(depth):
            cout = channels if i == depth - 1 else features
            conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias and i < depth - 1)
            nn.init.orthogonal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(float(init_gain))
            parametrize.register_parametrization(
                conv, "weight", sn_cls(conv.weight, size=sn_size, n_power=sn_power, always_normalize=normalize == "always"))
            layers.append(conv)
            if i < depth - 1:
                layers.append(nn.ReLU() if activation == "relu" else MaxMin())
            cin = cout
        self.body = nn.Sequential(*layers)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)

    def _normalised_convs(self):
        """``(conv, its spectral-norm parametrization, its raw weight)`` for every conv of the body."""
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                p = m.parametrizations.weight
                yield m, p, p.original

    def refine_norms(self, n_iter: int = 200) -> list[float]:
        """Run extra power iterations on every conv (call before export); returns the norms."""
        norms = []
        with torch.no_grad():
            for _, p, w in self._normalised_convs():
                p[0].power_iterate(w, n_iter)
                norms.append(float(p[0].operator_norm(w)))
        return norms

    def fold_grid_norms(self, grid: int = 128) -> list[float]:
        """Make every conv's effective norm <= 1 on a ``grid x grid`` frequency grid of the
        convolution on Z^2 (zero-padded "same" convs on any image size are compressions of it),
        not only on the (coarser) circular grid used in training. Implemented by rescaling the stored
        power-iteration vector ``u`` so that the normaliser ``||conv(u)||`` equals
        ``max(||conv(u)||, grid norm)``; the state-dict layout is unchanged. Returns the effective
        per-layer grid norms (each <= 1)."""
        from denoisers_zoo.lipschitz import conv_norm_bound

        out = []
        with torch.no_grad():
            for m, p, w in self._normalised_convs():
                sig_u = float(p[0].operator_norm(w))
                g_raw, _ = conv_norm_bound(w, grid)
                if g_raw > sig_u:
                    p[0].u.mul_(g_raw / sig_u)
                out.append(conv_norm_bound(m.weight, grid)[0])
        return out


def build_net(arch: dict) -> nn.Module:
    """Build the bare network from an ``arch`` dict (recipe ``arch`` section)."""
    arch = dict(arch)
    kind = arch.pop("type", None)
    if kind == "drunet":
        return DRUNetNet(int(arch["channels"]), nc=arch.get("nc", (16, 32, 64, 128)), nb=int(arch.get("nb", 2)))
    if kind == "lipdncnn":
        return LipDnCNN(
            int(arch.get("channels", 1)),
            features=int(arch.get("features", 32)),
            depth=int(arch.get("depth", 10)),
            sn_size=int(arch.get("sn_size", 32)),
            activation=str(arch.get("activation", "relu")),
            normalize=str(arch.get("normalize", "clamp")),
            init_gain=float(arch.get("init_gain", 1.0 / 3.0)),
            sn_method=str(arch.get("sn_method", "circular")),
            sn_power=int(arch.get("sn_power", 1)),
        )
    if kind == "edm_drunet":
        from denoisers_zoo.edm import EDMDRUNet

        return EDMDRUNet(int(arch["channels"]), nc=arch.get("nc", (16, 32, 64, 128)), nb=int(arch.get("nb", 1)),
                         sigma_data=float(arch.get("sigma_data", 0.25)))
    raise ValueError(f"arch.type: unknown architecture {kind!r}; use one of 'drunet', 'lipdncnn', 'edm_drunet'")


class NetDenoiser(Denoiser):
    """Wrap a network ``net(x, s)`` into the zoo interface ``D(x, sigma)``.

    Checks channels and ``sigma_range``, computes in the network's dtype (float64 input works and
    is returned as float64), reflect-pads H, W to the network's multiple and crops back.

    >>> import torch
    >>> arch = {"type": "drunet", "channels": 1, "nc": [8, 16, 32, 64], "nb": 1}
    >>> D = NetDenoiser(build_net(arch), name="tiny", channels=1, sigma_range=(0.0, 0.2), arch=arch)
    >>> D(torch.rand(2, 1, 37, 53), torch.tensor([0.05, 0.1])).shape
    torch.Size([2, 1, 37, 53])
    >>> D(torch.rand(1, 3, 8, 8), 0.1)
    Traceback (most recent call last):
    ...
    ValueError: tiny: expects 1 channel(s) but x has 3; use a grayscale image or a zoo model with 3 channel(s)
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        name: str,
        channels: int,
        sigma_range: tuple[float, float],
        blind: bool = False,
        lipschitz: float | None = None,
        arch: dict | None = None,
    ):
        super().__init__()
        self.net = net
        self.name = name
        self.channels = int(channels)
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))
        self.blind = bool(blind)
        self.lipschitz = None if lipschitz is None else float(lipschitz)
        self.arch = dict(arch or {})

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, self.name)
        s = as_sigma_tensor(sigma, x)
        check_sigma(s, self.sigma_range, self.name)
        p = next(self.net.parameters())
        xin = x.to(dtype=p.dtype, device=p.device)
        xp, h, w = _pad_to_multiple(xin, getattr(self.net, "multiple", 1))
        out = self.net(xp, s.to(dtype=p.dtype, device=p.device))[..., :h, :w]
        return out.to(dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, channels={self.channels}, sigma_range={self.sigma_range}, lipschitz={self.lipschitz}"


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    mse = float(torch.mean((x.double() - ref.double()) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)
