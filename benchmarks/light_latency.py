"""A light request's latency while heavy ones run, and the hostile requests refused up front.

    python -m benchmarks.light_latency --url http://127.0.0.1:8000   # a running service
    (run by `make loadtest` after the mixed load, on the service it started)

1. Quiet: `--light` grad_cam requests one after another; their median latency.
2. Loaded: `--heavy-clients` clients send SmoothGrad requests of 16 targets sized at
   `--heavy-share` of the work budget (the largest sample count the service accepts, from
   its own 422 answer, times the share), while the light requests are sent again; the
   ratio of the medians.
3. The server's RSS over the loaded phase, against its warm level before it.
4. The hostile requests of the budget tests: each status, code and answer time.
Loopback only, bounded in count: `--light` light requests and at most `--heavy-max` heavy ones.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from benchmarks._service_load import rss_bytes

SIXTEEN = [str(index) for index in range(16)]


def _jpeg(size: tuple[int, int], quality: int = 90) -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).resize(size).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def hostile_requests(photo: bytes, huge: bytes) -> dict[str, tuple[str, dict[str, Any], bytes]]:
    """The hostile requests: route, form fields and image."""

    def explain(method: str, values: dict[str, Any], targets: int = 1) -> dict[str, Any]:
        fields = {"method": method, "params": json.dumps({method: values})}
        return fields | ({"target": SIXTEEN[:targets]} if targets > 1 else {})

    return {
        "smoothgrad 1024 samples x 16 targets": (
            "/v1/explain", explain("smoothgrad", {"samples": 1024}, 16), photo
        ),
        "occlusion window 1 stride 1": (
            "/v1/explain", explain("occlusion", {"window": 1, "stride": 1}), photo
        ),
        "activation_max 2000 steps": (
            "/v1/activation-max", {"target": "1", "params": '{"steps": 2000}'}, b""
        ),
        "PGD 1000 steps": ("/v1/adversarial", {"params": '{"steps": 1000}'}, photo),
        "IG 1024 steps x 16 targets": (
            "/v1/explain", explain("integrated_gradients", {"steps": 1024}, 16), photo
        ),
        "Score-CAM every channel": (
            "/v1/explain", explain("score_cam", {"channels": "all"}), photo
        ),
        "16 megapixels x 16 grad_cam targets": (
            "/v1/explain", {"method": "grad_cam", "target": SIXTEEN}, huge
        ),
        "output=array x 8 targets, 16 megapixels": (
            "/v1/explain", {"method": "grad_cam", "target": SIXTEEN[:8], "output": "array"}, huge
        ),
    }  # fmt: skip


@dataclass
class Figures:
    quiet: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    heavy: list[float] = field(default_factory=list)
    heavy_statuses: dict[int, int] = field(default_factory=dict)
    heavy_samples: int = 0
    rss_warm: int = 0
    rss_peak: int = 0
    hostile: dict[str, tuple[int, str, float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return statistics.median(self.loaded) / statistics.median(self.quiet)


async def _post(client: httpx.AsyncClient, route: str, fields: dict[str, Any], image: bytes) -> Any:
    files = {"image": ("photo.jpg", image, "image/jpeg")} if image else None
    return await client.post(route, data=fields, files=files)


async def _light(client: httpx.AsyncClient, photo: bytes, count: int, into: list[float]) -> None:
    for _ in range(count):
        started = time.monotonic()
        response = await _post(client, "/v1/explain", {"method": "grad_cam"}, photo)
        response.raise_for_status()
        into.append(time.monotonic() - started)


async def _largest_samples(client: httpx.AsyncClient, photo: bytes) -> int:
    """The most SmoothGrad samples the service accepts for 16 targets (its own 422 says)."""
    fields = {
        "method": "smoothgrad",
        "target": SIXTEEN,
        "params": json.dumps({"smoothgrad": {"samples": 1024}}),
    }
    response = await _post(client, "/v1/explain", fields, photo)
    found = re.search(r"samples to at most (\d+)", response.text)
    if response.status_code != 422 or not found:
        raise RuntimeError(f"expected an over_budget answer naming samples: {response.text[:300]}")
    return int(found.group(1))


async def measure(
    url: str, pid: int | None, light: int, heavy_clients: int, heavy_share: float, heavy_max: int
) -> Figures:
    figures = Figures()
    photo = _jpeg((451, 300))
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await _light(client, photo, 2, [])  # warm: allocator and kernels
        await _light(client, photo, light, figures.quiet)
        figures.heavy_samples = max(1, int(await _largest_samples(client, photo) * heavy_share))
        figures.rss_warm = figures.rss_peak = rss_bytes(pid) if pid else 0
        stop = asyncio.Event()
        sent = [0]

        async def heavy_loop() -> None:
            fields = {
                "method": "smoothgrad",
                "target": SIXTEEN,
                "params": json.dumps({"smoothgrad": {"samples": figures.heavy_samples}}),
            }
            while not stop.is_set() and sent[0] < heavy_max:
                sent[0] += 1
                started = time.monotonic()
                response = await _post(client, "/v1/explain", fields, photo)
                status = response.status_code
                figures.heavy_statuses[status] = figures.heavy_statuses.get(status, 0) + 1
                figures.heavy.append(time.monotonic() - started)

        async def sample_rss() -> None:
            while not stop.is_set():
                if pid:
                    figures.rss_peak = max(figures.rss_peak, rss_bytes(pid))
                await asyncio.sleep(0.2)

        async def light_meanwhile() -> None:
            await asyncio.sleep(1.0)  # the heavy requests are queued and running
            try:
                await _light(client, photo, light, figures.loaded)
            finally:
                stop.set()

        await asyncio.gather(
            light_meanwhile(), sample_rss(), *(heavy_loop() for _ in range(heavy_clients))
        )
        huge = _jpeg((4000, 4000), quality=60)
        for name, (route, fields, image) in hostile_requests(photo, huge).items():
            started = time.monotonic()
            response = await _post(client, route, fields, image)
            code = response.json().get("error", {}).get("code", "") if response.text else ""
            figures.hostile[name] = (response.status_code, code, time.monotonic() - started)
    return figures


def report(figures: Figures) -> list[str]:
    """Print the figures; return the problems (a hostile request answered other than 422)."""
    quiet, loaded = statistics.median(figures.quiet), statistics.median(figures.loaded)
    print(
        f"light grad_cam: quiet median {quiet * 1000:.0f} ms; with heavy requests running "
        f"median {loaded * 1000:.0f} ms, max {max(figures.loaded) * 1000:.0f} ms: "
        f"{figures.ratio:.2f}x quiet"
    )
    print(
        f"heavy: SmoothGrad with {figures.heavy_samples} samples x 16 targets, "
        f"{len(figures.heavy)} sent, statuses {figures.heavy_statuses}, median "
        f"{statistics.median(figures.heavy) if figures.heavy else float('nan'):.1f} s"
    )
    if figures.rss_warm:
        growth = (figures.rss_peak - figures.rss_warm) / 2**20
        print(
            f"server RSS: warm {figures.rss_warm / 2**20:.0f} MiB, peak "
            f"{figures.rss_peak / 2**20:.0f} MiB while loaded (+{growth:.0f} MiB)"
        )
    problems = []
    for name, (status, code, seconds) in figures.hostile.items():
        print(f"hostile: {name}: {status} {code} in {seconds * 1000:.0f} ms")
        if status != 422:
            problems.append(f"{name} answered {status}, not refused up front")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.light_latency", description=__doc__)
    parser.add_argument("--url", required=True, help="a running service on loopback")
    parser.add_argument("--pid", type=int, help="its process id, for RSS")
    add_options(parser)
    args = parser.parse_args(argv)
    return run(args.url, args.pid, args)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--light", type=int, default=8, help="light requests per phase")
    parser.add_argument("--heavy-clients", type=int, default=2)
    parser.add_argument(
        "--heavy-share", type=float, default=0.9, help="of the largest accepted SmoothGrad"
    )
    parser.add_argument("--heavy-max", type=int, default=16, help="heavy requests at most")


def run(url: str, pid: int | None, args: argparse.Namespace) -> int:
    if not url.startswith("http://127.0.0.1"):
        raise SystemExit("the light-latency figure runs against a loopback service only")
    figures = asyncio.run(
        measure(url, pid, args.light, args.heavy_clients, args.heavy_share, args.heavy_max)
    )
    problems = report(figures)
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
