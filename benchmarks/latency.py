"""Figure 8: POST /v1/explain with grad_cam on a 12-megapixel JPEG over one bare forward.

Each request variant is timed twice: in process (starlette's TestClient over `create_app`
with the default model) and over HTTP on 127.0.0.1 (`python -m cnnlens.service` in a
subprocess, httpx here). The breakdown times the route's stages one by one with the same
library calls.
"""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import cnnlens
from cnnlens import render
from cnnlens.api.codecs import IMAGE_FORMATS, image_bytes
from cnnlens.explain import explanations_from_run
from cnnlens.imageio import decode_image, fit_within
from cnnlens.methods.run import run_methods
from cnnlens.models import LoadedModel

SIZE = (4000, 3000)  # 12 megapixels
MAX_SIDE = 1024
# The request variants timed end to end: form fields of POST /v1/explain.
DEFAULT = "default (JPEG overlay like the upload, palette PNG heatmap)"
SMALL_JPEG = f"max_side={MAX_SIDE}, jpeg"
VARIANTS: dict[str, dict[str, str]] = {
    DEFAULT: {},
    "overlay_format=png": {"overlay_format": "png"},
    "overlay_format=webp": {"overlay_format": "webp"},
    SMALL_JPEG: {"max_side": str(MAX_SIDE), "overlay_format": "jpeg"},
    f"max_side={MAX_SIDE}, png": {"max_side": str(MAX_SIDE), "overlay_format": "png"},
    "max_side=512, jpeg": {"max_side": "512", "overlay_format": "jpeg"},
}


