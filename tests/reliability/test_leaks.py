"""A fast leak check (the full one is `make soak`): 50 mixed requests through the live server
after a warm-up; no hook left, RSS growth loosely bounded, CUDA memory back to baseline."""

from __future__ import annotations

import gc
import random

import httpx
import torch

from benchmarks._service_load import pick, request_mix, rss_bytes
from tests.reliability.conftest import LiveServer


def _send(http: httpx.Client, count: int, seed: int) -> list[int]:
    rng, mix = random.Random(seed), request_mix()
    return [
        http.post("/v1/explain", **pick(mix, rng).send_kwargs()).status_code for _ in range(count)
    ]


def _settled_rss() -> int:
    gc.collect()
    return rss_bytes()


def test_fifty_requests_leave_no_hooks_and_bounded_memory(
    live_server: LiveServer, http: httpx.Client
) -> None:
    assert set(_send(http, 12, seed=0)) == {200}  # every request kind, twice on average
    live_server.wait_idle()
    baseline = _settled_rss()
    cuda_baseline = torch.cuda.memory_allocated() if torch.cuda.is_available() else 0
    assert set(_send(http, 50, seed=1)) == {200}
    live_server.wait_idle()
    growth = (_settled_rss() - baseline) / baseline
    assert live_server.hooks() == 0
    assert all(not module.training for module in live_server.model.module.modules())
    assert all(p.grad is None for p in live_server.model.module.parameters())
    # Loose: allocator pools still settle this early (make soak asserts < 5 % over 1000).
    assert growth < 0.15, f"RSS grew {growth * 100:.1f} % over 50 requests"
    if torch.cuda.is_available():
        assert torch.cuda.memory_allocated() <= cuda_baseline
