"""Soak test: many explain requests through a real HTTP server in this process, then the
leak figures: RSS growth, hooks left on any module, CUDA memory against its baseline.

    python -m benchmarks.soak                        # 1000 requests, 4 clients, CPU
    python -m benchmarks.soak --requests 200 --device cuda

The server runs in a thread of this process so the very modules it serves can be checked
for hooks afterwards. RSS is measured after --warmup requests (allocator pools, lazily
built kernels and caches are in place by then) and again at the end; passes (exit 0) when
it grew less than 5 %, no hook is left and CUDA memory is back to its baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import time
from collections import Counter

import httpx
import torch

from benchmarks._service_load import percentile, pick, request_mix, rss_bytes, start_in_thread
from cnnlens.models.hooks import count_hooks
from cnnlens.service.app import create_app
from cnnlens.service.server import load_configured_models
from cnnlens.service.settings import Settings

RSS_LIMIT = 0.05


async def send(url: str, count: int, clients: int, seed: int) -> tuple[Counter[int], list[float]]:
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    remaining = [count]
    mix = request_mix()

    async def client_loop(client: httpx.AsyncClient, rng: random.Random) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.monotonic()
            response = await client.post("/v1/explain", **pick(mix, rng).send_kwargs())
            latencies.append(time.monotonic() - started)
            statuses[response.status_code] += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(
            *(client_loop(client, random.Random(seed + i)) for i in range(clients))
        )
    return statuses, latencies


def settle() -> int:
    """RSS after the garbage is collected and freed CUDA blocks are returned."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    time.sleep(0.2)
    return rss_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100, help="requests before the baseline")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.clients <= 64:
        parser.error("--requests must be 1..100000 and --clients 1..64")

    settings = Settings.model_validate({"device": args.device, "warmup": True})
    models = load_configured_models(settings)
    app = create_app(settings, models=models)
    server, thread, url = start_in_thread(app)
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    try:
        started = time.monotonic()
        warm_statuses, _ = asyncio.run(send(url, args.warmup, args.clients, seed=0))
        baseline_rss = settle()
        baseline_cuda = torch.cuda.memory_allocated() if cuda else 0
        statuses, latencies = asyncio.run(send(url, args.requests, args.clients, seed=1))
        wall = time.monotonic() - started
        final_rss = settle()
        final_cuda = torch.cuda.memory_allocated() if cuda else 0
        hooks = {name: count_hooks(loaded.module) for name, loaded in models.items()}
    finally:
        server.should_exit = True
        thread.join(timeout=60)

    growth = (final_rss - baseline_rss) / baseline_rss if baseline_rss else float("nan")
    total = statuses + warm_statuses
    print(
        f"device: {args.device}; {args.warmup} warm-up + {args.requests} requests, "
        f"{args.clients} clients, {wall:.1f} s"
    )
    print("statuses:", dict(sorted(total.items())))
    print(
        f"latency: p50 {percentile(latencies, 50) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms"
    )
    print(
        f"RSS: {baseline_rss / 2**20:.1f} MiB after warm-up -> {final_rss / 2**20:.1f} MiB "
        f"after {args.requests} more requests: growth {growth * 100:+.2f} %"
    )
    print("hooks left:", hooks)
    if cuda:
        print(
            f"CUDA allocated: {baseline_cuda / 2**20:.1f} MiB baseline -> "
            f"{final_cuda / 2**20:.1f} MiB at the end"
        )
    problems = []
    if set(total) != {200}:
        problems.append(f"answers other than 200: {dict(total)}")
    if not growth < RSS_LIMIT:
        problems.append(f"RSS grew {growth * 100:.2f} % (limit {RSS_LIMIT * 100:.0f} %)")
    if any(hooks.values()):
        problems.append(f"hooks left on the served modules: {hooks}")
    if cuda and final_cuda > baseline_cuda:
        problems.append(f"CUDA memory above its baseline by {final_cuda - baseline_cuda} bytes")
    for problem in problems:
        print("FAIL:", problem)
    print("PASS" if not problems else "FAIL")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
