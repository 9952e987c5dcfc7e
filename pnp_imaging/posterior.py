"""What :func:`pnp_imaging.sample` returns: estimates, uncertainty, diagnostics and a verdict,
savable to and loadable from a folder.

Folder layout (:meth:`Posterior.save`)::

    estimates.npz   mmse, std, lower, upper, multiscale_std_<k>[, map][, samples][, y][, x_true]
    traces.npz      names, values (chain, iteration, quantity)
    summary.json    the summary (settings, ESS/R̂/MCSE per traced quantity, warnings, metrics)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pnp_imaging._io import atomic_write, atomic_write_json

__all__ = ["Posterior"]


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


@dataclass
class Posterior:
    """Posterior summaries of one sampling run. Images are ``[1, C, H, W]`` float64 CPU tensors.

    ``mmse``: posterior mean; ``std``: per-pixel posterior std; ``lower`` / ``upper``: per-pixel
    equal-tailed credible interval at ``summary["credible_level"]``; ``multiscale_std``:
    ``{k: std of k×k block means}``; ``map``: the MAP when one was computed; ``diagnostics``:
    ``{quantity: {ess_bulk, ess_tail, rhat, mcse_mean, ..., verdict}}`` per traced quantity;
    ``traces``: ``{quantity: (chain, iteration)}`` arrays; ``samples``: ``[n, C, H, W]`` posterior
    draws, the last state of the first ``n`` chains (independent samples for the diffusion
    samplers), for the report's grid; ``summary``: JSON-able settings,
    figures and warnings; ``config``: the resolved run config when run from one.
    """

    mmse: torch.Tensor
    std: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    multiscale_std: dict[int, torch.Tensor]
    diagnostics: dict[str, dict[str, Any]]
    summary: dict[str, Any]
    traces: dict[str, np.ndarray] = field(default_factory=dict)
    map: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    config: dict[str, Any] | None = None
    out_dir: str | None = None

    @property
    def warnings(self) -> list[str]:
        return list(self.summary.get("warnings", []))

    @property
    def converged(self) -> bool:
        """True when every traced quantity has ESS ≥ 100 and R̂ ≤ 1.01 and no warning was raised."""
        return not self.warnings

    @property
    def verdict(self) -> str:
        """``"converged"`` or ``"not converged: <first reason>"`` (all reasons: :attr:`warnings`)."""
        return "converged" if self.converged else f"not converged: {self.warnings[0]}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the images stay out): the summary with the diagnostics and verdict."""
        return {**self.summary, "diagnostics": self.diagnostics, "verdict": self.verdict}

    def arrays(self) -> dict[str, np.ndarray]:
        """The images as numpy arrays, keyed as in ``estimates.npz``."""
        out = {"mmse": self.mmse, "std": self.std, "lower": self.lower, "upper": self.upper}
        if self.map is not None:
            out["map"] = self.map
        if self.samples is not None:
            out["samples"] = self.samples
        out.update({f"multiscale_std_{k}": v for k, v in self.multiscale_std.items()})
        return {k: v.detach().double().cpu().numpy() for k, v in out.items()}

    def save(self, folder: str | Path, *, extra_arrays: dict[str, torch.Tensor] | None = None) -> Path:
        """Write ``estimates.npz``, ``traces.npz`` and ``summary.json`` into ``folder`` (each
        atomically). ``extra_arrays`` (e.g. ``y``, ``x_true``) go into ``estimates.npz`` too."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = self.arrays()
        for k, v in (extra_arrays or {}).items():
            arrays[k] = v.detach().double().cpu().numpy()
        _savez(folder / "estimates.npz", arrays)
        names = list(self.traces)
        values = np.stack([self.traces[n] for n in names], axis=-1) if names else np.zeros((0, 0, 0))
        _savez(folder / "traces.npz", {"names": np.asarray(names), "values": values})
        atomic_write_json(folder / "summary.json", self.to_dict())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "Posterior":
        """Read a folder written by :meth:`save` (or by ``pnp-imaging run``)."""
        folder = Path(folder)
        missing = [n for n in ("summary.json", "estimates.npz") if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: missing {', '.join(missing)}; is this a saved posterior folder?")
        summary = json.loads((folder / "summary.json").read_text())
        diagnostics = summary.pop("diagnostics", {})
        summary.pop("verdict", None)
        with np.load(folder / "estimates.npz") as data:
            t = {k: torch.from_numpy(data[k]) for k in data.files}
        traces = {}
        if (folder / "traces.npz").is_file():
            with np.load(folder / "traces.npz", allow_pickle=False) as data:
                traces = {str(n): data["values"][..., i] for i, n in enumerate(data["names"])}
        scales = {int(k.rsplit("_", 1)[1]): v for k, v in t.items() if k.startswith("multiscale_std_")}
        return cls(mmse=t["mmse"], std=t["std"], lower=t["lower"], upper=t["upper"], multiscale_std=scales,
                   diagnostics=diagnostics, summary=summary, traces=traces, map=t.get("map"), samples=t.get("samples"),
                   out_dir=str(folder))
