"""Classical baseline: BM3D / CBM3D (``bm3d`` package) behind the zoo interface."""
from __future__ import annotations

import numpy as np
import torch

from denoisers_zoo.base import Denoiser, as_sigma_tensor
from denoisers_zoo.nets import check_input

__all__ = ["BM3DDenoiser"]


class BM3DDenoiser(Denoiser):
    """``D(x, sigma)`` = BM3D (gray, one call per image and channel) or CBM3D (``bm3d_rgb``, C = 3).

    Not differentiable (numpy, per-image loop); ``sigma`` (the [0,1]-scale std) is passed to BM3D
    as ``sigma_psd``. ``sigma = 0`` returns the input unchanged.
    """

    name = "bm3d"
    channels = None
    sigma_range = (0.0, 1.0)
    blind = False
    lipschitz = None

    def __init__(self, profile: str = "np", *, rgb: bool = True):
        super().__init__()
        try:
            import bm3d  # noqa: F401
        except ImportError as e:  # pragma: no cover
            raise ImportError("bm3d: package not installed; pip install 'bm3d>=4.0' (extra [bench])") from e
        self.profile = profile
        self.rgb = bool(rgb)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        import bm3d

        check_input(x, None, self.name)
        s = as_sigma_tensor(sigma, x)
        lo, hi = self.sigma_range
        if torch.any(s > hi):
            raise ValueError(f"{self.name}: sigma must be in [{lo}, {hi}] on the [0,1] scale, got max {float(s.max()):.4g}")
        out = torch.empty_like(x)
        xn = x.detach().to("cpu", torch.float64).numpy()
        for b in range(x.shape[0]):
            sb = float(s[b])
            if sb == 0.0:
                out[b] = x[b]
                continue
            if x.shape[1] == 3 and self.rgb:
                res = bm3d.bm3d_rgb(np.ascontiguousarray(xn[b].transpose(1, 2, 0)), sb, profile=self.profile)
                out[b] = torch.from_numpy(np.asarray(res).transpose(2, 0, 1).copy()).to(out)
            else:
                for c in range(x.shape[1]):
                    res = bm3d.bm3d(np.ascontiguousarray(xn[b, c]), sb, profile=self.profile)
                    out[b, c] = torch.from_numpy(np.asarray(res).reshape(xn.shape[-2:]).copy()).to(out)
        return out
