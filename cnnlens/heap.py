"""glibc malloc settings for a process that runs CNNs on a CPU.

A model call allocates and frees the same activations every time. glibc's defaults leave to
chance whether those come back from the heap: its mmap threshold rises only as mapped chunks
are freed, and it gives the free top of its heap back to the kernel once that exceeds twice
the threshold. In about one fresh process in five, every forward of efficientnet_lite0 at
224 px then faulted 3,500-4,700 fresh pages (20-22 ms a forward instead of 15-16, on 2 threads);
the others faulted none. `reuse_heap` fixes both thresholds, so that every process keeps
its activations' memory from one call to the next.

cnnlens's own processes call it at start (`cnnlens` commands, the service, audit replicas);
an application that runs cnnlens in its own process may call it too. It does nothing where
the C library is not glibc, or where the process was started with glibc's own
`MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` (that choice is the user's).
"""

from __future__ import annotations

import ctypes
import os
import threading

# glibc's largest mmap threshold on 64-bit systems: tensors up to it come from the heap, and
# CPU passes are sized so that their activations stay under it (`methods/passes.py`).
MMAP_THRESHOLD_BYTES = 32 << 20
# Freed memory kept at the heap's top for the next call before any is given back.
TRIM_THRESHOLD_BYTES = 256 << 20

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_lock = threading.Lock()
_applied: bool | None = None


def reuse_heap() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once); True when they are set."""
    global _applied
    with _lock:
        if _applied is None:
            _applied = _apply()
        return _applied


def _apply() -> bool:
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (raises AttributeError off glibc)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting the mmap threshold also stops its adaptation.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
