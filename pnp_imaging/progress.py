"""Progress bars for long loops: tqdm, quiet when the output is not a terminal."""
from __future__ import annotations

import math

__all__ = ["progress_bar", "SamplingProgress", "format_figures"]


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar, or None when ``enabled`` is False. Written to a file or a pipe (not a TTY) the
    bar is disabled (tqdm's ``disable=None``) instead of printing one line per update."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, leave=False, mininterval=0.5, disable=None)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def format_figures(last: dict, target: float) -> dict[str, str]:
    """The bar's postfix from :attr:`ConvergenceMonitor.last <pnp_imaging.convergence.ConvergenceMonitor>`:
    ``ess_min`` (smallest bulk/tail ESS over the traced quantities, against the target),
    ``rhat_max`` (largest R̂) and ``eta`` (time to the ESS target)."""
    ess, rhat = last.get("ess_min", math.nan), last.get("rhat_max", math.nan)
    return {"ess_min": f"{ess:.0f}/{target:g}" if math.isfinite(ess) else "nan",
            "rhat_max": f"{rhat:.3f}" if math.isfinite(rhat) else "nan",
            "eta": _duration(last.get("eta_s"))}


class SamplingProgress:
    """``on_step`` callback: moves the bar to the iteration done (after a resume the first call
    jumps to the saved iteration) and shows the running figures of the
    :class:`~pnp_imaging.convergence.ConvergenceMonitor` that the sampling loop consults — the
    minimum ESS and maximum R̂ over the traced quantities, i.e. what the verdict checks — and the
    estimated time to the ESS target, refreshed at each of the monitor's checks."""

    def __init__(self, bar, monitor):
        self.bar, self.monitor = bar, monitor
        self._shown = None

    def __call__(self, iteration: int, state, info) -> None:
        self.bar.update(iteration - self.bar.n)
        last = self.monitor.last if self.monitor is not None else {}
        if last and last.get("checks") != self._shown:
            self._shown = last.get("checks")
            self.bar.set_postfix(format_figures(last, self.monitor.target), refresh=False)
