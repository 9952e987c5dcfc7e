"""Keep freed CPU memory in the process (glibc malloc) so repeated network calls stop page-faulting.

A forward pass of a zoo network at 256² allocates and frees activations of several MB. With
glibc's defaults such blocks are served by ``mmap`` and returned to the OS when freed (or the
heap top is trimmed), so every call pays fresh page faults and zeroing: measured here, one
256² forward of the stage-4 drunet_gray (widths [16, 32, 64, 128]) on one core took 85-100 ms
with the defaults and 55-62 ms with the thresholds below (and whether a process had first run
BM3D, which happens to raise glibc's dynamic mmap threshold, moved the network's time by ~30 %).
``keep_freed_memory()`` fixes both thresholds with ``mallopt`` so timings are stable and fast; it
is what the CLI, the model cards and the benchmarks call at start. Elsewhere (not glibc, e.g. macOS) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's documented maximum on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set glibc's mmap threshold to 32 MiB and trim threshold to 1 GiB; True if applied."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    return bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok)
