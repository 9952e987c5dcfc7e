"""Progress bars for long loops: tqdm, quiet when the output is not a terminal."""
from __future__ import annotations

import numpy as np

__all__ = ["progress_bar", "SamplingProgress"]


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar, or None when ``enabled`` is False. Written to a file or a pipe (not a TTY) the
    bar is disabled (tqdm's ``disable=None``) instead of printing one line per update."""
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", dynamic_ncols=True, leave=False, mininterval=0.5, disable=None)


class SamplingProgress:
    """``on_step`` callback: moves the bar to the iteration done (after a resume the first call
    jumps to the saved iteration) and shows a running bulk-ESS estimate of the image mean,
    recomputed every ``every`` steps from the post-burn-in draws seen by this process (after a
    resume: the draws since the resume)."""

    def __init__(self, bar, n_burnin: int, every: int = 25):
        self.bar, self.n_burnin, self.every = bar, n_burnin, every
        self.draws: list[np.ndarray] = []

    def __call__(self, iteration: int, state, info) -> None:
        self.bar.update(iteration - self.bar.n)
        if iteration <= self.n_burnin:
            return
        self.draws.append(state.x.detach().mean(dim=(1, 2, 3)).double().cpu().numpy())
        if len(self.draws) >= 8 and iteration % self.every == 0:
            from pnp_imaging.diagnostics import ess

            value = ess(np.stack(self.draws, axis=1))
            self.bar.set_postfix(ess_mean=f"{value:.0f}" if np.isfinite(value) else "nan", refresh=False)
