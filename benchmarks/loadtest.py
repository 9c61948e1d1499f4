"""Load test of POST /v1/explain: N concurrent clients for a fixed time, loopback only.

    python -m benchmarks.loadtest                     # starts the service itself (queue of 8)
    python -m benchmarks.loadtest --clients 8 --duration 15
    python -m benchmarks.loadtest --url http://127.0.0.1:8000   # an already running service

Clients send a mix of valid explain requests and honour Retry-After on 503 / 429. Passes
(exit 0) when every answer is 200, 429 or 503, every 503 / 429 carries Retry-After and the
server's RSS stays flat (< 5 % growth) over the second half, while its queue is full.
Bounded: at most --max-requests requests and --duration seconds (+ draining the last ones).

Then, on the service it started, `benchmarks.light_latency`: a light grad_cam request's
latency while in-budget heavy requests run (a ratio to its quiet latency), the server's RSS
over that phase, and the hostile requests of the budget tests, each refused up front
(`--no-budget` skips this part).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from benchmarks import light_latency
from benchmarks._service_load import (
    free_port,
    metric_value,
    percentile,
    pick,
    request_mix,
    rss_bytes,
    start_subprocess,
    wait_ready,
)

ALLOWED = {200, 429, 503}
RSS_FLAT = 0.05


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latency_ok: list[float] = field(default_factory=list)
    latency_all: list[float] = field(default_factory=list)
    missing_retry_after: int = 0
    sent: int = 0
    by_request: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0  # the run's length, the last answers included


async def client_loop(
    client: httpx.AsyncClient, tally: Tally, stop_at: float, budget: list[int], seed: int
) -> None:
    rng = random.Random(seed)
    mix = request_mix()
    while time.monotonic() < stop_at and budget[0] > 0:
        budget[0] -= 1
        request = pick(mix, rng)
        started = time.monotonic()
        tally.sent += 1
        try:
            response = await client.post("/v1/explain", **request.send_kwargs())
        except httpx.HTTPError as error:
            tally.errors[type(error).__name__] += 1
            await asyncio.sleep(0.1)
            continue
        elapsed = time.monotonic() - started
        tally.statuses[response.status_code] += 1
        tally.latency_all.append(elapsed)
        if response.status_code == 200:
            tally.latency_ok.append(elapsed)
            tally.by_request[request.name] += 1
        elif response.status_code in (429, 503):
            retry_after = response.headers.get("Retry-After", "")
            if not retry_after.isdigit():
                tally.missing_retry_after += 1
            await asyncio.sleep(min(float(retry_after or 1), 5.0) * rng.uniform(0.5, 1.0))


async def sample_server(
    url: str, pid: int | None, stop_at: float, samples: list[tuple[float, int, float]]
) -> None:
    """(time, server RSS, queue depth) every 0.5 s."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while time.monotonic() < stop_at:
            try:
                text = (await client.get("/metrics")).text
                depth = metric_value(text, "cnnlens_queue_depth")
            except httpx.HTTPError:
                depth = float("nan")
            samples.append((time.monotonic(), rss_bytes(pid) if pid else 0, depth))
            await asyncio.sleep(0.5)


async def run(
    url: str, pid: int | None, clients: int, duration: float, max_requests: int
) -> tuple[Tally, list[tuple[float, int, float]]]:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.monotonic()
    stop_at = started + duration
    samples: list[tuple[float, int, float]] = []
    budget = [max_requests]
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(
            sample_server(url, pid, stop_at, samples),
            *(client_loop(client, tally, stop_at, budget, seed) for seed in range(clients)),
        )
    wall = tally.wall_s = time.monotonic() - started
    report(tally, wall, samples, url)
    return tally, samples


