"""The routes of image, activation and weights methods: POST /v1/<method, - for _> for each
registered method that makes no map (/v1/adversarial, /v1/activation-max, /v1/feature-maps,
/v1/filters, and any method registered later). Multipart forms, like /v1/explain; `params` is
the method's own JSON object. With `Accept: image/png` each answers its main image itself.

`router()` builds the router from the method registry when the app is created: a route
takes `image` if the method uses one, `target` and `layer` if it uses them."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel

from cnnlens.errors import TargetError
from cnnlens.methods.base import Method, get_method, method_names, own_route
from cnnlens.service import deps
from cnnlens.service.budget import methods_plan
from cnnlens.service.engine import OwnRoute, SingleRun
from cnnlens.service.engine import own_route as route_answer
from cnnlens.service.forms import (
    parse_layer,
    parse_method_params,
    parse_targets,
    single_valued_fields,
)
from cnnlens.service.routers.explain import ERRORS

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


def _parameters(method: Method) -> list[inspect.Parameter]:
    """The route's inputs: the dependencies, then the form fields the method uses."""

    def param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> Any:
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Parameter(name, kind, annotation=annotation, default=default)

    fields = [
        param("request", Request),
        param("state", deps.StateDep),
        param("settings", deps.SettingsDep),
        param("deadline", deps.DeadlineDep),
    ]
    if method.uses_image:
        fields.append(param("image", ImageField))
    fields.append(param("model", ModelField, None))
    if method.uses_target:
        fields.append(param("target", TargetField, None))
    if method.uses_layer:
        fields.append(param("layer", LayerField, None))
    fields.append(param("params", ParamsField, None))
    return fields


def _endpoint(name: str, answer: OwnRoute) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The handler of method `name`'s route."""
    method = get_method(name)

    async def endpoint(
        request: Request, state: Any, settings: Any, deadline: float, **form: Any
    ) -> Response | BaseModel:
        started = time.monotonic()
        loaded = state.model(form.get("model"))
        layer = parse_layer(form.get("layer"), loaded)
        params = parse_method_params(form.get("params"), method)
        targets = parse_targets(form.get("target"), loaded, settings.limits.max_targets)
        if len(targets) > 1:
            raise TargetError("this route explains one target at a time")
        run = SingleRun(name, params, None, targets[0] if targets else None, layer)
        run = answer.check(loaded, run)
        cost = state.admit(loaded.name, methods_plan([(name, run.params)], layer=layer))
        if method.uses_image:
            run.picture = await deps.read_image(form["image"], settings)
            if answer.preprocess:
                run.x = await deps.off_loop(loaded.preprocessing, run.picture)
        result = await state.run(loaded.name, answer.work, run, cost=cost, deadline=deadline)
        body, png = await deps.render_until(
            deadline, lambda abort: answer.render(loaded, run, result, started)
        )
        if deps.wants_png(request):
            headers = deps.image_headers(name, getattr(body, "target", None))
            return Response(png, media_type="image/png", headers=headers)
        return body

    endpoint.__name__ = name
    endpoint.__doc__ = f"{method.title}. {method.paper}".strip()
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        _parameters(method), return_annotation=Response | answer.response
    )
    return endpoint


def router() -> APIRouter:
    """One route per registered method that makes no map, as the registry is now."""
    router = APIRouter(
        prefix="/v1",
        tags=["visualize"],
        dependencies=[Depends(single_valued_fields(("target",)))],
    )
    for name in method_names():
        path = own_route(name)
        if path is None:
            continue
        answer = route_answer(name)
        router.add_api_route(
            path.removeprefix("/v1"),
            _endpoint(name, answer),
            methods=["POST"],
            response_model=answer.response,
            responses=_responses(answer.response),
            name=name,
        )
    return router
