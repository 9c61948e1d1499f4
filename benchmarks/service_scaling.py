"""Figure 12: the service under 16 concurrent clients against one client at a time.

One service process on loopback, with its default batching, on the bench's device; the load
test's clients (`benchmarks.loadtest`: mixed explain requests, Retry-After honoured) run
first alone, then 16 at once, for the same time. Its queue holds every client's request, so
the figure is throughput, not refusals.
"""

from __future__ import annotations

import asyncio

from benchmarks import loadtest
from benchmarks._service_load import free_port, start_subprocess, wait_ready


def throughput(device: str, clients: int = 16, duration_s: float = 20.0) -> dict[str, float]:
    """Explained images/s (200 answers) with one client and with `clients` at once."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_subprocess(
        port,
        {
            "CNNLENS_DEVICE": device,
            "CNNLENS_QUEUE_SIZE": str(clients),
            "CNNLENS_LOG_LEVEL": "warning",
        },
    )
    try:
        wait_ready(url, process=process)
        rates: dict[str, float] = {}
        for count in (1, clients):
            tally, _ = asyncio.run(loadtest.run(url, process.pid, count, duration_s, 100_000))
            rates[f"{count} client(s) images/s"] = tally.statuses.get(200, 0) / tally.wall_s
            rates[f"{count} client(s) non-200"] = float(tally.sent - tally.statuses.get(200, 0))
        return rates
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except Exception:
            process.kill()
