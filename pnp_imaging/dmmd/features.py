r"""The noise-conditional feature network φ_θ(x, t) of DMMD's kernel.

DMMD's kernel at noise level t is ``k_t(x, x') = K(φ_θ(x, t), φ_θ(x', t))`` (Galashov et al. 2025,
as described in its abstract and OpenReview discussion; one network for all levels, conditioned
on t). With the **linear base kernel** ``K(u, v) = uᵀv`` that the paper proposes for scalability
the witness function is
``f_t(z) = ⟨m_Q(t) − m_P(t), φ_θ(z, t)⟩`` (mean features ``m``), so the data's mean feature per
level can be computed once and cached ("approximate sampling", ``flow.py``).

**Our choices** (the paper trains convolutional networks on 28×28 / 32×32 / 64×64 images; its
architecture for them could not be read): an MLP on the flattened 8×8 image concatenated with a
sinusoidal embedding of t (Vaswani et al. 2017 / DDPM style, 64 frequencies log-spaced in
[1, 1000] applied to 1000·t), SiLU activations, ``depth`` hidden layers of ``width`` units,
``features`` outputs.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["FeatureNet", "time_embedding", "init_parameters"]


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of levels ``t`` ``[B]`` in [0, 1] (``dim`` even): sin and
    cos of ``1000·t·ω_k``, ω_k = 1000^(−k/(dim/2)), k = 0 … dim/2 − 1 (DDPM's embedding of step 1000·t)."""
    half = dim // 2
    t = t if t.is_floating_point() else t.float()
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=t.dtype, device=t.device) / half)
    angles = 1000.0 * t.reshape(-1, 1) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class FeatureNet(nn.Module):
    """φ_θ(x, t): ``x`` ``[B, dim]`` (flattened images on the [−1, 1] scale), ``t`` scalar or ``[B]``
    → features ``[B, features]``. ``arch`` dict keys: ``dim``, ``width``, ``depth``, ``features``,
    ``t_dim`` (the manifest stores it as the model's ``arch``)."""

    def __init__(self, *, dim: int, width: int = 256, depth: int = 3, features: int = 128, t_dim: int = 64):
        super().__init__()
        if dim < 1 or width < 1 or depth < 1 or features < 1 or t_dim < 2 or t_dim % 2:
            raise ValueError(f"FeatureNet: dim, width, depth, features must be >= 1 and t_dim even >= 2 "
                             f"(got dim={dim}, width={width}, depth={depth}, features={features}, t_dim={t_dim})")
        self.arch = {"dim": dim, "width": width, "depth": depth, "features": features, "t_dim": t_dim}
        self.t_dim = t_dim
        self.t_mlp = nn.Sequential(nn.Linear(t_dim, width), nn.SiLU())
        self.inp = nn.Linear(dim, width)
        layers: list[nn.Module] = []
        for _ in range(depth - 1):
            layers += [nn.SiLU(), nn.Linear(width, width)]
        self.body = nn.Sequential(*layers, nn.SiLU(), nn.Linear(width, features))

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        return self.body(self.inp(x) + self.t_mlp(time_embedding(t, self.t_dim)))


@torch.no_grad()
def init_parameters(net: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every ``nn.Linear`` of ``net`` from ``generator``: weights and biases uniform in
    ``±1/√fan_in`` (the bound of PyTorch's default initialisation), so training is seeded without
    touching the global random state."""
    for layer in net.modules():
        if isinstance(layer, nn.Linear):
            bound = 1.0 / math.sqrt(layer.in_features)
            for p in (layer.weight, layer.bias):
                if p is not None:
                    p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)