def rss_growth(samples: list[tuple[float, int, float]]) -> tuple[float, int, int, float]:
    """RSS growth over the second half of the run, and how full the queue was meanwhile."""
    half = samples[len(samples) // 2 :]
    rss = [s[1] for s in half if s[1]]
    if len(rss) < 2:
        return float("nan"), 0, 0, float("nan")
    depths = [s[2] for s in half if s[2] == s[2]]
    mean_depth = sum(depths) / len(depths) if depths else float("nan")
    return (rss[-1] - rss[0]) / rss[0], rss[0], max(rss), mean_depth


def report(tally: Tally, wall: float, samples: list[tuple[float, int, float]], url: str) -> None:
    ok = tally.statuses.get(200, 0)
    print(f"service: {url}")
    print(f"requests sent: {tally.sent} in {wall:.1f} s")
    print(
        "statuses:", dict(sorted(tally.statuses.items())), "transport errors:", dict(tally.errors)
    )
    print(f"throughput: {ok / wall:.2f} explained images/s (200 answers)")
    print(
        f"latency of 200s: p50 {percentile(tally.latency_ok, 50) * 1000:.0f} ms, "
        f"p99 {percentile(tally.latency_ok, 99) * 1000:.0f} ms; "
        f"all answers: p50 {percentile(tally.latency_all, 50) * 1000:.0f} ms, "
        f"p99 {percentile(tally.latency_all, 99) * 1000:.0f} ms"
    )
    print(f"503/429 without Retry-After: {tally.missing_retry_after}")
    print("200s by request kind:", dict(sorted(tally.by_request.items())))
    growth, first, peak, depth = rss_growth(samples)
    if first:
        print(
            f"server RSS over the second half: {first / 2**20:.0f} MiB -> "
            f"{samples[-1][1] / 2**20:.0f} MiB (peak {peak / 2**20:.0f} MiB), "
            f"growth {growth * 100:+.2f} %; mean queue depth {depth:.1f}"
        )
    else:
        print("server RSS: not measured (not a local process)")


def verdict(tally: Tally, samples: list[tuple[float, int, float]]) -> list[str]:
    problems = []
    bad = {status: n for status, n in tally.statuses.items() if status not in ALLOWED}
    if bad:
        problems.append(f"answers other than 200/429/503: {bad}")
    if tally.errors:
        problems.append(f"transport errors: {dict(tally.errors)}")
    if tally.missing_retry_after:
        problems.append(f"{tally.missing_retry_after} 503/429 answers without Retry-After")
    if not tally.statuses.get(200):
        problems.append("no request succeeded")
    growth, first, _, _ = rss_growth(samples)
    if first and growth >= RSS_FLAT:
        problems.append(f"server RSS grew {growth * 100:.1f} % while loaded")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__)
    parser.add_argument("--url", help="an already running service (default: start one)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--queue-size", type=int, default=8, help="for the service it starts")
    parser.add_argument("--max-batch", type=int, default=8, help="for the service it starts")
    parser.add_argument("--no-budget", action="store_true", help="skip the budget figures")
    light_latency.add_options(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256 or not 0 < args.duration <= 3600:
        parser.error("--clients must be 1..256 and --duration 0..3600 s")
    process = None
    url = args.url
    try:
        if url is None:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = start_subprocess(
                port,
                {
                    "CNNLENS_QUEUE_SIZE": str(args.queue_size),
                    "CNNLENS_MAX_BATCH": str(args.max_batch),
                    "CNNLENS_LOG_LEVEL": "warning",
                },
            )
            print(f"starting the service on {url} (queue {args.queue_size}) ...", flush=True)
        wait_ready(url, process=process)
        pid = process.pid if process is not None else None
        tally, samples = asyncio.run(run(url, pid, args.clients, args.duration, args.max_requests))
        problems = verdict(tally, samples)
        if not args.no_budget:
            print("--- a light request while heavy ones run; hostile requests ---", flush=True)
            if light_latency.run(url, pid, args):
                problems.append("a hostile request was not refused up front")
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except Exception:
                process.kill()
    for problem in problems:
        print("FAIL:", problem)
    print("PASS" if not problems else "FAIL")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
