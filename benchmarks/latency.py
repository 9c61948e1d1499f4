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

import numpy as np
import torch
from PIL import Image

from cnnlens import render
from cnnlens.api.codecs import IMAGE_FORMATS, image_bytes, png_bytes
from cnnlens.imageio import decode_image, fit_within
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
    """Median wall time of `repeats` calls after one warm-up (oneDNN's first call for a new
    thread and shape costs several forwards)."""
    call()
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

    def colour() -> tuple[Image.Image, Image.Image]:
        """One normalization shared by the heatmap (a palette image, as the route sends it)
        and the overlay's colour map and blend."""
        bins = render.colour_bins(render.normalize_map(full))
        heat = render.colour_lookup(bins)
        return render.palette_heatmap(bins), render.overlay(picture, full, heat=heat)

    heatmap, over = colour()
    return {
        "decode": _median_ms(lambda: decode_image(data), repeats),
        "preprocess": _median_ms(lambda: loaded.preprocessing(picture), repeats),
        "forward/backward": _median_ms(lambda: run_methods(loaded, x, [("grad_cam", {})]), repeats),
        "upsampling": _median_ms(
            lambda: render.resize_map(raw, (picture.height, picture.width)), repeats
        ),
        "colormap": _median_ms(colour, repeats),
        "PNG encode": _median_ms(lambda: (png_bytes(heatmap), png_bytes(over)), repeats),
    }


def levers(loaded: LoadedModel, data: bytes, repeats: int) -> dict[str, float]:
    """Median ms of the cheaper alternatives to the default stages (same inputs)."""
    picture = decode_image(data)
    heat = Image.fromarray(render.colorize(render.normalize_map(np.random.rand(300, 400))))
    big_heat = heat.resize(picture.size)
    small = fit_within(decode_image(data, draft=MAX_SIDE), MAX_SIDE)
    return {
        "decode, draft for 224 px": _median_ms(lambda: decode_image(data, draft=224), repeats),
        f"decode, draft for {MAX_SIDE} px + fit": _median_ms(
            lambda: fit_within(decode_image(data, draft=MAX_SIDE), MAX_SIDE), repeats
        ),
        "preprocess of the 224 px draft": _median_ms(
            lambda: loaded.preprocessing(decode_image(data, draft=224)), repeats
        ),
        **{
            f"encode 2 x 12 MP {name}": _median_ms(
                lambda name=name: (image_bytes(big_heat, name), image_bytes(picture, name)),
                repeats,
            )
            for name in IMAGE_FORMATS
        },
        f"encode 2 x {small.width}x{small.height} png": _median_ms(
            lambda: (image_bytes(heat.resize(small.size)), image_bytes(small)), repeats
        ),
    }


# The request variants timed end to end: form fields of POST /v1/explain.
MAX_SIDE = 1024
VARIANTS: dict[str, dict[str, str]] = {
    "default (png, photo size)": {},
    "overlay_format=jpeg": {"overlay_format": "jpeg"},
    "overlay_format=webp": {"overlay_format": "webp"},
    f"max_side={MAX_SIDE}": {"max_side": str(MAX_SIDE)},
    f"max_side={MAX_SIDE}, jpeg": {"max_side": str(MAX_SIDE), "overlay_format": "jpeg"},
    "max_side=512, jpeg": {"max_side": "512", "overlay_format": "jpeg"},
}


def end_to_end(
    loaded: LoadedModel,
    data: bytes,
    forward: Callable[[], Any],
    repeats: int,
    variants: dict[str, dict[str, str]] | None = None,
) -> tuple[dict[str, float], float]:
    """Median ms of each variant's POST and of one bare forward, measured in turn (one round:
    a forward, then each variant once), so that load drifts hit them alike."""
    from starlette.testclient import TestClient

    from cnnlens.service.app import create_app
    from cnnlens.service.settings import Settings

    variants = VARIANTS if variants is None else variants
    settings = Settings.model_validate({})
    app = create_app(settings, models={settings.default_model: loaded})
    posts: dict[str, list[float]] = {name: [] for name in variants}
    forwards: list[float] = []
    with TestClient(app) as client:

        def post(fields: dict[str, str]) -> None:
            response = client.post(
                "/v1/explain",
                files={"image": ("big.jpg", data, "image/jpeg")},
                data={"method": "grad_cam", **fields},
            )
            response.raise_for_status()

        for _ in range(600):  # the app warms its model on a thread first
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.5)
        for fields in variants.values():
            post(fields)  # warm-up
        forward()
        for _ in range(repeats):
            started = time.perf_counter()
            forward()
            forwards.append((time.perf_counter() - started) * 1000)
            for name, fields in variants.items():
                started = time.perf_counter()
                post(fields)
                posts[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(ms) for name, ms in posts.items()}, statistics.median(forwards)


def bare_forward(loaded: LoadedModel, size: int) -> Callable[[], torch.Tensor]:
    x = torch.zeros(1, 3, size, size)

    def call() -> torch.Tensor:
        with torch.no_grad():
            return loaded.module(x)

    return call
