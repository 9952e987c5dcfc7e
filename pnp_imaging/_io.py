"""Atomic file writes: a reader (or a killed process) never sees a half-written file."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["atomic_write", "atomic_torch_save", "atomic_write_text", "atomic_write_json", "json_default", "plain"]


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> Path:
    """Call ``write(file_object)`` on ``<path>.tmp<pid>`` (binary), fsync, then ``os.replace`` it
    over ``path``; the temporary file is removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_torch_save(obj, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def json_default(obj):
    """``json.dumps(default=...)`` for numpy scalars/arrays and tensors (anything else: ``str``)."""
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    return str(obj)


def atomic_write_json(path: str | Path, data) -> Path:
    """``json.dumps(data, indent=2)`` (numpy/torch values converted) written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=json_default) + "\n")


def plain(obj):
    """Tuples → lists, recursively through dicts and lists (what YAML, JSON and ``torch.load``
    give back), so that configs compare equal after a round trip."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
