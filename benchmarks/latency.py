"""Figure 8: POST /v1/explain with grad_cam on a 12-megapixel JPEG over one bare forward.

The app runs in this process (starlette's TestClient over `create_app` with the default
model); the breakdown times the route's stages one by one with the same library calls.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from cnnlens import render
from cnnlens.api.codecs import png_bytes
from cnnlens.imageio import decode_image
from cnnlens.methods.run import run_methods
from cnnlens.models import LoadedModel

SIZE = (4000, 3000)  # 12 megapixels


def big_jpeg() -> bytes:
    """skimage's astronaut upscaled to 4000 x 3000, JPEG quality 90."""
    from skimage import data

    picture = Image.fromarray(data.astronaut()).resize(SIZE, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _median_ms(call: Callable[[], Any], repeats: int) -> float:
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations)


def stages(loaded: LoadedModel, data: bytes, repeats: int) -> dict[str, float]:
    """Median ms of each stage of the explain route, called as the route calls them."""
    picture = decode_image(data)
    x = loaded.preprocessing(picture)
    result = run_methods(loaded, x, [("grad_cam", {})])
    raw = result.outputs["grad_cam"].map[0]  # (1, h, w) at the model's input size
    full = render.resize_map(raw, (picture.height, picture.width))
    heat = render.colorize(render.normalize_map(full))
    over = render.overlay(picture, full, heat=heat)
    return {
        "decode": _median_ms(lambda: decode_image(data), repeats),
        "preprocess": _median_ms(lambda: loaded.preprocessing(picture), repeats),
        "forward/backward": _median_ms(lambda: run_methods(loaded, x, [("grad_cam", {})]), repeats),
        "upsampling": _median_ms(
            lambda: render.resize_map(raw, (picture.height, picture.width)), repeats
        ),
        # one normalization + colour map shared by the heatmap and the overlay's blend
        "colormap": _median_ms(
            lambda: render.overlay(picture, full, heat=render.colorize(render.normalize_map(full))),
            repeats,
        ),
        "PNG encode": _median_ms(
            lambda: (png_bytes(Image.fromarray(heat)), png_bytes(over)), repeats
        ),
    }


def end_to_end(
    loaded: LoadedModel, data: bytes, forward: Callable[[], Any], repeats: int
) -> tuple[float, float]:
    """Median ms of the POST and of one bare forward, measured in turn."""
    from starlette.testclient import TestClient

    from cnnlens.service.app import create_app
    from cnnlens.service.settings import Settings

    settings = Settings.model_validate({})
    app = create_app(settings, models={settings.default_model: loaded})
    posts, forwards = [], []
    with TestClient(app) as client:

        def post() -> None:
            response = client.post(
                "/v1/explain",
                files={"image": ("big.jpg", data, "image/jpeg")},
                data={"method": "grad_cam"},
            )
            response.raise_for_status()

        for _ in range(600):  # the app warms its model on a thread first
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.5)
        post()  # warm-up
        forward()
        for _ in range(repeats):
            for call, into in ((post, posts), (forward, forwards)):
                started = time.perf_counter()
                call()
                into.append((time.perf_counter() - started) * 1000)
    return statistics.median(posts), statistics.median(forwards)


def bare_forward(loaded: LoadedModel, size: int) -> Callable[[], torch.Tensor]:
    x = torch.zeros(1, 3, size, size)

    def call() -> torch.Tensor:
        with torch.no_grad():
            return loaded.module(x)

    return call
