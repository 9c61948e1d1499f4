"""POST /v1/explain: maps for one uploaded image, several methods and targets at once."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from cnnlens.api.codecs import IMAGE_FORMATS
from cnnlens.api.forms import DEFAULT_METHOD, parse_box, parse_outputs, parse_overlay_format
from cnnlens.api.models import ErrorBody, ExplainResponse
from cnnlens.errors import InvalidParamsError
from cnnlens.imageio import fit_within, fitted_size
from cnnlens.service.budget import Rendered, methods_plan
from cnnlens.service.deps import (
    DeadlineDep,
    SettingsDep,
    StateDep,
    image_headers,
    off_loop,
    read_image,
    render_until,
    wants_png,
)
from cnnlens.service.engine import (
    ExplainInput,
    ExplainPlan,
    input_box,
    render_explain_response,
    render_overlay_png,
    run_explain_batch,
)
from cnnlens.service.errors import NotAcceptableError
from cnnlens.service.forms import (
    params_key,
    parse_layer,
    parse_methods,
    parse_params_by_method,
    parse_targets,
    single_valued_fields,
)

router = APIRouter(
    prefix="/v1",
    tags=["explain"],
    dependencies=[Depends(single_valued_fields(("method", "target")))],
)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
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
}


@router.post(
    "/explain",
    response_model=ExplainResponse,
    responses={
        **ERRORS,
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "JSON, or with `Accept: image/png` and one method the overlay PNG",
        },
    },
)
async def explain(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    deadline: DeadlineDep,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP, GIF or TIFF")],
    model: Annotated[str | None, Form(description="a served model; default: the default")] = None,
    method: Annotated[
        list[str] | None,
        Form(description=f"method names, repeated or comma-separated; default {DEFAULT_METHOD}"),
    ] = None,
    target: Annotated[
        list[str] | None,
        Form(description="class indices or labels, one per field; default: top-1"),
    ] = None,
    layer: Annotated[str | None, Form(description="layer for layer-based methods")] = None,
    params: Annotated[
        str | None, Form(description='JSON object keyed by method, e.g. {"occlusion": {...}}')
    ] = None,
    output: Annotated[str | None, Form(description="comma list of overlay, heatmap, array")] = None,
    region: Annotated[
        str | None,
        Form(
            description="segmentation models: x0,y0,x1,y1 in the uploaded image's pixels, the "
            "region whose target logits are explained; default: the pixels predicted as it"
        ),
    ] = None,
    overlay_format: Annotated[
        str | None, Form(description="png (default), jpeg or webp: overlay and heatmap format")
    ] = None,
    max_side: Annotated[
        int | None,
        Form(
            ge=1,
            le=16384,
            description="maps and images at most this many pixels a side (the photo scaled "
            "down; a JPEG decodes at a reduced DCT scale); default: the photo's own size",
        ),
    ] = None,
) -> Response | ExplainResponse:
    started = time.monotonic()
    loaded = state.model(model)
    methods = parse_methods(method)
    outputs = parse_outputs(output)
    layer_name = parse_layer(layer, loaded)
    targets = parse_targets(target, loaded, settings.limits.max_targets)
    params_by_method = parse_params_by_method(params, methods)
    box = parse_box(region)
    png = wants_png(request)
    if png and len(methods) != 1:
        raise NotAcceptableError("Accept: image/png answers one method; ask for JSON instead")
    image_format = parse_overlay_format(overlay_format)
    if box is not None and max_side:
        raise InvalidParamsError(
            "region is in the uploaded image's pixels: send it without max_side",
            code="bad_region",
        )
    # With max_side the model's input comes from the reduced decode too (never below its size).
    source_side = loaded.preprocessing.source_side
    draft = max(max_side, source_side) if max_side else None
    picture = await read_image(image, settings, draft=draft)
    chosen = [(m.name, params_by_method[m.name]) for m in methods]
    width, height = fitted_size(picture, max_side)
    shown = Rendered(width, height, ("overlay",) if png else outputs)
    cost = state.admit(
        loaded.name, methods_plan(chosen, len(targets), layer=layer_name, rendered=shown)
    )
    model_view = picture
    if max_side:
        picture = await off_loop(fit_within, picture, max_side)
        if min(picture.size) >= source_side:  # the picture shown is large enough for the model
            model_view = picture  # and resizing it costs a fraction of the larger decode's
    x = await off_loop(loaded.preprocessing, model_view)  # (1, 3, H, W)
    plan = ExplainPlan(
        model=loaded.name,
        methods=tuple((m.name, params_key(params_by_method[m.name])) for m in methods),
        layer=layer_name or loaded.default_layer,  # "bn2" and no layer batch together
        explicit_targets=bool(targets),
        region=None if box is None else input_box(loaded, picture, box),
    )
    rows = await state.run(
        loaded.name,
        run_explain_batch,
        ExplainInput(plan, x, targets),
        cost=cost,
        batch_key=plan if plan.batchable else None,
        deadline=deadline,
    )
    names = [m.name for m in methods]
    if png:
        body, shown_explanation = await render_until(
            deadline,
            lambda abort: render_overlay_png(loaded, picture, rows, names[0], abort, image_format),
        )
        headers = image_headers(names[0], shown_explanation.target)
        return Response(body, media_type=IMAGE_FORMATS[image_format][2], headers=headers)
    answer: ExplainResponse = await render_until(
        deadline,
        lambda abort: render_explain_response(
            loaded, picture, rows, names, outputs, started, abort, image_format
        ),
    )
    return answer
