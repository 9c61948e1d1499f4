"""The routes of image, activation and weights methods: POST /v1/<method, - for _> for each
registered method that makes no map (/v1/adversarial, /v1/activation-max, /v1/feature-maps,
/v1/filters, and any method registered later). Multipart forms, like /v1/explain; `params` is
the method's own JSON object. With `Accept: image/png` each answers its main image itself.

`router()` builds the router from the method registry when the app is created: a route
takes `image` if the method uses one, `target` and `layer` if it uses them (the fields of
its request's dependency, `single_request`)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from cnnlens.api.models import method_response
from cnnlens.methods.base import get_method, method_names, own_route
from cnnlens.service import deps
from cnnlens.service.forms import single_valued_fields
from cnnlens.service.requests import SingleRequest, single_request
from cnnlens.service.routers.explain import ERRORS
from cnnlens.service.runtime.state import ServiceState
from cnnlens.service.settings import Settings


def _responses(model: type) -> dict[int | str, dict[str, Any]]:
    return {
        **ERRORS,
        200: {
            "model": model,
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "JSON, or with `Accept: image/png` the main image itself",
        },
    }


def _endpoint(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The handler of method `name`'s route."""
    method = get_method(name)

    async def endpoint(
        http: Request,
        request: SingleRequest,
        state: ServiceState,
        settings: Settings,
        deadline: float,
    ) -> Response | BaseModel:
        started = time.monotonic()
        model, run, answer = request.model, request.run, request.answer
        cost = state.admit(model, request.budget())
        if request.image is not None:
            run.picture = await deps.read_image(request.image, settings)
            if answer.preprocess:
                run.x = await deps.off_loop(model.preprocessing, run.picture)
        result = await state.run(model, answer.work, run, cost=cost, deadline=deadline)
        body, png = await deps.render_until(
            deadline, lambda abort: answer.render(model, run, result, started)
        )
        if deps.wants_png(http):
            headers = deps.image_headers(name, getattr(body, "target", None))
            return Response(png, media_type="image/png", headers=headers)
        return body

    endpoint.__name__ = name
    endpoint.__doc__ = f"{method.title}. {method.paper}".strip()
    # The request's type names its dependency, made for this method's form fields.
    resolved = Annotated[SingleRequest, Depends(single_request(method))]
    kinds = [
        ("http", Request), ("request", resolved), ("state", deps.StateDep),
        ("settings", deps.SettingsDep), ("deadline", deps.DeadlineDep),
    ]  # fmt: skip
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=a)
            for n, a in kinds
        ],
        return_annotation=Response | BaseModel,
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
        response = method_response(name)
        router.add_api_route(
            path.removeprefix("/v1"),
            _endpoint(name),
            methods=["POST"],
            response_model=response,
            responses=_responses(response),
            name=name,
        )
    return router
