"""The single-method routes: POST /v1/adversarial, /v1/activation-max, /v1/feature-maps and
/v1/filters (multipart forms, like /v1/explain; `params` is the method's own JSON object).
With `Accept: image/png` each answers its main image itself."""

from __future__ import annotations

import time
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel

from cnnlens.api.models import (
    ActivationMaxResponse,
    AdversarialResponse,
    FeatureMapsResponse,
    FiltersResponse,
)
from cnnlens.errors import IncompatibleModelError, InvalidParamsError, TargetError
from cnnlens.methods.adversarial_image import saved_output_params
from cnnlens.methods.base import MethodParams, get_method
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.deps import (
    DeadlineDep,
    SettingsDep,
    StateDep,
    off_loop,
    read_image,
    wants_png,
)
from cnnlens.service.engine import (
    SingleRun,
    render_activation_max,
    render_adversarial,
    render_feature_maps,
    render_filters,
    run_adversarial,
    run_single,
)
from cnnlens.service.forms import parse_class, parse_layer, parse_method_params, parse_targets
from cnnlens.service.routers.explain import ERRORS
from cnnlens.service.state import ServiceState

router = APIRouter(prefix="/v1", tags=["visualize"])
B = TypeVar("B", bound=BaseModel)

ModelField = Annotated[str | None, Form(description="a served model; default: the default")]
TargetField = Annotated[
    list[str] | None, Form(description="a class index or label (one); default: top-1")
]
LayerField = Annotated[str | None, Form(description="a layer name; default: the model's")]
ParamsField = Annotated[str | None, Form(description="JSON object: the method's params")]
ImageField = Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP, GIF or TIFF")]


def _responses(model: type) -> dict[int | str, dict[str, Any]]:
    return {
        **ERRORS,
        200: {
            "model": model,
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "JSON, or with `Accept: image/png` the main image itself",
        },
    }


def _one_target(values: list[str] | None, loaded: LoadedModel, limit: int) -> int | None:
    targets = parse_targets(values, loaded, limit)
    if len(targets) > 1:
        raise TargetError("this route explains one target at a time")
    return targets[0] if targets else None


def _require_feature_layer(loaded: LoadedModel, layer: str) -> None:
    """A channel is maximized over a (C, h, w) output; other layers get a 422, not a crash."""
    info = loaded.layers.get(layer)
    shape = None if info is None else info.output_shape
    if shape is None or len(shape) != 3:
        raise IncompatibleModelError(
            f"maximizing a channel needs a layer with (C, h, w) output; {layer!r} has {shape}"
        )


def _answer(request: Request, body: B, png: bytes) -> Response | B:
    """The body (validated against the route's response_model), or its image itself."""
    if wants_png(request):
        return Response(png, media_type="image/png")
    return body


async def _run(state: ServiceState, loaded: LoadedModel, run: SingleRun, deadline: float) -> Any:
    return await state.run(loaded.name, run_single, run, deadline=deadline)


def _method_request(
    state: ServiceState, model: str | None, name: str, params: str | None, layer: str | None
) -> tuple[LoadedModel, str | None, MethodParams]:
    """The served model, the layer asked for (None: the model's) and the method's params."""
    loaded = state.model(model)
    layer_name = parse_layer(layer, loaded)
    return loaded, layer_name, parse_method_params(params, get_method(name))


@router.post(
    "/adversarial", response_model=AdversarialResponse, responses=_responses(AdversarialResponse)
)
async def adversarial(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    deadline: DeadlineDep,
    image: ImageField,
    model: ModelField = None,
    target: TargetField = None,
    params: ParamsField = None,
) -> Response | AdversarialResponse:
    """FGSM / PGD: an 8-bit PNG within params.epsilon (0-255, >= 1) of the upload, at its own
    size (params.output_size "model": the model's input), with its prediction once uploaded."""
    started = time.monotonic()
    loaded, _, parsed = _method_request(state, model, "adversarial", params, None)
    explained = _one_target(target, loaded, settings.limits.max_targets)
    parsed = saved_output_params(parsed)  # epsilon >= 1 level
    if parsed.adversarial_target is not None:
        parse_class(parsed.adversarial_target, loaded)  # an unknown class: 422 before any work
    picture = await read_image(image, settings)
    result = await state.run(
        loaded.name, run_adversarial, (picture, parsed, explained), deadline=deadline
    )
    body, png = await off_loop(render_adversarial, loaded, picture, result, started)
    return _answer(request, body, png)


@router.post(
    "/activation-max",
    response_model=ActivationMaxResponse,
    responses=_responses(ActivationMaxResponse),
)
async def activation_max(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    deadline: DeadlineDep,
    model: ModelField = None,
    target: TargetField = None,
    layer: LayerField = None,
    params: ParamsField = None,
) -> Response | ActivationMaxResponse:
    """An image that maximizes a class logit (target) or a layer's channel (params.channel)."""
    started = time.monotonic()
    loaded, layer_name, parsed = _method_request(state, model, "activation_max", params, layer)
    explained = _one_target(target, loaded, settings.limits.max_targets)
    channel = getattr(parsed, "channel", None)
    if explained is None and channel is None:
        raise InvalidParamsError("give a target class, or params.channel to maximize a channel")
    if channel is not None:
        _require_feature_layer(loaded, layer_name or loaded.default_layer)
    run = SingleRun("activation_max", parsed, None, explained, layer_name)
    result = await _run(state, loaded, run, deadline)
    body, png = await off_loop(
        render_activation_max, loaded, result, explained is not None, channel, started
    )
    return _answer(request, body, png)


@router.post(
    "/feature-maps", response_model=FeatureMapsResponse, responses=_responses(FeatureMapsResponse)
)
async def feature_maps(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    deadline: DeadlineDep,
    image: ImageField,
    model: ModelField = None,
    layer: LayerField = None,
    params: ParamsField = None,
) -> Response | FeatureMapsResponse:
    """A layer's activations for the image: the strongest channels and a grid of their maps."""
    started = time.monotonic()
    loaded, layer_name, parsed = _method_request(state, model, "feature_maps", params, layer)
    picture = await read_image(image, settings)
    x = await off_loop(loaded.preprocessing, picture)
    result = await _run(
        state, loaded, SingleRun("feature_maps", parsed, x, None, layer_name), deadline
    )
    body, png = await off_loop(render_feature_maps, loaded, picture, result, started)
    return _answer(request, body, png)


@router.post("/filters", response_model=FiltersResponse, responses=_responses(FiltersResponse))
async def filters(
    request: Request,
    state: StateDep,
    deadline: DeadlineDep,
    model: ModelField = None,
    layer: LayerField = None,
    params: ParamsField = None,
) -> Response | FiltersResponse:
    """A conv layer's filters as tiles (RGB for the first layer)."""
    started = time.monotonic()
    loaded, layer_name, parsed = _method_request(state, model, "filters", params, layer)
    result = await _run(
        state, loaded, SingleRun("filters", parsed, None, None, layer_name), deadline
    )
    body, png = await off_loop(render_filters, loaded, result, started)
    return _answer(request, body, png)
