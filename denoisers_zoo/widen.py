"""Function-preserving widening of a trained network (start a wider model from a narrower one).

``widen_state_into(net, old_state)`` copies every tensor of ``old_state`` into the leading slice
of the same-named, larger tensor of ``net`` and zeroes the weights through which an *old* output
channel would read a *new* input channel. The new channels keep ``net``'s own (random) initial
weights, so they compute features from the start, but nothing old reads them yet: the widened
network computes exactly the old function, and the zeroed weights receive non-zero gradients
from the first step (the new features are non-zero), so training can bring them in.

This is the "new units with zero outgoing weights" variant of Net2WiderNet (Chen, Goodfellow &
Shlens, *Net2Net*, ICLR 2016). Our choice: Net2Net's own widening copies existing units and splits
their outgoing weights; with Adam's per-coordinate step the copies stay nearly identical unless
noise is added, which changes the function. Zero outgoing weights keep it exact and need no
symmetry breaking. It is valid for networks whose channel spaces are joined by additions (skip
connections, residual blocks) as long as each channel space grows by appending channels, which
is what building the same architecture with larger widths does (e.g. DRUNet's ``nc``).

Convention: ``nn.Conv*`` weights are ``[out, in, ...]``; ``nn.ConvTranspose*`` weights are
``[in, out, ...]``; biases and other 1-D tensors are ``[out]``.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["widen_state_into"]

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _transposed_weights(net: nn.Module) -> set[str]:
    return {f"{name}.weight" if name else "weight" for name, m in net.named_modules() if isinstance(m, _TRANSPOSED)}


def widen_state_into(net: nn.Module, old_state: dict[str, torch.Tensor]) -> None:
    """Load ``old_state`` (a narrower copy of ``net``'s architecture) into ``net`` in place, so that
    ``net`` computes the old function exactly (see the module docstring).

    Raises a one-line ValueError when the key sets differ or a tensor of ``old_state`` does not
    fit in the leading slice of ``net``'s tensor (different rank, or larger in some dimension).
    """
    new_state = net.state_dict()
    missing, extra = sorted(set(new_state) - set(old_state)), sorted(set(old_state) - set(new_state))
    if missing or extra:
        raise ValueError(
            f"widen: the narrow weights do not match the architecture (missing {missing[:3]}, unexpected {extra[:3]}); "
            "init_from must point to weights of the same architecture type with smaller widths"
        )
    transposed = _transposed_weights(net)
    widened = {}
    for key, new in new_state.items():
        old = old_state[key]
        if old.ndim != new.ndim or any(o > n for o, n in zip(old.shape, new.shape)):
            raise ValueError(
                f"widen: {key} has shape {tuple(old.shape)} in the narrow weights, which does not fit in "
                f"{tuple(new.shape)}; every width of the new arch must be >= the old one"
            )
        w = new.detach().clone()
        if w.ndim >= 2:
            out_dim, in_dim = (1, 0) if key in transposed else (0, 1)
            old_out, old_in = old.shape[out_dim], old.shape[in_dim]
            # old outputs reading new inputs: zero (exact function), everything else new stays random
            reading_new = [slice(None)] * w.ndim
            reading_new[out_dim], reading_new[in_dim] = slice(0, old_out), slice(old_in, None)
            w[tuple(reading_new)] = 0
        w[tuple(slice(0, s) for s in old.shape)] = old.to(w.dtype)
        widened[key] = w
    net.load_state_dict(widened)