def big_jpeg() -> bytes:
    """skimage's astronaut upscaled to 4000 x 3000, JPEG quality 90."""
    from skimage import data

    picture = Image.fromarray(data.astronaut()).resize(SIZE, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def median_ms(
    call: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Median wall time (or `clock`'s, e.g. `time.process_time` for CPU time) of `repeats`
    calls after one warm-up (oneDNN's first call for a new thread and shape costs several
    forwards)."""
    call()
    durations = []
    for _ in range(repeats):
        started = clock()
        call()
        durations.append((clock() - started) * 1000)
    return statistics.median(durations)


def stages(loaded: LoadedModel, data: bytes, repeats: int) -> dict[str, float]:
    """Median ms of each stage of the default explain route, called as the route calls them
    (the heatmap and the overlay share the normalized map's colour bins)."""
    picture = decode_image(data)
    x = loaded.preprocessing(picture)
    result = run_methods(loaded, x, [("grad_cam", {})])

    def explanation() -> Any:
        (item,) = explanations_from_run(loaded, picture, result, ["grad_cam"])
        return item

    def colour() -> Any:
        item = explanation()
        item._colormap("jet")
        return item

    coloured = colour()
    overlay = coloured.overlay_pixels()
    return {
        "decode": median_ms(lambda: decode_image(data), repeats),
        "preprocess": median_ms(lambda: loaded.preprocessing(picture), repeats),
        "forward/backward": median_ms(lambda: run_methods(loaded, x, [("grad_cam", {})]), repeats),
        "upsampling": median_ms(explanation, repeats),
        "normalize + colour table": median_ms(colour, repeats),
        "blend": median_ms(coloured.overlay_pixels, repeats),
        "heatmap PNG": median_ms(coloured.heatmap_png, repeats),
        "overlay JPEG": median_ms(lambda: image_bytes(overlay, "jpeg"), repeats),
    }


def levers(loaded: LoadedModel, data: bytes, repeats: int) -> dict[str, float]:
    """Median ms of the alternatives to the default stages (same inputs)."""
    picture = decode_image(data)
    overlay = np.asarray(picture)
    small = fit_within(decode_image(data, draft=MAX_SIDE), MAX_SIDE)
    small_overlay = np.asarray(small)
    return {
        "decode, draft for 224 px": median_ms(lambda: decode_image(data, draft=224), repeats),
        f"decode, draft for {MAX_SIDE} px + fit": median_ms(
            lambda: fit_within(decode_image(data, draft=MAX_SIDE), MAX_SIDE), repeats
        ),
        "preprocess of the 224 px draft": median_ms(
            lambda: loaded.preprocessing(decode_image(data, draft=224)), repeats
        ),
        **{
            f"encode a 12 MP overlay as {name}": median_ms(
                lambda name=name: image_bytes(overlay, name), repeats
            )
            for name in IMAGE_FORMATS
        },
        f"encode a {small.width}x{small.height} overlay as jpeg": median_ms(
            lambda: image_bytes(small_overlay, "jpeg"), repeats
        ),
        "normalize a 12 MP map": median_ms(
            lambda: render.normalize_map(np.asarray(overlay[..., 0], np.float32)), repeats
        ),
    }


@dataclass
class Timings:
    """Medians of each variant's POST and of the bare forward timed between them; over HTTP
    also the CPU time the service's process spent on each POST (all its threads) and the
    forward's: a measure that load on other processes does not inflate."""

    post_ms: dict[str, float]
    forward_ms: float
    post_cpu_ms: dict[str, float] = field(default_factory=dict)
    forward_cpu_ms: float = 0.0


def _posts(
    post: Callable[[dict[str, str]], None],
    forward: Callable[[], Any],
    repeats: int,
    variants: dict[str, dict[str, str]],
    server_cpu_ms: Callable[[], float] | None = None,
) -> Timings:
    """Each variant's POST and the bare forward, measured in turn (one round: a forward,
    then each variant once), so that load drifts hit them alike."""
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    forwards: list[float] = []
    forward_cpus: list[float] = []
    for fields in variants.values():
        post(fields)  # warm-up
    forward()
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        forward()
        forwards.append((time.perf_counter() - started) * 1000)
        forward_cpus.append((time.process_time() - cpu) * 1000)
        for name, fields in variants.items():
            spent = server_cpu_ms() if server_cpu_ms else 0.0
            started = time.perf_counter()
            post(fields)
            walls[name].append((time.perf_counter() - started) * 1000)
            if server_cpu_ms:
                cpus[name].append(server_cpu_ms() - spent)
    return Timings(
        {name: statistics.median(ms) for name, ms in walls.items()},
        statistics.median(forwards),
        {name: statistics.median(ms) for name, ms in cpus.items() if ms},
        statistics.median(forward_cpus),
    )


def process_cpu_ms(pid: int) -> float:
    """CPU time (user + system, all threads) a process has spent so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def end_to_end(
    loaded: LoadedModel,
    data: bytes,
    forward: Callable[[], Any],
    repeats: int,
    variants: dict[str, dict[str, str]] | None = None,
) -> Timings:
    """In process: each variant's POST through starlette's TestClient, and the forward."""
    from starlette.testclient import TestClient

    from cnnlens.service.app import create_app
    from cnnlens.service.settings import Settings

    settings = Settings.model_validate({})
    app = create_app(settings, models={settings.default_model: loaded})
    with TestClient(app, base_url="http://localhost") as client:  # a loopback Host name
        for _ in range(600):  # the app warms its model on a thread first
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.5)
        return _posts(poster(client, data), forward, repeats, variants or VARIANTS)


@contextmanager
def service_on_loopback(tree: str | None = None) -> Iterator[tuple[str, int]]:
    """`python -m cnnlens.service` of the checkout `tree` (default: this one) with its
    default settings on a free 127.0.0.1 port: its URL and process id."""
    from benchmarks._service_load import free_port, start_subprocess, wait_ready

    port = free_port()
    tree = tree or str(Path(cnnlens.__file__).resolve().parents[1])
    process = start_subprocess(port, {"PYTHONPATH": tree}, cwd=tree)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=600, process=process)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


def over_http(
    data: bytes,
    forward: Callable[[], Any],
    repeats: int,
    variants: dict[str, dict[str, str]] | None = None,
) -> Timings:
    """Over HTTP on loopback: each variant's POST to the service in its own process (body
    read and parsed here, as a client does), and the forward in this one."""
    import httpx

    with service_on_loopback() as (url, pid), httpx.Client(base_url=url, timeout=300) as client:
        post = poster(client, data)
        return _posts(post, forward, repeats, variants or VARIANTS, lambda: process_cpu_ms(pid))


def poster(client: Any, data: bytes) -> Callable[[dict[str, str]], None]:
    """POST /v1/explain of `data` with grad_cam and the variant's fields; the body is read
    and parsed, as a client does (an httpx client, starlette's TestClient among them)."""

    def post(fields: dict[str, str]) -> None:
        response = client.post(
            "/v1/explain",
            files={"image": ("big.jpg", data, "image/jpeg")},
            data={"method": "grad_cam", **fields},
        )
        response.raise_for_status()
        response.json()

    return post


def bare_forward(loaded: LoadedModel, size: int) -> Callable[[], torch.Tensor]:
    x = torch.zeros(1, 3, size, size)

    def call() -> torch.Tensor:
        with torch.no_grad():
            return loaded.module(x)

    return call
