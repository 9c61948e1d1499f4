"""Large arrays worked in row bands on a few threads.

numpy's element-wise loops and `take`, and zlib's deflate, let go of the GIL, so the rows of a
photo-sized image can be scaled, coloured, blended and compressed on several cores at once.
One pool serves them all (the PNG writer and the renderer).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MAX_THREADS = 4
# Elements of one band: below two bands' worth an array is worked in one piece, on the
# caller's thread (handing a smaller one to the pool costs more than it saves).
BAND_ELEMENTS = 1 << 20

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def workers() -> int:
    """Threads of the pool: the CPUs this process may use, at most MAX_THREADS."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, usable))


def pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(workers(), thread_name_prefix="cnnlens-bands")
        return _pool


def band_count(elements: int, band_elements: int | None = None) -> int:
    """How many bands an array of `elements` is cut into (1: worked in one piece)."""
    per_band = BAND_ELEMENTS if band_elements is None else band_elements
    return max(1, min(elements // max(per_band, 1), workers()))


def in_row_bands(kernel: Callable[..., object], out: np.ndarray, *inputs: np.ndarray) -> np.ndarray:
    """kernel(*(x[a:b] for x in inputs), out[a:b]) over row bands [a, b) of `out`; returns out.

    Each input has out's rows (axis 0). The kernel writes its band of `out` and nothing else,
    so the bands may run at once."""
    bands = band_count(out.size)
    if bands == 1:
        kernel(*inputs, out)
        return out
    rows = out.shape[0]
    edges = [rows * band // bands for band in range(bands + 1)]
    futures = [
        pool().submit(kernel, *(array[start:end] for array in inputs), out[start:end])
        for start, end in zip(edges, edges[1:], strict=False)
        if end > start
    ]
    for future in futures:
        future.result()  # raises the first band's error, if any
    return out
