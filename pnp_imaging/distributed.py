"""Chains across processes and machines with ``torch.distributed`` (``docs/algorithms.md §distributed``).

Launch with ``torchrun --nproc_per_node N -m pnp_imaging run CONFIG --distributed`` (or
``python -m torch.distributed.run``): :func:`init` reads torchrun's ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` and joins the process group (gloo; chains and
statistics live on the CPU). Without those variables ``--distributed`` is a world of one process
running the same per-chain streams: the single-process reference of any distributed run.

- Chains: global chains ``0..chains-1`` are split in contiguous blocks (:func:`split_chains`);
  global chain ``c`` draws from its own stream seeded by ``(seed, c)``
  (:mod:`pnp_imaging.chain_rng`), so results do not depend on the number of ranks.
- Merge: every statistic the driver keeps is per chain (Welford moments, reservoir draws and
  batch means, multi-scale moments, traces), so merging is concatenation along the chain
  dimension (:func:`concat_stats`, :func:`merge_results`); the pooled MMSE/variance are then
  computed from the concatenated float64 accumulators by the same code as in one process. The P²
  quantile markers do not merge, so these runs use the reservoir's exact quantiles.
- Failures: at every checkpoint the ranks meet at a monitored barrier with a timeout; a rank that
  died or hangs makes the others stop with :class:`RankFailure`, one line naming it.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import re
import time
from dataclasses import dataclass

import torch

__all__ = ["DistContext", "RankFailure", "init", "shutdown", "split_chains", "active", "sum_across_ranks",
           "concat_stats", "merge_results", "gather_result", "ENV_VARS"]

#: torchrun's variables; ``RANK`` and ``WORLD_SIZE`` decide whether a process group is joined
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_ACTIVE: "DistContext | None" = None


class RankFailure(RuntimeError):
    """A rank died, hung past the timeout, or could not be reached."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: ``rank`` of ``world_size``; ``timeout_s`` bounds every wait."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = 300.0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def chain_ids(self, chains: int) -> range:
        return split_chains(chains, self.world_size)[self.rank]

    def barrier(self, where: str) -> None:
        """All ranks meet here (``torch.distributed.monitored_barrier``); :class:`RankFailure` names
        the rank that does not arrive within ``timeout_s``."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        try:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=self.timeout_s), wait_all_ranks=True)
        except RuntimeError as exc:
            raise RankFailure(_failure_line(exc, where, self)) from None


def _failure_line(exc: Exception, where: str, ctx: DistContext) -> str:
    """One line naming the missing rank(s) from gloo's message (rank 0 sees them; the others only
    see that rank 0 is gone)."""
    text = str(exc)
    ranks = sorted({int(r) for r in re.findall(r"[Rr]anks?:? \[?(\d+(?:, *\d+)*)", text) for r in r.split(",")})
    ranks = [r for r in ranks if r != ctx.rank]
    who = f"rank {', '.join(map(str, ranks))}" if ranks else ("rank 0" if ctx.rank else "a rank")
    return (f"distributed: {who} did not reach the {where} within {ctx.timeout_s:g} s (died or hangs); "
            f"this rank ({ctx.rank}) stops. Resume with --resume once every rank can run")


def split_chains(chains: int, world_size: int) -> list[range]:
    """Global chain indices per rank: contiguous blocks, sizes differing by at most one."""
    if chains < world_size:
        raise ValueError(f"sampler.chains: {chains} chains for {world_size} ranks; use at least one chain per rank")
    base, extra = divmod(chains, world_size)
    starts = [r * base + min(r, extra) for r in range(world_size + 1)]
    return [range(starts[r], starts[r + 1]) for r in range(world_size)]


def _env_world() -> tuple[int, int, int] | None:
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise ValueError("--distributed: RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun)") from None


def init(timeout_s: float = 300.0) -> DistContext:
    """Join the process group described by torchrun's environment (a world of one without it)."""
    global _ACTIVE
    if not timeout_s > 0:
        raise ValueError(f"--dist-timeout: must be > 0 seconds, got {timeout_s}")
    world = _env_world()
    if world is None or world[1] == 1:
        _ACTIVE = DistContext(timeout_s=float(timeout_s))
        return _ACTIVE
    rank, size, local = world
    if not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT"):
        raise ValueError("--distributed: MASTER_ADDR and MASTER_PORT are not set; launch with torchrun")
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    _ACTIVE = DistContext(rank, size, local, float(timeout_s), "gloo")
    return _ACTIVE


def shutdown() -> None:
    """Leave the process group (if :func:`init` joined one)."""
    global _ACTIVE
    if _ACTIVE is not None and _ACTIVE.world_size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _ACTIVE = None


def active() -> DistContext | None:
    return _ACTIVE


