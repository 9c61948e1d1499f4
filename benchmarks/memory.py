"""Peak memory of one call: RSS high-water mark on the CPU, the allocator's peak on CUDA.

On the CPU the kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs, so
the peak is that of the measured call only; each measurement runs in a fresh process
(benchmarks.memory_probe) so that memory cached by earlier calls cannot hide a new peak.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

_PAGE = 4096


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm."""
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * _PAGE


def _high_water_mark_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM missing from /proc/self/status")


def _reset_high_water_mark() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS


def peak_bytes(call: Callable[[], Any], device: torch.device) -> int:
    """Bytes the call needed above what was in use before it (RSS or CUDA allocator)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    before = rss_bytes()
    _reset_high_water_mark()
    call()
    return _high_water_mark_bytes() - before
