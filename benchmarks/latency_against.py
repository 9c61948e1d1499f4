"""The 12-megapixel explain over HTTP, this checkout's service against another's, in one run.

    python -m benchmarks.latency_against /path/to/other/checkout [--rounds 5]

Both services run at once on loopback; each round times a bare forward here, then each
variant of `benchmarks.latency.VARIANTS` on one service and the other, so that load drifts
hit both alike. Printed and saved as results/latency/against.md: wall-clock medians and the
services' CPU time per request (all threads), each over the forward's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import torch

from benchmarks import latency
from cnnlens.heap import reuse_heap
from cnnlens.models import load_model

RESULTS = Path(__file__).parent / "results" / "latency"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("other", help="the other checkout's root (its cnnlens is served)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the forward")
    args = parser.parse_args(argv)
    reuse_heap()
    torch.set_num_threads(args.threads)
    forward = latency.bare_forward(load_model("efficientnet_lite0"), 224)
    data = latency.big_jpeg()
    names = {"this": None, "other": args.other}  # after, before
    walls: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    forwards: list[float] = []
    forward_cpus: list[float] = []
    with ExitStack() as stack:
        services = {
            name: stack.enter_context(latency.service_on_loopback(tree))
            for name, tree in names.items()
        }
        clients = {
            name: stack.enter_context(httpx.Client(base_url=url, timeout=600))
            for name, (url, _) in services.items()
        }
        posts = {name: latency.poster(client, data) for name, client in clients.items()}
        for post in posts.values():
            for fields in latency.VARIANTS.values():
                post(fields)  # warm-up
        for _ in range(args.rounds):
            started, cpu = time.perf_counter(), time.process_time()
            forward()
            forwards.append((time.perf_counter() - started) * 1000)
            forward_cpus.append((time.process_time() - cpu) * 1000)
            for variant, fields in latency.VARIANTS.items():
                for name, post in posts.items():
                    pid = services[name][1]
                    spent, started = latency.process_cpu_ms(pid), time.perf_counter()
                    post(fields)
                    walls.setdefault((name, variant), []).append(
                        (time.perf_counter() - started) * 1000
                    )
                    cpus.setdefault((name, variant), []).append(latency.process_cpu_ms(pid) - spent)
    wall, cpu = statistics.median(forwards), statistics.median(forward_cpus)
    lines = [
        f"# POST /v1/explain, 12 MP JPEG, over HTTP: {_commit(None)} against {_commit(args.other)}",
        "",
        f"Bare forward: {wall:.1f} ms wall, {cpu:.1f} ms CPU ({args.threads} torch thread(s)); "
        f"{args.rounds} rounds, medians; load average at the end "
        f"{[round(value, 1) for value in os.getloadavg()]}.",
        "",
        "| request | before: wall / forward | after: wall / forward "
        "| before: service CPU / forward CPU | after: service CPU / forward CPU |",
        "|---|---|---|---|---|",
    ]
    for variant in latency.VARIANTS:
        cells = [variant]
        for table, base in ((walls, wall), (cpus, cpu)):
            for name in ("other", "this"):
                ms = statistics.median(table[(name, variant)])
                cells.append(f"{ms / base:.1f}x ({ms:.0f} ms)")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "against.md").write_text(text)


def _commit(tree: str | None) -> str:
    """The checkout's commit, short (its path where git cannot say)."""
    where = tree or str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        ["git", "-C", where, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or where


if __name__ == "__main__":
    main()
