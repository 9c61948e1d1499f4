"""The single-method routes' work: adversarial inputs, activation maximization, feature maps
and filters. `run_single` runs on the model's worker; the `render_*` functions on a thread."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnnlens import render
from cnnlens.errors import InvalidParamsError
from cnnlens.methods.adversarial_image import AdversarialImage, adversarial_image
from cnnlens.methods.base import MethodOutput, MethodParams
from cnnlens.methods.run import RunResult, run_methods
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.explain_engine import b64_png, png_bytes

MAX_TILES = 64


@dataclass
class SingleRun:
    """One method on one image (or on a blank input when the method needs no image)."""

    method: str
    params: MethodParams
    x: torch.Tensor | None  # (1, 3, H, W) preprocessed, or None: a zero image of input size
    target: int | None
    layer: str | None


def run_single(model: LoadedModel, runs: Sequence[SingleRun]) -> list[RunResult]:
    """Worker side: never batched (random starts and jitter depend on the batch)."""
    results = []
    for run in runs:
        x = run.x if run.x is not None else torch.zeros(1, 3, *model.input_size)
        target = None if run.target is None else [run.target]
        results.append(
            run_methods(model, x, [(run.method, run.params)], target=target, layer=run.layer)
        )
    return results


def _score(model: LoadedModel, index: int, probability: float) -> dict[str, Any]:
    value = probability if math.isfinite(probability) else 0.0
    return {"index": index, "label": model.label_of(index), "probability": value}


def _elapsed(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


def run_adversarial(
    model: LoadedModel, runs: Sequence[tuple[Image.Image, MethodParams, int | None]]
) -> list[AdversarialImage]:
    """Worker side: the saved adversarial image of each (picture, params, target)."""
    return [adversarial_image(model, picture, params, target) for picture, params, target in runs]


def render_adversarial(
    model: LoadedModel, picture: Image.Image, result: AdversarialImage, started: float
) -> tuple[dict[str, Any], bytes]:
    """JSON body and the adversarial PNG (at `output_size`, the upload's by default)."""
    body: dict[str, Any] = {
        "model": model.name,
        "image": {"width": picture.width, "height": picture.height},
        **result.summary(),
        "adversarial_png": b64_png(result.png),
        "perturbation_png": b64_png(png_bytes(result.perturbation_image())),
        "elapsed_ms": _elapsed(started),
    }
    return body, result.png


def render_activation_max(
    model: LoadedModel,
    result: RunResult,
    explicit_target: bool,
    channel: int | None,
    started: float,
) -> tuple[dict[str, Any], bytes]:
    output = result.outputs["activation_max"]
    extras = output.extras
    if not (torch.isfinite(output.map).all() and math.isfinite(float(extras["score"][0]))):
        raise InvalidParamsError(
            "activation maximization diverged (non-finite values); lower params.lr or params.l2"
        )
    png = png_bytes(model.preprocessing.to_image(output.map[0]))
    target = int(result.targets[0])
    body = {
        "model": model.name,
        "target": _score(model, target, float(extras["probability"][0]))
        if explicit_target or channel is None
        else None,
        "layer": result.layer if channel is not None else None,
        "channel": channel,
        "score": float(extras["score"][0]),
        "top1": _score(model, int(extras["top1_class"][0]), float(extras["top1_probability"][0])),
        "image_png": b64_png(png),
        "elapsed_ms": _elapsed(started),
    }
    return body, png


def _tile(image: Image.Image, size: int) -> Image.Image:
    """Small maps and filters upscaled without blurring their cells."""
    return image.resize((size, size), resample=Image.Resampling.NEAREST)


def _sheet(tiles: list[Image.Image], titles: list[str], tile_size: int) -> bytes:
    columns = max(1, math.ceil(math.sqrt(len(tiles))))
    scaled = [_tile(tile, tile_size) for tile in tiles]
    return png_bytes(render.grid(scaled, titles, columns=columns, tile_size=tile_size))


def render_feature_maps(
    model: LoadedModel, picture: Image.Image, result: RunResult, started: float
) -> tuple[dict[str, Any], bytes]:
    output: MethodOutput = result.outputs["feature_maps"]
    activations = output.extras["activations"][0].float().cpu()  # (C, h, w)
    top = [int(c) for c in output.extras["top_channels"][0]]
    means = output.extras["channel_means"][0].float().cpu()
    shown = top[:MAX_TILES]
    tiles = [render.heatmap_image(activations[c], "viridis") for c in shown]
    png = _sheet(tiles, [f"ch {c}" for c in shown], tile_size=112)
    body = {
        "model": model.name,
        "image": {"width": picture.width, "height": picture.height},
        "layer": result.layer,
        "shape": list(activations.shape),
        "top_channels": [
            {
                "channel": c,
                "mean": float(means[c]),
                "max": float(activations[c].max()),
            }
            for c in top
        ],
        "grid_png": b64_png(png),
        "elapsed_ms": _elapsed(started),
    }
    return body, png


def render_filters(
    model: LoadedModel, result: RunResult, started: float
) -> tuple[dict[str, Any], bytes]:
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
    body = {
        "model": model.name,
        "layer": str(output.extras.get("layer", result.layer)),
        "shape": list(weights.shape),
        "channels": channels,
        "tiles_png": b64_png(png),
        "elapsed_ms": _elapsed(started),
    }
    return body, png
