"""Pause and resume for ``bench.bench_time_to_answer`` (``--resume-dir DIR``).

One file per problem, named by a hash of everything the contenders' records depend on (the
reference's settings and the contenders' budget, burn-in, chains, criterion and seed). It holds

* the records of the contenders that have finished (a resumed invocation does not run them
  again, so the ratios still compare runs of the same settings), and
* the state of a paused deepinv ULA run: its chain, the global RNG state it draws its noise
  from, the iterations done and the tracker (pooled moments, evaluated records, kept steps,
  wall time and denoiser calls so far). Resuming continues that chain exactly: the same noise,
  the same records; only the wall times differ, each segment's being recorded.

deepinv's run is the long one (tens of thousands of calls at 256²), the only one that pauses:
on SIGINT/SIGTERM, or once this invocation has spent ``--pause-after`` of its calls, its state
is saved at the next iteration and the invocation stops without writing a result.
``moments_state``/``moments_from`` are also the format of the moments in the reference cache.
"""
from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import torch

from pnp_imaging._io import atomic_torch_save

#: tracker fields kept in the file (the moments separately, as tensors)
TRACKER_FIELDS = ("steps", "next_eval", "run_start", "records")


class Paused(Exception):
    """A run stopped with its state saved: rerun the same command to continue it."""


class ResumeFile:
    """The pause/resume state of one problem (module docstring); a no-op without a directory."""

    def __init__(self, directory: str | None, key: dict, *, pause_after: int | None = None):
        self.path, self.key = None, json.dumps(key, sort_keys=True, default=str)
        self.pause_after, self.stop_requested = pause_after, False
        self.state = {"key": self.key, "done": {}, "paused": None}
        if directory:
            digest = hashlib.sha256(self.key.encode()).hexdigest()[:16]
            self.path = Path(directory) / f"t2a_{key['image']}_{key['operator']}_{digest}.pt"
            if self.path.exists():
                self.state = torch.load(self.path, map_location="cpu", weights_only=True)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def done(self, name: str) -> dict | None:
        """The finished record of contender ``name``, if an earlier invocation ran it."""
        text = self.state["done"].get(name)
        return None if text is None else {**json.loads(text), "read_from": str(self.path)}

    def finish(self, name: str, record: dict) -> None:
        self.state["done"][name] = json.dumps(record, default=float)
        if self.state["paused"] is not None and self.state["paused"]["name"] == name:
            self.state["paused"] = None
        self._save()

    def paused(self, name: str) -> dict | None:
        p = self.state["paused"]
        return p if p is not None and p["name"] == name else None

    def pause(self, name: str, chain: dict) -> None:
        """Save a paused run (``chain``: tensors and JSON-able fields) and raise :class:`Paused`."""
        self.state["paused"] = {"name": name, **chain}
        self._save()
        raise Paused(f"{name} paused after {chain['iterations']} iterations; state in {self.path}: "
                     "rerun the same command to continue")

    def should_pause(self, calls_this_invocation: int) -> bool:
        return self.enabled and (self.stop_requested or (
            self.pause_after is not None and calls_this_invocation >= self.pause_after))

    def _save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(self.state, self.path)

    def catch_signals(self):
        """Turn SIGINT/SIGTERM into a pause at the next iteration; returns the previous handlers."""
        def request(signum, frame):
            self.stop_requested = True

        return {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)} if self.enabled else {}

    @staticmethod
    def restore_signals(previous: dict) -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)


def moments_state(m) -> dict:
    """A :class:`~pnp_imaging.stats.RunningMoments` as file-safe types (``moments_from`` inverts it)."""
    return {"mean": m.mean.clone(), "m2": m.m2.clone(), "count": int(m.count)}


def moments_from(state: dict):
    from pnp_imaging.stats import RunningMoments

    m = RunningMoments(tuple(state["mean"].shape), dtype=state["mean"].dtype)
    m.mean.copy_(state["mean"])
    m.m2.copy_(state["m2"])
    m.count = state["count"]
    return m


def tracker_state(tr) -> dict:
    """What a :class:`bench.bench_time_to_answer.Tracker` needs to continue (file-safe types)."""
    return {**moments_state(tr.moments), "elapsed": tr.sw.elapsed() + tr.charge[0], "calls": tr.calls(),
            "fields": json.dumps({k: getattr(tr, k) for k in TRACKER_FIELDS}, default=float)}


def restore_tracker(tr, saved: dict) -> None:
    """Inverse of :func:`tracker_state`: the earlier wall time and calls become the tracker's charge."""
    tr.moments = moments_from(saved)
    for k, v in json.loads(saved["fields"]).items():
        setattr(tr, k, v)
    tr.charge = (saved["elapsed"], saved["calls"])
