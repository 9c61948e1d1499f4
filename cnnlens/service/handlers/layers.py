"""The handlers of the methods that show a layer: its feature maps (activations of the upload)
and its filters (weights), as contact sheets of tiles."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from cnnlens import render
from cnnlens.api import models as api
from cnnlens.api.codecs import b64
from cnnlens.api.png import png_bytes
from cnnlens.methods.base import MethodOutput
from cnnlens.methods.run import RunResult
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.handlers.single import SingleRun, elapsed_ms, upload_size

MAX_TILES = 64


def _tile(image: Image.Image, size: int) -> Image.Image:
    """Small maps and filters upscaled without blurring their cells."""
    return image.resize((size, size), resample=Image.Resampling.NEAREST)


def _sheet(tiles: list[Image.Image], titles: list[str], tile_size: int) -> bytes:
    columns = max(1, math.ceil(math.sqrt(len(tiles))))
    scaled = [_tile(tile, tile_size) for tile in tiles]
    return png_bytes(render.grid(scaled, titles, columns=columns, tile_size=tile_size))


def render_feature_maps(
    model: LoadedModel, run: SingleRun, result: RunResult, started: float
) -> tuple[api.FeatureMapsResponse, bytes]:
    output: MethodOutput = result.outputs["feature_maps"]
    activations = output.extras["activations"][0].float().cpu()  # (C, h, w)
    top = [int(c) for c in output.extras["top_channels"][0]]
    means = output.extras["channel_means"][0].float().cpu()
    shown = top[:MAX_TILES]
    tiles = [render.heatmap_image(activations[c], "viridis") for c in shown]
    png = _sheet(tiles, [f"ch {c}" for c in shown], tile_size=112)
    body = api.FeatureMapsResponse(
        model=model.name,
        image=upload_size(run),
        layer=result.layer,
        shape=list(activations.shape),
        top_channels=[
            api.ChannelScore(channel=c, mean=float(means[c]), max=float(activations[c].max()))
            for c in top
        ],
        grid_png=b64(png),
        elapsed_ms=elapsed_ms(started),
    )
    return body, png


def render_filters(
    model: LoadedModel, run: SingleRun, result: RunResult, started: float
) -> tuple[api.FiltersResponse, bytes]:
    output = result.outputs["filters"]
    weights = output.map.float().cpu()  # (C_out, C_in / groups, k, k)
    rgb = output.extras.get("rgb_tiles")
    channels = list(range(min(MAX_TILES, weights.shape[0])))
    tiles = []
    for c in channels:
        if rgb is not None:
            pixels = rgb[c].float().cpu().permute(1, 2, 0).numpy()  # (k, k, 3) in [0, 1]
            tiles.append(Image.fromarray((pixels * 255 + 0.5).astype(np.uint8)))
        else:  # deeper filters: the mean over input channels, signed, zero = neutral
            tiles.append(render.heatmap_image(weights[c].mean(dim=0), "coolwarm"))
    png = _sheet(tiles, [str(c) for c in channels], tile_size=64)
    body = api.FiltersResponse(
        model=model.name,
        layer=str(output.extras.get("layer", result.layer)),
        shape=list(weights.shape),
        channels=channels,
        tiles_png=b64(png),
        elapsed_ms=elapsed_ms(started),
    )
    return body, png
