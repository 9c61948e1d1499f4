"""glibc's malloc thresholds are fixed once per process, so that activations reuse the heap."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

GLIBC = platform.libc_ver()[0] == "glibc"

# A fresh process per check: the settings are process-wide. It runs a model whose largest
# activation (4 MiB) is far above glibc's initial mmap threshold (128 KiB), then counts
# the minor page faults of the next forwards.
PROBE = textwrap.dedent(
    """
    import resource, sys
    import torch
    from torch import nn
    from cnnlens.heap import reuse_heap

    applied = reuse_heap()
    assert reuse_heap() == applied  # once per process
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1))
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        for _ in range(3):
            net(x)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            net(x)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(applied, faults / 20)
    """
)


def _probe(env: dict[str, str]) -> tuple[bool, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    applied, faults = done.stdout.split()
    return applied == "True", float(faults)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    return {**env, **extra}


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_forwards_reuse_the_heap_once_the_thresholds_are_fixed() -> None:
    applied, faults = _probe(_env())
    assert applied
    # One 4 MiB activation alone is 1024 fresh pages a forward when it is mapped anew; with
    # glibc's adaptive defaults this probe faulted 200-3,500 pages a forward, fixed 0-100.
    assert faults < 512


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_glibc_settings_of_the_user_are_left_alone() -> None:
    applied, _ = _probe(_env(MALLOC_TRIM_THRESHOLD_="131072"))
    assert not applied
