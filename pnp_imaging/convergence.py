"""Run until converged: the stop rule and the monitor that the sampling loop consults.

:class:`StopRule` (config ``sampler.until``, keyword ``until=`` of :func:`pnp_imaging.sample`)
says when a run may stop before ``n_steps`` (which stays the hard cap): every traced quantity
passes the verdict's checks at the rule's thresholds, or the wall-clock budget is spent.
:class:`ConvergenceMonitor` evaluates it every ``check_every`` iterations on the kept traces of
the run so far, with the very function the verdict uses (:func:`pnp_imaging.diagnostics.verdicts`:
bulk *and* tail ESS of every traced quantity, the slow direction included, and rank-normalised
split-R̂), and keeps the running figures the progress bar shows. ``docs/algorithms.md
§run-until-converged`` states the rule.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from pnp_imaging import diagnostics

__all__ = ["StopRule", "ConvergenceMonitor", "running_figures", "check_due", "STOP_REASONS"]

#: why a run stopped: its whole ``n_steps``, the rule met, the time budget spent
STOP_REASONS = ("n_steps", "converged", "max_minutes")


def _number(where: str, value, *, low: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not value > low:
        raise ValueError(f"{where}: must be a number {what}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class StopRule:
    """When a run may stop early (``docs/algorithms.md §run-until-converged``).

    ``ess``: the smallest bulk or tail ESS over the traced quantities must reach it (default
    :data:`~pnp_imaging.diagnostics.MIN_ESS`, the verdict's); ``rhat``: the largest rank-normalised
    split-R̂ must not exceed it (default :data:`~pnp_imaging.diagnostics.MAX_RHAT`);
    ``max_minutes``: wall-clock budget of the sampling loop, summed over resumes (None: only
    ``n_steps`` bounds the run); ``check_every``: iterations between two checks, ``K``, while
    fewer than ``40 K`` iterations follow the burn-in; the interval then doubles each time that
    number doubles (:func:`check_due`), so that the checks, whose cost grows with the number of
    draws (one :func:`~pnp_imaging.diagnostics.summarize`: 0.05 s at 2 000 draws × 2 chains × 6
    quantities, 0.45 s at 20 000), stay a fixed small share of the run. The schedule depends on
    the iteration only, so a resumed run stops where an uninterrupted one would.
    """

    ess: float = diagnostics.MIN_ESS
    rhat: float = diagnostics.MAX_RHAT
    max_minutes: float | None = None
    check_every: int = 50

    @classmethod
    def from_value(cls, value: Any, where: str = "until") -> "StopRule | None":
        """None, a :class:`StopRule`, or a mapping of its fields (checked: one-line errors
        naming ``where.key``)."""
        if value is None or isinstance(value, StopRule):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping like {{ess: 100, rhat: 1.01, max_minutes: 30}}, got {value!r}")
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in value:
            if key not in valid:
                raise ValueError(f"{where}.{key}: unknown key (valid: {', '.join(valid)})")
        d = {**dataclasses.asdict(cls()), **value}
        minutes = d["max_minutes"]
        every = d["check_every"]
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"{where}.check_every: must be an integer >= 1, got {every!r}")
        return cls(ess=_number(f"{where}.ess", d["ess"], low=0.0, what="> 0, e.g. 100"),
                   rhat=_number(f"{where}.rhat", d["rhat"], low=1.0, what="> 1, e.g. 1.01"),
                   max_minutes=None if minutes is None else _number(f"{where}.max_minutes", minutes, low=0.0,
                                                                    what="> 0 (or null for no time budget)"),
                   check_every=every)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def running_figures(summary: Mapping[str, Mapping[str, float]]) -> tuple[float, float]:
    """``(min ESS, max R̂)`` over the traced quantities: the smallest of the bulk and tail ESS
    and the largest R̂, the quantities the verdict checks (NaN when any is NaN)."""
    ess_all = [min(s.get("ess_bulk", math.nan), s.get("ess_tail", math.nan)) for s in summary.values()]
    rhat_all = [s.get("rhat", math.nan) for s in summary.values()]
    if not ess_all:
        return math.nan, math.nan
    nan_ess = any(math.isnan(v) for v in ess_all)
    nan_rhat = any(math.isnan(v) for v in rhat_all)
    return (math.nan if nan_ess else min(ess_all)), (math.nan if nan_rhat else max(rhat_all))


class ConvergenceMonitor:
    """Consulted by :func:`~pnp_imaging.samplers.base.run_chain` after every iteration.

    With a :class:`StopRule` it returns the stop reason (``"converged"`` or ``"max_minutes"``)
    when one applies; without one (``rule=None``) it only computes the running figures every
    ``every`` iterations, for the progress bar. ``last`` holds the latest figures:
    ``iteration``, ``ess_min``, ``rhat_max``, ``eta_s`` (seconds to the ESS target at the
    current ESS per draw and time per iteration; None when unknown) and ``checks``.
    """

    def __init__(self, rule: StopRule | None = None, *, every: int = 50):
        self.rule = rule
        self.every = rule.check_every if rule is not None else int(every)
        self.target = rule.ess if rule is not None else diagnostics.MIN_ESS
        self.last: dict[str, Any] = {}
        self.checks = 0

    def after_step(self, run, elapsed_s: float, s_per_step: float) -> str | None:
        """The stop reason after iteration ``run.iteration`` (None: go on)."""
        rule = self.rule
        if rule is not None and rule.max_minutes is not None and elapsed_s >= 60.0 * rule.max_minutes:
            return "max_minutes"
        if not check_due(run.iteration - run.n_burnin, self.every):
            return None
        return self.check(run, s_per_step)

    def check(self, run, s_per_step: float) -> str | None:
        """Evaluate the rule on the kept traces now ("converged" or None)."""
        kept = _kept_traces(run)
        summary = diagnostics.summarize(kept) if kept else {}
        ess_min, rhat_max = running_figures(summary)
        n_draws = next(iter(kept.values())).shape[1] if kept else 0
        self.checks += 1
        self.last = {"iteration": run.iteration, "ess_min": ess_min, "rhat_max": rhat_max, "checks": self.checks,
                     "eta_s": _eta(ess_min, self.target, n_draws, run.thin, s_per_step)}
        if self.rule is None or not summary:
            return None
        failing = diagnostics.verdicts(summary, min_ess=self.rule.ess, max_rhat=self.rule.rhat)
        return None if failing else "converged"


def check_due(m: int, every: int) -> bool:
    """Whether ``m`` iterations after the burn-in is a check: ``m`` is a positive multiple of
    ``every · 2^j`` with ``j = max(0, floor(log2(m / (20 · every))))``."""
    if m <= 0:
        return False
    interval = every
    while m >= 40 * interval:
        interval *= 2
    return m % interval == 0


def _kept_traces(run) -> dict[str, np.ndarray]:
    """``{name: (chain, draw)}`` at the kept iterations ``<= run.iteration``."""
    first = run.n_burnin + run.thin
    if run.iteration < first:
        return {}
    tr = run.traces[first - 1: run.iteration: run.thin]  # (draw, name, chain)
    return {name: tr[:, k, :].T.numpy() for k, name in enumerate(run.names)}


def _eta(ess_min: float, target: float, n_draws: int, thin: int, s_per_step: float) -> float | None:
    """Seconds until the ESS reaches ``target`` if it keeps growing in proportion to the draws."""
    if not (math.isfinite(ess_min) and ess_min > 0 and n_draws > 0 and s_per_step > 0):
        return None
    if ess_min >= target:
        return 0.0
    more_draws = n_draws * (target / ess_min - 1.0)
    return more_draws * thin * s_per_step
