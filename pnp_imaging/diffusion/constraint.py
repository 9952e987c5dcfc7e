r"""The Metropolis box (Fishman, Klarner, Mathieu, Hutchinson, De Bortoli, NeurIPS 2023, arXiv
2307.05439, §3), reflection and clipping as rules ``rule(x, proposal, low, high)`` of a random walk
(``docs/algorithms.md §box``). The rules and their derivation live in
:mod:`pnp_imaging.samplers.box`; the Langevin samplers use them through ``box_rule``.
"""
from __future__ import annotations

from pnp_imaging.samplers.box import clip_box, metropolis_box, reflect_box

__all__ = ["metropolis_box", "reflect_box", "clip_box", "BOX_RULES"]

#: the three rules by name, ``rule(x, proposal, low, high) -> new``
BOX_RULES = {
    "metropolis": lambda x, y, lo, hi: metropolis_box(x, y, lo, hi)[0],
    "reflect": lambda x, y, lo, hi: reflect_box(y, lo, hi),
    "clip": lambda x, y, lo, hi: clip_box(y, lo, hi),
}
