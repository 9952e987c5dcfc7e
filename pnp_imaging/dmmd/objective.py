r"""DMMD's training objective for the noise-conditional kernel (no generator, no adversarial game).

For a level t the kernel ``k_t = φ_θ(·, t)ᵀφ_θ(·, t)`` is trained to *separate* clean data P_0 from
the same data pushed through the forward diffusion, P_t (Galashov et al. 2025, abstract:
"trained on data distributions corrupted by increasing levels of noise"):

    max_θ  E_t [ MMD²_{k_t}(P_0, P_t) ] − λ · GP_t(θ).

Faithful: maximising MMD² between clean and forward-noised data at level t, a linear base kernel,
t drawn over the whole noise range. **Our choices** (the paper's regulariser and constants could not
be read): the unbiased (U-statistic) MMD² on independent clean and noised batches (the biased one
would also reward feature variance); t ~ U(t_min, 1), ``levels`` levels per step with ``batch``
points each; the regulariser is the WGAN-GP / MMD-GAN gradient penalty of Gulrajani et al. (2017)
and Bińkowski et al. (2018, "Demystifying MMD GANs") on the witness
``f_t(x) = ⟨m_{P_t} − m_{P_0}, φ_θ(x, t)⟩`` at random interpolates ``x̃ = u x_0 + (1 − u) x_t``,
``GP_t = E (‖∇_x̃ f_t(x̃)‖ − 1)²``. With a linear kernel MMD² is unbounded in the feature scale; the
penalty fixes that scale (witness slope ≈ 1 between the two distributions), which also makes the
flow's step size a distance on the image scale.
"""
from __future__ import annotations

import torch

from pnp_imaging.dmmd.mmd import linear_kernel, mmd2
from pnp_imaging.dmmd.noising import forward_noise

__all__ = ["dmmd_loss"]


def _draw_batches(data: torch.Tensor, levels: torch.Tensor, batch: int, generator: torch.Generator):
    """Independent clean and noised batches ``[L·batch, D]`` (noised ones at ``levels`` repeated per point)."""
    n = len(data)
    clean = data[torch.randint(n, (len(levels) * batch,), generator=generator)]
    source = data[torch.randint(n, (len(levels) * batch,), generator=generator)]
    t = levels.repeat_interleave(batch)
    return clean, forward_noise(source, t, generator), t


def _gradient_penalty(net, clean, noised, t, mean_gap, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``E (‖∇_x̃ f_t(x̃)‖ − 1)²`` at interpolates (module docstring); ``mean_gap`` ``[L, F]`` per level."""
    u = torch.rand(len(clean), 1, generator=generator)
    mixed = (u * clean + (1 - u) * noised).detach().requires_grad_(True)
    witness = (net(mixed, t) * mean_gap.repeat_interleave(batch, dim=0)).sum()
    (grad,) = torch.autograd.grad(witness, mixed, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def dmmd_loss(net, data: torch.Tensor, *, levels: int, batch: int, t_min: float, gp_weight: float,
              generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """The minimised loss ``−mean_levels MMD²_u + λ GP`` for one step, and its parts as floats
    (``mmd2``, ``gp``). ``data`` ``[n, D]`` on the [−1, 1] scale."""
    t_levels = t_min + (1 - t_min) * torch.rand(levels, generator=generator)
    clean, noised, t = _draw_batches(data, t_levels, batch, generator)
    f_clean = net(clean, t).reshape(levels, batch, -1)
    f_noised = net(noised, t).reshape(levels, batch, -1)
    mmd = torch.stack([mmd2(f_clean[k], f_noised[k], linear_kernel, unbiased=True) for k in range(levels)]).mean()
    gap = f_noised.mean(1) - f_clean.mean(1)
    gp = _gradient_penalty(net, clean, noised, t, gap, batch, generator) if gp_weight > 0 else torch.zeros(())
    loss = -mmd + gp_weight * gp
    return loss, {"mmd2": float(mmd.detach()), "gp": float(gp.detach())}
