"""GET /v1/methods: every registered method with the JSON schema of its params."""

from __future__ import annotations

from fastapi import APIRouter

from cnnlens.api.models import MethodInfo, MethodList
from cnnlens.methods.base import VIEW_KINDS, explains_head, get_method, method_names, own_route
from cnnlens.models.heads import HEADS

router = APIRouter(prefix="/v1", tags=["methods"])


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
                kind=VIEW_KINDS[method.produces],
                execution=method.kind,
                produces=method.produces,
                uses_layer=method.uses_layer,
                uses_target=method.uses_target,
                uses_image=method.uses_image,
                segmentation=method.segmentation,
                explains=[head for head in HEADS if explains_head(method, head)],
                route=own_route(name) or "/v1/explain",
                params=method.Params.model_json_schema(),
            )
        )
    return MethodList(methods=infos)
