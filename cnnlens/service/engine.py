"""The service's one engine: every route's model work on the model's worker, and the v1 bodies
built from its results off the event loop.

- `each`: closures `work(loaded)` run one at a time (compare, audits).
- `run_explain_batch`: POST /v1/explain. Requests that share model, methods, params, layer and
  target mode are stacked into one `run_methods` call (rows: each image repeated once per
  target), and the result is split back into per-request rows. Rendering is
  `cnnlens.explain`'s, at the image's own size, through the one body builder (`cnnlens.api`).
- `own_route(name)`: how an image, activation or weights method's own route checks, runs and
  renders its request (`OwnRoute`). Built-in methods with bodies of their own are in `_ROUTES`;
  any other registered method gets the generic `MethodResponse` for what it produces.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel

from cnnlens import render
from cnnlens.api import models as api
from cnnlens.api.bodies import explain_response, score_of
from cnnlens.api.codecs import b64, image_bytes, png_bytes
from cnnlens.errors import IncompatibleModelError, InvalidParamsError
from cnnlens.explain import (
    ClassScore,
    Explanation,
    explanations_from_run,
    input_region,
    predictions_of,
)
from cnnlens.methods.adversarial import AdversarialParams
from cnnlens.methods.adversarial_image import (
    AdversarialImage,
    adversarial_image,
    saved_output_params,
)
from cnnlens.methods.base import MethodOutput, MethodParams, get_method, row_extras
from cnnlens.methods.run import RunResult, run_methods
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.regions import Box
from cnnlens.service.abort import AbortSignal
from cnnlens.service.forms import parse_class

T = TypeVar("T")
MAX_TILES = 64

# Outputs with one row per sample (images from random starts and shared jitter, and weights,
# are not per-sample rows of a batch).
_BATCHABLE_OUTPUTS = ("map", "activations")


def each(loaded: LoadedModel, works: Sequence[Callable[[LoadedModel], T]]) -> list[T]:
    """Worker side of closure work: `work(loaded)` for each, one at a time."""
    return [work(loaded) for work in works]


@dataclass(frozen=True)
class ExplainPlan:
    """What every request of one batch shares (hashable: it is the batch key)."""

    model: str
    methods: tuple[tuple[str, str], ...]  # (method name, canonical params JSON)
    layer: str | None
    explicit_targets: bool
    region: Box | None = None  # segmentation: the region in input pixels (shared by the batch)

    @property
    def batchable(self) -> bool:
        return all(_batch_invariant(name) for name, _ in self.methods)


def _batch_invariant(name: str) -> bool:
    """Whether a method's row for one image is the same whatever else shares its batch.
    Seeded methods (SmoothGrad's noise, random starts) draw for the whole batch at once, so
    their rows depend on the batch's make-up: they run alone, reproducible per request."""
    method = get_method(name)
    return method.produces in _BATCHABLE_OUTPUTS and "seed" not in method.Params.model_fields


@dataclass
class ExplainInput:
    plan: ExplainPlan
    x: torch.Tensor  # (1, 3, H, W) preprocessed
    targets: list[int]  # empty: the top-1 prediction

    @property
    def rows(self) -> int:
        return max(1, len(self.targets))


@dataclass
class ExplainRows:
    """One request's share of a batched run."""

    logits: torch.Tensor  # (k, K)
    targets: torch.Tensor  # (k,)
    layer: str
    outputs: dict[str, MethodOutput]  # maps (k, C, H, W) or per-method shapes
    elapsed_ms: dict[str, float]
    batch_size: int  # requests in the batch this came from


def run_explain_batch(model: LoadedModel, inputs: Sequence[ExplainInput]) -> list[ExplainRows]:
    """One run_methods over every request's rows (on the model's worker thread)."""
    plan = inputs[0].plan
    x = torch.cat([item.x.expand(item.rows, -1, -1, -1) for item in inputs])  # (N, 3, H, W)
    targets = [t for item in inputs for t in item.targets] if plan.explicit_targets else None
    methods = [
        (name, get_method(name).Params.model_validate_json(params)) for name, params in plan.methods
    ]
    result = run_methods(model, x, methods, target=targets, layer=plan.layer, region=plan.region)
    total = x.shape[0]
    split: list[ExplainRows] = []
    start = 0
    for item in inputs:
        rows = slice(start, start + item.rows)
        outputs = {
            name: MethodOutput(
                output.map[rows] if output.map.shape[0] == total else output.map,
                row_extras(output.extras, rows, total),
            )
            for name, output in result.outputs.items()
        }
        share = item.rows / total
        split.append(
            ExplainRows(
                logits=result.logits[rows].float().cpu(),
                targets=result.targets[rows].cpu(),
                layer=result.layer,
                outputs=outputs,
                elapsed_ms={name: ms * share for name, ms in result.elapsed_ms.items()},
                batch_size=len(inputs),
            )
        )
        start += item.rows
    return split


def explanations_for(
    model: LoadedModel, picture: Image.Image, rows: ExplainRows, method_names: Sequence[str]
) -> tuple[list[Explanation], list[ClassScore]]:
    """The same Explanation objects `cnnlens.explain` builds, from one request's rows."""
    explanations = explanations_from_run(model, picture, rows, method_names)
    return explanations, predictions_of(model, rows.logits[:1], 5)


def input_box(model: LoadedModel, picture: Image.Image, box: Box) -> Box:
    """A region box in the upload's pixels -> input pixels (422 outside the image, on a
    classifier, or outside a center crop)."""
    region = input_region(model, picture, box)
    assert isinstance(region, tuple)
    return region


def render_explain_response(
    model: LoadedModel,
    picture: Image.Image,
    rows: ExplainRows,
    method_names: Sequence[str],
    outputs: Sequence[str],
    started: float,
    abort: AbortSignal | None = None,
    image_format: str = "png",
) -> api.ExplainResponse:
    """The body of POST /v1/explain (CPU work: run it on a thread); `abort` stops it
    between two explanations' encodings."""
    explanations, predictions = explanations_for(model, picture, rows, method_names)
    size = api.ImageSize(width=picture.width, height=picture.height)
    elapsed = (time.monotonic() - started) * 1000
    encoded = explanations if abort is None else abort.each(explanations)
    return explain_response(
        model.name, size, predictions, encoded, outputs, elapsed, model.was_training,
        image_format,
    )  # fmt: skip


def render_overlay_png(
    model: LoadedModel,
    picture: Image.Image,
    rows: ExplainRows,
    method_name: str,
    abort: AbortSignal | None = None,
    image_format: str = "png",
) -> tuple[bytes, Explanation]:
    """The first explanation's overlay PNG, or `image_format` (Accept: image/png), and that
    explanation (what the answer's headers name)."""
    explanations, _ = explanations_for(model, picture, rows, [method_name])
    if abort is not None:
        abort.check()
    return image_bytes(explanations[0].overlay(), image_format), explanations[0]


@dataclass
class SingleRun:
    """One method on one image (or on a blank input when the method needs no image)."""

    method: str
    params: MethodParams
    x: torch.Tensor | None  # (1, 3, H, W) preprocessed, or None: a zero image of input size
    target: int | None
    layer: str | None
    picture: Image.Image | None = None  # the upload, when the method takes one


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


Render = Callable[[LoadedModel, SingleRun, Any, float], tuple[BaseModel, bytes]]


def _checked(model: LoadedModel, run: SingleRun) -> SingleRun:
    return run


@dataclass(frozen=True)
class OwnRoute:
    """How the service answers a method's own route (`/v1/<name with - for _>`)."""

    response: type[BaseModel]
    render: Render  # (model, run, worker result, started) -> body and its main PNG
    check: Callable[[LoadedModel, SingleRun], SingleRun] = _checked  # 422s before any work
    work: Callable[[LoadedModel, Sequence[SingleRun]], list[Any]] = run_single  # worker side
    preprocess: bool = True  # whether `work` reads the preprocessed upload (`run.x`)


def _score(model: LoadedModel, index: int, probability: float) -> api.ClassScore:
    return score_of(index, model.label_of(index), probability)


def _elapsed(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


def _size(picture: Image.Image | None) -> api.ImageSize | None:
    return None if picture is None else api.ImageSize(width=picture.width, height=picture.height)


def _upload_size(run: SingleRun) -> api.ImageSize:
    """The size of the upload of a method that takes one."""
    size = _size(run.picture)
    assert size is not None, f"{run.method} runs on an uploaded image"
    return size


def _check_adversarial(model: LoadedModel, run: SingleRun) -> SingleRun:
    """A budget an 8-bit image can hold, and a known class to aim for."""
    params = saved_output_params(run.params)  # epsilon >= 1 level
    if params.adversarial_target is not None:
        parse_class(params.adversarial_target, model)  # an unknown class: 422 before any work
    return SingleRun(run.method, params, run.x, run.target, run.layer, run.picture)


def run_adversarial(model: LoadedModel, runs: Sequence[SingleRun]) -> list[AdversarialImage]:
    """Worker side: the saved adversarial image of each run (its upload, params and target)."""
    results = []
    for run in runs:
        assert run.picture is not None and isinstance(run.params, AdversarialParams)
        results.append(adversarial_image(model, run.picture, run.params, run.target))
    return results


def render_adversarial(
    model: LoadedModel, run: SingleRun, result: AdversarialImage, started: float
) -> tuple[api.AdversarialResponse, bytes]:
    """JSON body and the adversarial PNG (at `output_size`, the upload's by default)."""
    body = api.AdversarialResponse(
        model=model.name,
        image=_upload_size(run),
        **result.summary(),
        adversarial_png=b64(result.png),
        perturbation_png=b64(png_bytes(result.perturbation_image())),
        elapsed_ms=_elapsed(started),
    )
    return body, result.png


def _check_activation_max(model: LoadedModel, run: SingleRun) -> SingleRun:
    """A class or a channel to maximize; a channel of a (C, h, w) layer, not a crash."""
    channel = getattr(run.params, "channel", None)
    if run.target is None and channel is None:
        raise InvalidParamsError("give a target class, or params.channel to maximize a channel")
    if channel is not None:
        layer = run.layer or model.default_layer
        info = model.layers.get(layer)
        shape = None if info is None else info.output_shape
        if shape is None or len(shape) != 3:
            raise IncompatibleModelError(
                f"maximizing a channel needs a layer with (C, h, w) output; {layer!r} has {shape}"
            )
    return run


def render_activation_max(
    model: LoadedModel, run: SingleRun, result: RunResult, started: float
) -> tuple[api.ActivationMaxResponse, bytes]:
    output = result.outputs["activation_max"]
    extras = output.extras
    if not (torch.isfinite(output.map).all() and math.isfinite(float(extras["score"][0]))):
        raise InvalidParamsError(
            "activation maximization diverged (non-finite values); lower params.lr or params.l2"
        )
    png = png_bytes(model.preprocessing.to_image(output.map[0]))
    target = int(result.targets[0])
    channel = getattr(run.params, "channel", None)
    body = api.ActivationMaxResponse(
        model=model.name,
        target=_score(model, target, float(extras["probability"][0]))
        if run.target is not None or channel is None
        else None,
        layer=result.layer if channel is not None else None,
        channel=channel,
        score=float(extras["score"][0]),
        top1=_score(model, int(extras["top1_class"][0]), float(extras["top1_probability"][0])),
        image_png=b64(png),
        elapsed_ms=_elapsed(started),
    )
    return body, png


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
        image=_upload_size(run),
        layer=result.layer,
        shape=list(activations.shape),
        top_channels=[
            api.ChannelScore(channel=c, mean=float(means[c]), max=float(activations[c].max()))
            for c in top
        ],
        grid_png=b64(png),
        elapsed_ms=_elapsed(started),
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
        elapsed_ms=_elapsed(started),
    )
    return body, png


def render_method(
    model: LoadedModel, run: SingleRun, result: RunResult, started: float
) -> tuple[api.MethodResponse, bytes]:
    """Any other method's result: a 3-channel image as pixels, else the channels' mean."""
    raw = result.outputs[run.method].map[0].float().cpu()
    if get_method(run.method).produces == "image" and raw.ndim == 3 and raw.shape[0] == 3:
        picture = model.preprocessing.to_image(raw)
    else:
        plane = raw if raw.ndim == 2 else raw.reshape(-1, *raw.shape[-2:]).mean(dim=0)
        picture = render.heatmap_image(plane, "viridis")
    png = png_bytes(picture)
    probabilities = torch.softmax(result.logits[0].float(), dim=0)
    target = int(result.targets[0])
    body = api.MethodResponse(
        model=model.name,
        method=run.method,
        image=_size(run.picture),
        layer=result.layer,
        target=_score(model, target, float(probabilities[target]))
        if get_method(run.method).uses_target
        else None,
        shape=list(raw.shape),
        image_png=b64(png),
        elapsed_ms=_elapsed(started),
    )
    return body, png


_ROUTES = {
    "adversarial": OwnRoute(
        api.AdversarialResponse,
        render_adversarial,
        check=_check_adversarial,
        work=run_adversarial,
        preprocess=False,
    ),
    "activation_max": OwnRoute(
        api.ActivationMaxResponse, render_activation_max, check=_check_activation_max
    ),
    "feature_maps": OwnRoute(api.FeatureMapsResponse, render_feature_maps),
    "filters": OwnRoute(api.FiltersResponse, render_filters),
}
_GENERIC = OwnRoute(api.MethodResponse, render_method)


def own_route(name: str) -> OwnRoute:
    """How the route of the (non-map) method `name` is answered."""
    return _ROUTES.get(name, _GENERIC)
