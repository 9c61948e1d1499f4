"""GET /v1/methods: every registered method with the JSON schema of its params."""

from __future__ import annotations

from fastapi import APIRouter

from cnnlens.api.models import MethodInfo, MethodList
from cnnlens.methods.base import get_method, method_names

router = APIRouter(prefix="/v1", tags=["methods"])

# Methods with a route of their own (method-specific results); the rest answer on /v1/explain.
OWN_ROUTES = {
    "adversarial": "/v1/adversarial",
    "activation_max": "/v1/activation-max",
    "feature_maps": "/v1/feature-maps",
    "filters": "/v1/filters",
}


@router.get("/methods", response_model=MethodList)
def list_methods() -> MethodList:
    infos = []
    for name in method_names():
        method = get_method(name)
        infos.append(
            MethodInfo(
                name=name,
                title=method.title,
                paper=method.paper,
                kind=method.kind,
                produces=method.produces,
                uses_layer=method.uses_layer,
                uses_target=method.uses_target,
                route=OWN_ROUTES.get(name, "/v1/explain"),
                params=method.Params.model_json_schema(),
            )
        )
    return MethodList(methods=infos)
