"""POST /v1/explain: maps for one uploaded image, several methods and targets at once."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from PIL import Image

from cnnlens.api.codecs import IMAGE_FORMATS
from cnnlens.api.models import ExplainResponse
from cnnlens.imageio import fit_within, fitted_size
from cnnlens.models.heads import DETECTION
from cnnlens.service.deps import (
    DeadlineDep,
    SettingsDep,
    StateDep,
    image_headers,
    off_loop,
    read_image,
)
from cnnlens.service.deps import render_until as render
from cnnlens.service.detection import detection_input
from cnnlens.service.errors import documented_errors
from cnnlens.service.forms import single_valued_fields
from cnnlens.service.handlers.explain import (
    ExplainInput,
    render_explain_response,
    render_overlay_png,
    run_explain_batch,
)
from cnnlens.service.requests import ExplainDep, input_box

router = APIRouter(
    prefix="/v1",
    tags=["explain"],
    dependencies=[Depends(single_valued_fields(("method", "target")))],
)

ERRORS = documented_errors(
    (400, "the image cannot be decoded"),
    (401, "missing or invalid X-API-Key (when keys are configured)"),
    (404, "the model is not served here"),
    (406, "Accept: image/png with more than one method"),
    (413, "the upload or the image is too large"),
    (415, "the file is not an allowed image format"),
    (
        422,
        "invalid method, target, layer, params or output; over the budget or the "
        "response size limit (over_budget, response_too_large)",
    ),
    (503, "the model's queue is full or it is still loading (Retry-After)"),
    (504, "the request deadline passed"),
)
PNG_ANSWER = {
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    "description": "JSON, or with `Accept: image/png` and one method the overlay PNG",
}


@router.post("/explain", response_model=ExplainResponse, responses={**ERRORS, 200: PNG_ANSWER})
async def explain(
    request: ExplainDep, state: StateDep, settings: SettingsDep, deadline: DeadlineDep
) -> Response | ExplainResponse:
    started = time.monotonic()
    model = request.model
    decoded = await read_image(request.image, settings, draft=request.draft)
    shown = fitted_size(decoded, request.max_side)
    cost = state.admit(model, request.budget(*shown))
    picture, model_view = await _fitted(decoded, request.max_side, model.preprocessing.source_side)
    x = await off_loop(model.preprocessing, model_view)  # (1, 3, H, W)
    if model.head == DETECTION:  # its rows: the box given, or the detections found
        work, cost = await detection_input(state, request, x, picture, shown, deadline)
    else:
        region = input_box(model, picture, request.region)
        work = ExplainInput(request.plan, x, request.targets, region)
    rows = await state.run(
        model, run_explain_batch, work, cost=cost, batch_key=work.batch_key, deadline=deadline
    )
    names, image_format = request.plan.names, request.image_format(decoded)
    if request.png:
        body, shown_explanation = await render(
            deadline,
            lambda abort: render_overlay_png(model, picture, rows, names[0], abort, image_format),
        )
        headers = image_headers(names[0], shown_explanation.target)
        return Response(body, media_type=IMAGE_FORMATS[image_format][2], headers=headers)
    answer: ExplainResponse = await render(
        deadline,
        lambda abort: render_explain_response(
            model, picture, rows, names, request.outputs, started, abort, image_format
        ),
    )
    return answer


async def _fitted(
    picture: Image.Image, max_side: int | None, source_side: int
) -> tuple[Image.Image, Image.Image]:
    """The upload as shown (fitted within max_side) and the picture the model's input is made
    from: the fitted one where it is large enough (resizing it costs a fraction of the larger
    decode's)."""
    if not max_side:
        return picture, picture
    fitted = await off_loop(fit_within, picture, max_side)
    return fitted, fitted if min(fitted.size) >= source_side else picture
