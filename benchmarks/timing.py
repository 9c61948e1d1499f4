"""Wall-clock timing with warm-up, device synchronization and the median of repeats."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Timing:
    median_ms: float
    runs: int
    spread_ms: float  # max - min over the timed runs
    samples_ms: tuple[float, ...] = ()  # each timed run, in order (rounds of time_interleaved)


def paired_ratio(first: Timing, second: Timing) -> float:
    """Median over rounds of first / second, each round's two runs measured back to back:
    steadier than a ratio of medians when the machine's load changes between rounds."""
    pairs = zip(first.samples_ms, second.samples_ms, strict=True)
    return statistics.median(a / b for a, b in pairs)


def paired_quartiles(first: Timing, second: Timing) -> tuple[float, float]:
    """The first and third quartiles of the rounds' first / second: how far one round's
    ratio strays from `paired_ratio`."""
    ratios = [a / b for a, b in zip(first.samples_ms, second.samples_ms, strict=True)]
    low, _, high = statistics.quantiles(ratios, n=4)
    return low, high


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a timer around a call measures the call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(call: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> Timing:
    """Median wall-clock milliseconds of `call` after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    synchronize(device)
    durations = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        call()
        synchronize(device)
        durations.append((time.perf_counter() - started) * 1000)
    return Timing(statistics.median(durations), len(durations), max(durations) - min(durations))


def time_interleaved(
    calls: dict[str, Callable[[], Any]], device: torch.device, warmup: int, repeats: int
) -> dict[str, Timing]:
    """Time several calls in turn, so a load change on a shared machine shifts every median
    alike and their ratios stay fair; each round takes them in a new order (seeded), so that
    no call always runs right after the same other one, whose heap and caches it inherits."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    synchronize(device)
    durations: dict[str, list[float]] = {name: [] for name in calls}
    named = list(calls.items())
    orders = random.Random(0)
    for _ in range(max(1, repeats)):
        for name, call in orders.sample(named, len(named)):
            started = time.perf_counter()
            call()
            synchronize(device)
            durations[name].append((time.perf_counter() - started) * 1000)
    return {
        name: Timing(
            statistics.median(values), len(values), max(values) - min(values), tuple(values)
        )
        for name, values in durations.items()
    }
