"""One rank of the small distributed sampling run used by tests/test_distributed.py.

``python -m torch.distributed.run --nproc_per_node 2 tests/dist_worker.py OUT [--die-at N]
[--steps N] [--resume]``:
8x8 Gaussian denoising problem, 4 global chains of pnp-ula, per-chain streams with seed 5;
rank 0 writes the merged MMSE/std/traces to ``OUT/merged.npz``. ``--die-at N``: rank 1 exits
abruptly at its N-th kept draw (a rank that dies); rank 0 must then stop with one line naming it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from denoisers_zoo.exact import GaussianDenoiser
from operators.identity import Identity
from operators.noise import GaussianNoise
from pnp_imaging import distributed, sample
from pnp_imaging.chain_rng import ChainGenerators
from pnp_imaging.priors import ScorePrior
from pnp_imaging.problem import Problem

CHAINS, SEED = 4, 5
RUN = dict(n_steps=80, n_burnin=30, thin=1, init_spread=0.1, checkpoint_every=10)


def problem_and_prior(hw: int = 8, sigma: float = 0.1):
    g = torch.Generator().manual_seed(0)
    x = torch.full((1, 1, hw, hw), 0.5, dtype=torch.float64)
    y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    problem = Problem(operator=Identity(), noise=GaussianNoise(sigma), y=y, x_true=x)
    return problem, ScorePrior(GaussianDenoiser.isotropic(0.5, 0.04, (1, hw, hw)), eps=0.01)


def run(ctx, out: Path, die_at: int | None, n_steps: int, resume: bool):
    """Sample this rank's chains; rank 0 saves the merged estimates."""
    problem, prior = problem_and_prior()
    ids = ctx.chain_ids(CHAINS)

    def die(index, state):
        if die_at is not None and ctx.rank == 1 and index + 1 == die_at:
            os._exit(3)

    post = sample(problem, prior, "pnp-ula", generator=ChainGenerators(SEED, ids), chains=len(ids),
                  checkpoint=out / f"checkpoint.rank{ctx.rank}.pt", on_sample=die, distributed=ctx,
                  resume=resume, **{**RUN, "n_steps": n_steps})
    if ctx.is_main:
        np.savez(out / "merged.npz", mmse=post.mmse.numpy(), std=post.std.numpy(), lower=post.lower.numpy(),
                 **{f"trace_{k}": v for k, v in post.traces.items()})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--die-at", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--steps", type=int, default=RUN["n_steps"])
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ctx = distributed.init(args.timeout)
    try:
        run(ctx, Path(args.out), args.die_at, args.steps, args.resume)
    except distributed.RankFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