def sum_across_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks of the active run (itself in one process); float64."""
    if _ACTIVE is None or _ACTIVE.world_size == 1:
        return t
    import torch.distributed as dist

    out = t.detach().to("cpu", torch.float64).clone()
    dist.all_reduce(out)
    return out.to(t.device)


# --------------------------------------------------------------------------------------------
# merging per-chain results (pure functions; the collective is only a gather)
# --------------------------------------------------------------------------------------------
def _cat(parts: list, dim: int):
    return None if parts[0] is None else torch.cat([p.cpu() for p in parts], dim=dim)


def _same(parts: list, key: str):
    values = {p[key] for p in parts}
    if len(values) != 1:
        raise ValueError(f"merge: ranks disagree on {key} ({sorted(values)}); they must run in lockstep")
    return values.pop()


def _concat_state(parts: list[dict]) -> dict:
    """One :class:`~pnp_imaging.stats.PosteriorStats` state from per-rank ones (chain dim 0, the
    reservoir's slots first)."""
    moments = lambda ms: {"count": _same(ms, "count"), "mean": _cat([m["mean"] for m in ms], 0),  # noqa: E731
                          "m2": _cat([m["m2"] for m in ms], 0)}
    res = [p["reservoir"] for p in parts]
    reservoir = {k: _same(res, k) for k in ("stride", "n_slots", "in_slot", "capacity")}
    reservoir.update(draws=_cat([r["draws"] for r in res], 1), means=_cat([r["means"] for r in res], 1),
                     acc=_cat([r["acc"] for r in res], 0))
    multi = None
    if parts[0]["multiscale"] is not None:
        multi = {k: moments([p["multiscale"][k] for p in parts]) for k in parts[0]["multiscale"]}
    return {"moments": moments([p["moments"] for p in parts]), "reservoir": reservoir, "quantiles": None,
            "multiscale": multi}


def concat_stats(stats_list: list):
    """The statistics of all chains from per-rank :class:`~pnp_imaging.stats.PosteriorStats`
    (same draws per chain, chains in rank order). Exact: a concatenation of per-chain float64
    accumulators; refuses P² quantile markers, which do not merge."""
    from pnp_imaging.stats import PosteriorStats

    first = stats_list[0]
    if any(s.quantile_estimator is not None for s in stats_list):
        raise ValueError("merge: P² quantile markers do not merge; build the statistics with quantiles='reservoir'")
    chains = sum(s.shape[0] for s in stats_list)
    out = PosteriorStats((chains, *first.shape[1:]), probs=first.probs, scales=first.scales,
                         quantiles=first.quantile_method, reservoir=first.reservoir.capacity,
                         quantile_every=first.quantile_every)
    out.load_state_dict(_concat_state([s.state_dict() for s in stats_list]))
    return out


def merge_results(results: list):
    """One :class:`~pnp_imaging.samplers.base.ChainResult` for all chains from per-rank ones:
    statistics (:func:`concat_stats`), traces and the final chain states ``x`` concatenated in
    rank order; counters and timings are rank 0's (they agree in a lockstep run)."""
    first = results[0]
    for key in ("n_done", "n_kept", "n_burnin", "thin"):
        _same([{key: getattr(r, key)} for r in results], key)
    traces = {k: torch.cat([torch.from_numpy(r.traces[k]) for r in results]).numpy() for k in first.traces}
    x = torch.cat([r.state.x.cpu() for r in results]).to(first.state.x.device)
    state = first.state._replace(x=x) if hasattr(first.state, "_replace") else first.state
    return dataclasses.replace(first, state=state, stats=concat_stats([r.stats for r in results]), traces=traces)


def _payload(result) -> dict:
    """What a rank sends for the merge: its statistics' state, traces and final chains."""
    s = result.stats
    return {"stats": s.state_dict(), "shape": list(s.shape), "traces": result.traces, "x": result.state.x.cpu(),
            "n": {k: getattr(result, k) for k in ("n_done", "n_kept", "n_burnin", "thin")}}


def _rebuild(result, payload: dict):
    """A rank's ChainResult view rebuilt on rank 0 from its :func:`_payload`."""
    from pnp_imaging.stats import PosteriorStats

    s = result.stats
    stats = PosteriorStats(payload["shape"], probs=s.probs, scales=s.scales, quantiles=s.quantile_method,
                           reservoir=s.reservoir.capacity, quantile_every=s.quantile_every)
    stats.load_state_dict(payload["stats"])
    return dataclasses.replace(result, stats=stats, traces=payload["traces"],
                               state=result.state._replace(x=payload["x"].to(result.state.x.device)), **payload["n"])


def gather_result(result, ctx: DistContext):
    """Rank 0: the merged ChainResult of every rank (``timings["merge_s"]`` added); other ranks:
    their own result, unchanged. Raises :class:`RankFailure` when a rank does not arrive."""
    if ctx.world_size == 1:
        return dataclasses.replace(result, timings={**result.timings, "merge_s": 0.0})
    import torch.distributed as dist

    t0 = time.perf_counter()  # merge_s includes the wait for the last rank to finish its loop
    ctx.barrier("final merge")
    parts = [None] * ctx.world_size if ctx.is_main else None
    try:
        dist.gather_object(_payload(result), parts, dst=0)
    except RuntimeError as exc:
        raise RankFailure(_failure_line(exc, "final merge", ctx)) from None
    if not ctx.is_main:
        return result
    merged = merge_results([_rebuild(result, p) for p in parts])
    return dataclasses.replace(merged, timings={**merged.timings, "merge_s": time.perf_counter() - t0})
