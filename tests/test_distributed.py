"""Chains across processes: per-chain streams make a chain's draws independent of how the chains
are split, the merge of per-rank statistics is exact, and a 2-rank gloo run of the CLI gives the
estimates of one process running the same chains."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from denoisers_zoo.exact import GaussianDenoiser
from operators.identity import Identity
from operators.noise import GaussianNoise
from pnp_imaging.chain_rng import ChainGenerators, chain_seed
from pnp_imaging.distributed import concat_stats, merge_results, split_chains
from pnp_imaging.priors import ScorePrior
from pnp_imaging.problem import Problem
from pnp_imaging.samplers import build_kernel, dispersed_init, run_chain
from pnp_imaging.stats import PosteriorStats

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _gaussian(hw=8, sigma=0.1):
    g = torch.Generator().manual_seed(0)
    x = torch.full((1, 1, hw, hw), 0.5, dtype=torch.float64)
    y = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    problem = Problem(operator=Identity(), noise=GaussianNoise(sigma), y=y, x_true=x)
    return problem, ScorePrior(GaussianDenoiser.isotropic(0.5, 0.04, (1, hw, hw)), eps=0.01)


def _chains(kernel, problem, ids, n_steps=60, n_burnin=20):
    """Run global chains ``ids`` with their own streams (seed 5), as one batch."""
    gen = ChainGenerators(5, ids)
    x0 = dispersed_init(problem.initial_guess(), len(ids), spread=0.1, generator=gen)
    stats = PosteriorStats(tuple(x0.shape), quantiles="reservoir", reservoir=8, quantile_every=1)
    return run_chain(kernel, kernel.init(x0), n_steps=n_steps, n_burnin=n_burnin, thin=1, generator=gen, stats=stats)


def test_split_chains_and_seeds():
    assert split_chains(5, 2) == [range(0, 3), range(3, 5)]
    assert split_chains(4, 4) == [range(i, i + 1) for i in range(4)]
    with pytest.raises(ValueError, match="at least one chain per rank"):
        split_chains(1, 2)
    seeds = {chain_seed(s, c) for s in range(3) for c in range(50)}
    assert len(seeds) == 150 and all(0 <= v < 2**63 for v in seeds)


@pytest.mark.parametrize("name", ["pnp-ula", "skrock", "pnp-kinetic-exp"])
def test_split_runs_merge_to_the_one_batch_run(name):
    """Chains 0..3 in one batch == chains {0, 1} + {2, 3} run apart and merged. The Gaussian
    denoiser is linear and acts per chain, so the draws are the same to float64 round-off; the
    merge itself is a concatenation, so the pooled moments agree to the same round-off."""
    problem, prior = _gaussian()
    kernel = build_kernel(name, problem, prior)
    whole = _chains(kernel, problem, [0, 1, 2, 3])
    merged = merge_results([_chains(kernel, problem, [0, 1]), _chains(kernel, problem, [2, 3])])
    assert merged.stats.shape == whole.stats.shape
    for a, b in ((merged.stats.mmse(), whole.stats.mmse()), (merged.stats.std(), whole.stats.std()),
                 (merged.state.x, whole.state.x), (merged.stats.mcse_mean(), whole.stats.mcse_mean())):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for lo_a, lo_b in zip(merged.stats.credible_interval(), whole.stats.credible_interval()):
        torch.testing.assert_close(lo_a, lo_b, rtol=1e-12, atol=1e-14)
    for key in whole.traces:
        if key != "slow":  # the slow direction pools chains: per-process it differs (pooled across ranks in a run)
            np.testing.assert_allclose(merged.traces[key], whole.traces[key], rtol=1e-12, atol=1e-12)
    # and it is not trivially equal: a different chain split of the seeds gives other draws
    other = _chains(kernel, problem, [4, 5, 6, 7])
    assert not torch.allclose(other.stats.mmse(), whole.stats.mmse(), rtol=0, atol=1e-6)


def test_concat_refuses_p2_markers():
    stats = PosteriorStats((2, 1, 4, 4))  # P² by default
    with pytest.raises(ValueError, match="P² quantile markers do not merge"):
        concat_stats([stats, stats])


# --------------------------------------------------------------------------------------------
# real processes: 2 local gloo ranks
# --------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _torchrun(*args, timeout=240) -> subprocess.CompletedProcess:
    cmd = [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def _reference(n_steps=None):
    """The 4 chains in one process, one batch, same per-chain seeds."""
    sys.path.insert(0, str(ROOT / "tests"))
    import dist_worker as w

    problem, prior = w.problem_and_prior()
    run = {**w.RUN, "n_steps": n_steps or w.RUN["n_steps"]}
    run.pop("checkpoint_every")
    from pnp_imaging import sample

    return sample(problem, prior, "pnp-ula", generator=ChainGenerators(w.SEED, range(w.CHAINS)), chains=w.CHAINS,
                  **run)


def _assert_matches_reference(merged: Path, ref) -> None:
    """Float64 round-off only: the Gaussian denoiser is linear and per chain, and the merge is a
    concatenation; 1e-12 relative leaves ~4 orders of magnitude above the observed 1e-16."""
    with np.load(merged) as m:
        np.testing.assert_allclose(m["mmse"], ref.mmse.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(m["std"], ref.std.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(m["lower"], ref.lower.numpy(), rtol=1e-12, atol=1e-14)
        for key, trace in ref.traces.items():  # incl. "slow": its direction pools all ranks' chains
            np.testing.assert_allclose(m[f"trace_{key}"], trace, rtol=1e-9, atol=1e-12, err_msg=key)


def test_two_gloo_ranks_equal_one_process(tmp_path):
    p = _torchrun("tests/dist_worker.py", tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "checkpoint.rank0.pt").is_file() and (tmp_path / "checkpoint.rank1.pt").is_file()
    _assert_matches_reference(tmp_path / "merged.npz", _reference())


def test_a_dead_rank_stops_the_run_with_one_line_naming_it(tmp_path):
    """Rank 1 exits at its 15th kept draw; rank 0 stops at the next checkpoint barrier (5 s timeout)."""
    port, procs = _free_port(), []
    for rank in (0, 1):
        env = {**_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCH_CPP_LOG_LEVEL": "FATAL"}
        procs.append(subprocess.Popen([PY, "tests/dist_worker.py", str(tmp_path), "--die-at", "15", "--timeout", "5"],
                                      cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert procs[1].returncode == 3
    assert procs[0].returncode == 1, errs[0][-2000:]
    line = [ln for ln in errs[0].splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "rank 1 did not reach the checkpoint barrier" in line[0], errs[0][-2000:]
    assert not (tmp_path / "merged.npz").exists()


@pytest.mark.slow
def test_two_rank_resume_continues_each_rank(tmp_path):
    """Stop both ranks at 50 steps (per-rank checkpoints), resume to 80: the 80-step result."""
    p = _torchrun("tests/dist_worker.py", tmp_path, "--steps", 50)
    assert p.returncode == 0, p.stderr[-2000:]
    p = _torchrun("tests/dist_worker.py", tmp_path, "--steps", 80, "--resume")
    assert p.returncode == 0, p.stderr[-2000:]
    _assert_matches_reference(tmp_path / "merged.npz", _reference(80))


def _tiny_cli_config(tmp_path: Path) -> Path:
    from pnp_imaging.imageio import read_image, write_image

    write_image(tmp_path / "crop.png", read_image(ROOT / "data" / "cameraman.png")[..., 100:116, 100:116])
    cfg = {"seed": 1, "image": str(tmp_path / "crop.png"), "dtype": "float64", "device": "cpu",
           "operator": {"type": "blur", "kernel": "uniform", "size": 5, "boundary": "circular"},
           "noise": {"type": "gaussian", "sigma": 0.02}, "prior": {"denoiser": "drunet_gray", "eps": (10 / 255) ** 2},
           "map": {"n_steps": 5}, "checkpoint_every": 4,
           "sampler": {"type": "skrock", "n_steps": 12, "n_burnin": 2, "thin": 1, "chains": 3, "stages": 3}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "tiny.yaml"


@pytest.mark.slow
def test_cli_two_ranks_equal_cli_one_process(tmp_path):
    """``torchrun -m pnp_imaging run --distributed`` (2 ranks, 3 chains: 2 + 1) against the same
    command in one process (a world of one, same per-chain seeds), DRUNet prior in float64. The
    network sees batches of 2 and 1 instead of 3, which changes its float64 round-off only
    (measured: 6e-17 on the MMSE), hence 1e-10."""
    from pnp_imaging.cli import main

    cfg = _tiny_cli_config(tmp_path)
    assert main(["run", str(cfg), "--distributed", "--out", str(tmp_path / "one"), "--quiet"]) == 0
    p = _torchrun("-m", "pnp_imaging", "run", cfg, "--distributed", "--out", tmp_path / "two", "--quiet")
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("done in") == 1  # rank 0 reports
    with np.load(tmp_path / "one" / "estimates.npz") as a, np.load(tmp_path / "two" / "estimates.npz") as b:
        for key in ("mmse", "std", "lower", "upper", "map"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-12, err_msg=key)
    summary = yaml.safe_load((tmp_path / "two" / "summary.json").read_text())
    assert summary["chains"] == 3 and summary["distributed"]["chains_per_rank"] == [2, 1]


@pytest.mark.parametrize("name,options", [("diffpir", {"diffusion_steps": 10}),
                                          ("dps", {"diffusion_steps": 10, "scale": 0.3}), ("pnp-dm", {})])
def test_diffusion_samplers_take_the_same_path(name, options):
    """Independent-draw families: each step's fresh sample draws per chain too, so a split run
    merges to the one-batch run (closed-form Gaussian prior; 4 draws per chain)."""
    shape = (1, 1, 8, 8)
    op_problem, _ = _gaussian()
    prior = GaussianDenoiser.isotropic(torch.full(shape[1:], 0.5, dtype=torch.float64), 0.05, shape[1:])
    kernel = build_kernel(name, op_problem, prior, **options)
    whole = _chains(kernel, op_problem, [0, 1, 2], n_steps=4, n_burnin=0)
    merged = merge_results([_chains(kernel, op_problem, [0], n_steps=4, n_burnin=0),
                            _chains(kernel, op_problem, [1, 2], n_steps=4, n_burnin=0)])
    torch.testing.assert_close(merged.stats.mmse(), whole.stats.mmse(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(merged.stats.std(), whole.stats.std(), rtol=1e-12, atol=1e-14)


def test_resume_refuses_the_other_kind_of_checkpoint(tmp_path):
    """One line naming the fix, before any work: a distributed folder needs --distributed, a plain
    one must not have it (the CLI prints ConfigError's line and exits 2)."""
    from pnp_imaging.api import _open_folder
    from pnp_imaging.config import ConfigError
    from pnp_imaging.distributed import DistContext

    for made, ctx, fix in (("checkpoint.rank0.pt", None, "resume it with --distributed"),
                           ("checkpoint.pt", DistContext(), "without --distributed")):
        folder = tmp_path / made / "run.partial"
        folder.mkdir(parents=True)
        (folder / made).write_bytes(b"")
        with pytest.raises(ConfigError) as exc:
            _open_folder(folder.parent / "run", True, ctx)
        assert fix in str(exc.value) and "\n" not in str(exc.value)
        assert (folder / made).is_file()  # nothing touched


def test_sample_with_a_context_needs_per_chain_streams():
    """One generator per rank would give every rank the same noise: refused in one line."""
    from pnp_imaging import sample
    from pnp_imaging.distributed import DistContext

    problem, prior = _gaussian()
    with pytest.raises(ValueError, match="per-chain streams"):
        sample(problem, prior, "pnp-ula", generator=torch.Generator().manual_seed(0), n_steps=10, chains=2,
               distributed=DistContext())
