"""Per-chain random streams: one ``torch.Generator`` per chain, seeded from the run's seed and
the chain's **global** index (``docs/algorithms.md §distributed``).

With one generator for the whole batch, chain ``c``'s noise depends on how many chains share
the batch; with :class:`ChainGenerators` it depends only on ``(seed, c)``. So chains 0..7 run as
one batch of 8 in one process, or as 0..3 and 4..7 on two ranks
(:mod:`pnp_imaging.distributed`), draw the same noise and give the same statistics.

The seed rule: chain ``c`` of a run with seed ``s`` uses
``torch.Generator().manual_seed(chain_seed(s, c))`` where :func:`chain_seed` hashes ``(s, c)``
with numpy's ``SeedSequence`` (O'Neill's PCG seeding hash), so nearby seeds and indices give
unrelated streams. The samplers draw through :func:`randn_chains`, which with a plain
``torch.Generator`` is exactly the previous ``torch.randn`` call (single-process runs are
unchanged, bit for bit).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["chain_seed", "ChainGenerators", "randn_chains"]


def chain_seed(seed: int, chain: int) -> int:
    """The 63-bit seed of global chain ``chain`` in a run seeded with ``seed`` (both ints >= 0)."""
    if int(seed) < 0 or int(chain) < 0:
        raise ValueError(f"chain_seed: seed and chain index must be >= 0, got seed={seed}, chain={chain}")
    words = np.random.SeedSequence([int(seed), int(chain)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class ChainGenerators:
    """One generator per chain: chain ``k`` of the batch is global chain ``chain_ids[k]``.

    ``get_state``/``set_state`` hold all streams (a ``[B, n]`` uint8 tensor), so checkpoints and
    resume work as with one ``torch.Generator``.
    """

    def __init__(self, seed: int, chain_ids: Sequence[int], device: str | torch.device = "cpu"):
        self.seed = int(seed)
        self.chain_ids = tuple(int(c) for c in chain_ids)
        if not self.chain_ids:
            raise ValueError("ChainGenerators: needs at least one chain index")
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(chain_seed(self.seed, c))
                           for c in self.chain_ids]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape: Sequence[int], *, dtype: torch.dtype, device) -> torch.Tensor:
        """``N(0, I)`` of ``shape`` whose leading (chain) dimension is this batch's: row ``k``
        from chain ``k``'s own stream."""
        shape = tuple(int(s) for s in shape)
        if not shape or shape[0] != len(self):
            raise ValueError(f"per-chain generators: a draw of shape {shape} has no chain dimension of size "
                             f"{len(self)}; this sampler cannot run with per-chain seeds (use one process)")
        return torch.cat([torch.randn((1, *shape[1:]), generator=g, dtype=dtype, device=device)
                          for g in self.generators])

    def get_state(self) -> torch.Tensor:
        return torch.stack([g.get_state() for g in self.generators])

    def set_state(self, state: torch.Tensor) -> None:
        if state.ndim != 2 or state.shape[0] != len(self):
            raise ValueError(f"per-chain generators: saved state holds {state.shape[0] if state.ndim == 2 else 1} "
                             f"streams, this run has {len(self)} chains; resume with the same chains and ranks")
        for g, s in zip(self.generators, state):
            g.set_state(s.clone())


def randn_chains(shape: Sequence[int], generator, *, dtype: torch.dtype, device) -> torch.Tensor:
    """``torch.randn(shape, generator=generator, ...)``, or per-chain rows with :class:`ChainGenerators`."""
    if isinstance(generator, ChainGenerators):
        return generator.randn(shape, dtype=dtype, device=device)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)
