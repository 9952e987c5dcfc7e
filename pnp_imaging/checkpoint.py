"""Atomic checkpoints of a sampling run and bit-exact resume.

A checkpoint (one ``torch.save`` file, loaded with ``weights_only=True``) holds everything that
changes during :func:`~pnp_imaging.samplers.base.run_chain`: the sampler state, the iteration
and kept-sample counters, the generator state (``generator.get_state()``), the streaming
statistics, the traces so far, the slow-direction estimator, the kernel configuration and an
optional user config (e.g. the CLI's). It is written atomically — to ``<path>.tmp<pid>``, flushed
and fsync'ed, then ``os.replace``'d over ``path`` — every ``every`` iterations, at the end of the
run and on Ctrl-C, so a killed process always leaves the last complete checkpoint.

:func:`pnp_imaging.samplers.base.resume` continues a run (this module restores the run state,
:func:`load_run`; the driver runs it): with the same kernel (checked against the stored configuration)
it produces **bitwise identical** state, statistics and traces to an uninterrupted run with the
same seed (``tests/test_checkpoint.py``, including a process killed with SIGKILL). Callbacks
(``on_sample``/``on_step``) are not checkpointed: whatever they accumulate is the caller's.
Divergence never overwrites the checkpoint: the file on disk is the last good state.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pnp_imaging._checks import check_count
from pnp_imaging._io import atomic_torch_save
from pnp_imaging._io import plain as _plain
from pnp_imaging.traces import ChainRun, TraceConfig
from pnp_imaging.stats import PosteriorStats

__all__ = [
    "CheckpointConfig",
    "save_atomic",
    "save_run",
    "load_checkpoint",
    "load_run",
    "EXIT_INTERRUPTED",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 3
#: exit status a command-line tool should use for a run stopped by Ctrl-C (128 + SIGINT)
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class CheckpointConfig:
    """Where and how often to checkpoint. ``every``: int >= 1 iterations; ``config``: any
    ``weights_only``-loadable dict (str/int/float/bool/None/lists/dicts/tensors) stored as is."""

    path: str | Path
    every: int
    config: dict | None = field(default=None)

    def __post_init__(self):
        check_count("checkpoint.every", self.every, 1)
        object.__setattr__(self, "path", Path(self.path))


def save_atomic(path: str | Path, payload: dict) -> None:
    """``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace``."""
    atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint written by :func:`save_atomic` (``weights_only=True``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint: {path} does not exist; pass the path given to CheckpointConfig")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"checkpoint: {path} is not a pnp_imaging checkpoint of format {FORMAT_VERSION}")
    return payload


def save_run(cfg: CheckpointConfig, kernel, run: ChainRun, generator: torch.Generator) -> None:
    """Write the state of a :class:`ChainRun` (called by the driver)."""
    state = run.state
    payload = {
        "format": FORMAT_VERSION,
        "saved_at": time.time(),
        "kernel_config": _plain(kernel.config()),
        "user_config": cfg.config,
        "every": cfg.every,
        "run": {
            "n_steps": run.n_steps,
            "n_burnin": run.n_burnin,
            "thin": run.thin,
            "iteration": run.iteration,
            "n_kept": run.n_kept,
            "elapsed_s": run.elapsed_s,
        },
        "state_type": type(state).__name__,
        "state": {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in state._asdict().items()},
        "device": str(state.x.device),
        "generator_state": generator.get_state(),
        "stats_meta": {
            "shape": list(run.stats.shape),
            "probs": list(run.stats.probs),
            "scales": list(run.stats.scales),
            "quantiles": run.stats.quantile_method,
            "reservoir": run.stats.reservoir.capacity,
            "quantile_every": run.stats.quantile_every,
        },
        "stats": run.stats.state_dict(copy=False),  # written at once: no transient copy
        "trace_config": run.trace.to_dict(),
        "traces": run.traces[: run.iteration].clone(),
        "trace_names": list(run.names),
        "slow": None if run.slow_est is None else run.slow_est.state_dict(),
        "slow_fixed": None if run.slow_fixed is None else run.slow_fixed.detach().cpu(),
    }
    save_atomic(cfg.path, payload)


def _diff(a, b, prefix=""):
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return [] if same else [f"{prefix[:-1]}: checkpoint {a!r} vs kernel {b!r}"]


def _check_compatible(payload: dict, kernel, path) -> None:
    diffs = _diff(payload["kernel_config"], _plain(kernel.config()))
    if diffs:
        raise ValueError(
            f"checkpoint: {path} was written with a different sampler configuration ({'; '.join(diffs)}); "
            "rebuild the kernel with the saved parameters or start a new run"
        )
    if payload["state_type"] != kernel.state_type.__name__:
        raise ValueError(f"checkpoint: state type {payload['state_type']} does not match {kernel.state_type.__name__}")


def _restore_slow(run: ChainRun, payload: dict, device) -> None:
    if payload["slow"] is not None:
        s = payload["slow"]
        run.slow_est.load_state_dict({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in s.items()})
    if payload["slow_fixed"] is not None:
        run.slow_fixed = payload["slow_fixed"].to(device=device, dtype=run.state.x.dtype)


def load_run(path: str | Path, kernel, *, generator: torch.Generator, stats: PosteriorStats | None = None,
             n_steps: int | None = None) -> tuple[ChainRun, dict]:
    """Rebuild the :class:`ChainRun` saved at ``path`` for ``kernel`` (checked against the saved
    sampler configuration) and restore ``generator``'s state; returns ``(run, payload)``.

    ``stats``: a fresh :class:`PosteriorStats` to restore into (default: rebuilt from the saved
    shape, probs and scales). ``n_steps`` may extend the run (``>=`` the iterations done).
    """
    payload = load_checkpoint(path)
    _check_compatible(payload, kernel, path)
    meta = payload["run"]
    total = meta["n_steps"] if n_steps is None else check_count("n_steps", n_steps, 1)
    if total < meta["iteration"] or total < meta["n_burnin"]:
        raise ValueError(f"n_steps: {total} is below the {meta['iteration']} iterations already done")
    device = torch.device(payload["device"])
    state = kernel.state_type(**{k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                                 for k, v in payload["state"].items()})
    sm = payload["stats_meta"]
    if stats is None:
        stats = PosteriorStats(sm["shape"], probs=sm["probs"], scales=sm["scales"], device=device,
                               quantiles=sm["quantiles"], reservoir=sm["reservoir"],
                               quantile_every=sm["quantile_every"])
    stats.load_state_dict(payload["stats"])
    run = ChainRun(state, total, meta["n_burnin"], meta["thin"], stats, TraceConfig(**payload["trace_config"]))
    if list(run.names) != list(payload["trace_names"]):
        raise ValueError("checkpoint: trace layout differs from this version's; start a new run")
    run.iteration, run.n_kept, run.elapsed_s = meta["iteration"], meta["n_kept"], float(meta["elapsed_s"])
    run.traces[: run.iteration] = payload["traces"]
    _restore_slow(run, payload, device)
    generator.set_state(payload["generator_state"])
    return run, payload
