"""POST /v1/compare: several methods on one or more images, side by side, with the maps'
pairwise agreement and faithfulness scores (deletion / insertion AUC, model randomization)."""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cnnlens.api.models import CompareResponse
from cnnlens.compare.engine import Comparison, compare
from cnnlens.models.loaded import LoadedModel
from cnnlens.render import to_png
from cnnlens.service.deps import (
    DeadlineDep,
    SettingsDep,
    StateDep,
    image_headers,
    read_image,
    render_until,
    wants_png,
)
from cnnlens.service.forms import single_valued_fields
from cnnlens.service.requests import CompareDep, input_box
from cnnlens.service.routers.explain import ERRORS
from cnnlens.service.runtime.budget import compare_plan
from cnnlens.service.runtime.worker import each

router = APIRouter(
    prefix="/v1",
    tags=["compare"],
    dependencies=[Depends(single_valued_fields(("image", "method", "target")))],
)
PNG_ANSWER = {
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    "description": "JSON, or with `Accept: image/png` the side-by-side grid PNG",
}


@router.post("/compare", response_model=CompareResponse, responses={**ERRORS, 200: PNG_ANSWER})
async def compare_route(
    http: Request,
    request: CompareDep,
    state: StateDep,
    settings: SettingsDep,
    deadline: DeadlineDep,
) -> Response | CompareResponse:
    started = time.monotonic()
    model, plan = request.model, request.plan
    cost = state.admit(model, compare_plan(plan, len(request.images), request.options))
    pictures = [await read_image(upload, settings) for upload in request.images]
    for picture in pictures:  # a region outside an image, or on a classifier: 422 before work
        input_box(model, picture, request.region)

    def work(model_: LoadedModel) -> Comparison:
        return compare(
            model_, pictures, plan.names, target=request.target, layer=plan.layer,
            params=request.params, options=request.options, names=request.names,
            region=request.segment_region, box=request.box,
        )  # fmt: skip

    comparison = await state.run(model, each, work, cost=cost, deadline=deadline)
    grid = await render_until(deadline, lambda abort: to_png(comparison.grid()))
    if wants_png(http):
        headers = image_headers(comparison.methods, comparison.images[0].target)
        return Response(grid, media_type="image/png", headers=headers)
    body = comparison.to_json()
    body["grid_png"] = base64.b64encode(grid).decode("ascii")
    body["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
    return CompareResponse.model_validate(body)
