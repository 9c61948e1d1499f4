"""POST /v1/compare: several methods on one or more images, side by side, with the maps'
pairwise agreement and faithfulness scores (deletion / insertion AUC, model randomization)."""

from __future__ import annotations

import base64
import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from cnnlens.api.forms import COMPARE_METHODS, parse_box, split_list
from cnnlens.api.models import CompareResponse
from cnnlens.compare.engine import Comparison, check_methods, compare
from cnnlens.compare.options import parse_options
from cnnlens.errors import InvalidParamsError, TargetError
from cnnlens.explain import input_region
from cnnlens.methods.base import get_method
from cnnlens.models.loaded import LoadedModel
from cnnlens.render import to_png
from cnnlens.service.budget import compare_plan
from cnnlens.service.deps import (
    DeadlineDep,
    SettingsDep,
    StateDep,
    image_headers,
    read_image,
    render_until,
    wants_png,
)
from cnnlens.service.engine import each
from cnnlens.service.forms import (
    parse_layer,
    parse_params_by_method,
    parse_targets,
    single_valued_fields,
)
from cnnlens.service.routers.explain import ERRORS

router = APIRouter(
    prefix="/v1",
    tags=["compare"],
    dependencies=[Depends(single_valued_fields(("image", "method", "target")))],
)

MAX_IMAGES = 8  # per request: every image costs (steps + 1) x 2 forwards per method


OptionField = Annotated[str | None, Form()]


@router.post(
    "/compare",
    response_model=CompareResponse,
    responses={
        **ERRORS,
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "JSON, or with `Accept: image/png` the side-by-side grid PNG",
        },
    },
)
async def compare_route(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    deadline: DeadlineDep,
    image: Annotated[
        list[UploadFile], File(description=f"one to {MAX_IMAGES} images (repeat the field)")
    ],
    model: Annotated[str | None, Form(description="a served model; default: the default")] = None,
    method: Annotated[
        list[str] | None,
        Form(
            description=f"methods, repeated or comma-separated; default {','.join(COMPARE_METHODS)}"
        ),
    ] = None,
    target: Annotated[
        list[str] | None, Form(description="one class index or label for every image; top-1")
    ] = None,
    layer: Annotated[str | None, Form(description="layer for layer-based methods")] = None,
    params: Annotated[str | None, Form(description="JSON object keyed by method")] = None,
    region: Annotated[
        str | None,
        Form(
            description="segmentation models: x0,y0,x1,y1 in each image's pixels, the region "
            "the target's score is taken over; default: the pixels predicted as the target"
        ),
    ] = None,
    scores: Annotated[
        str | None,
        Form(
            description="comma list of deletion, insertion, randomization; default "
            "deletion,insertion; none: agreement only"
        ),
    ] = None,
    steps: Annotated[str | None, Form(description="points per perturbation curve (16)")] = None,
    baseline: Annotated[str | None, Form(description="rise (default), mean or blur")] = None,
    top_k: Annotated[str | None, Form(description="share of pixels for top-k IoU (0.1)")] = None,
    stages: Annotated[str | None, Form(description="blocks randomized, top down (3)")] = None,
    seed: Annotated[str | None, Form(description="randomization / tie-break seed (0)")] = None,
    ssim: Annotated[str | None, Form(description="true: also SSIM under randomization")] = None,
    shared_scale: Annotated[str | None, Form(description="true: one colour scale")] = None,
    random_baseline: Annotated[
        str | None, Form(description="true: also score a seeded random map")
    ] = None,
) -> Response | CompareResponse:
    started = time.monotonic()
    loaded = state.model(model)
    methods = check_methods(split_list(method) or list(COMPARE_METHODS))
    layer_name = parse_layer(layer, loaded)
    explained = _one_target(target, loaded, settings.limits.max_targets)
    params_by_method = parse_params_by_method(params, [get_method(name) for name in methods])
    box = parse_box(region)
    options = parse_options(
        scores=_score_list(scores),
        steps=steps, baseline=baseline, top_k=top_k, stages=stages, seed=seed, ssim=ssim,
        shared_scale=shared_scale, random_baseline=random_baseline,
    )  # fmt: skip
    if not 1 <= len(image) <= MAX_IMAGES:
        raise InvalidParamsError(f"compare takes 1 to {MAX_IMAGES} images, got {len(image)}")
    cost = state.admit(
        loaded.name, compare_plan(methods, params_by_method, len(image), options, layer_name)
    )
    pictures = [await read_image(upload, settings) for upload in image]
    for picture in pictures:  # a region outside an image, or on a classifier: 422 before work
        input_region(loaded, picture, box)
    names = [upload.filename or f"image-{i}" for i, upload in enumerate(image)]
    plain_params = {name: value.model_dump() for name, value in params_by_method.items()}

    def work(model_: LoadedModel) -> Comparison:
        return compare(
            model_, pictures, methods, target=explained, layer=layer_name,
            params=plain_params, options=options, names=names, region=box,
        )  # fmt: skip

    comparison = await state.run(loaded.name, each, work, cost=cost, deadline=deadline)
    grid = await render_until(deadline, lambda abort: to_png(comparison.grid()))
    if wants_png(request):
        headers = image_headers(comparison.methods, comparison.images[0].target)
        return Response(grid, media_type="image/png", headers=headers)
    body = comparison.to_json()
    body["grid_png"] = base64.b64encode(grid).decode("ascii")
    body["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
    return CompareResponse.model_validate(body)


def _score_list(value: str | None) -> list[str] | None:
    """Comma list of scores; "none" (or an empty field) asks for agreement only."""
    if value is None:
        return None
    names = split_list([value])
    return [] if names in ([], ["none"]) else names


def _one_target(values: list[str] | None, loaded: LoadedModel, limit: int) -> int | None:
    targets = parse_targets(values, loaded, limit)
    if len(targets) > 1:
        raise TargetError("compare explains one target (the same for every image)")
    return targets[0] if targets else None
