"""GET /v1/models and GET /v1/models/{name}: the served models, their layers and classes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path

from cnnlens.api.models import ModelDetail, ModelList, ModelSummary
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.deps import StateDep
from cnnlens.service.errors import documented_errors

router = APIRouter(prefix="/v1", tags=["models"])

_ERRORS = documented_errors(
    (404, "the model is not served here"), (503, "the model is still loading")
)


def _summary(loaded: LoadedModel, default: str) -> dict[str, Any]:
    height, width = loaded.input_size
    return {
        "name": loaded.name,
        "default": loaded.name == default,
        "input_size": [height, width],
        "num_classes": len(loaded.categories),
        "default_layer": loaded.default_layer,
        "weights_source": loaded.weights_source,
        "weights_sha256": loaded.weights_sha256,
    }


@router.get("/models", response_model=ModelList, responses={503: _ERRORS[503]})
def list_models(state: StateDep) -> ModelList:
    default = state.settings.default_model
    if not state.models:
        state.model(default)  # 503 while loading
    models = [ModelSummary(**_summary(state.model(name), default)) for name in state.models]
    return ModelList(default=default, models=models)


@router.get("/models/{name}", response_model=ModelDetail, responses=_ERRORS)
def model_detail(
    state: StateDep,
    name: Annotated[str, Path(description="a served model's name, see GET /v1/models")],
) -> ModelDetail:
    loaded = state.model(name)
    budget = state.budget(name)
    calibration = budget.calibration
    inventory = loaded.layers
    described = loaded.describe()
    return ModelDetail.model_validate(
        {
            **_summary(loaded, state.settings.default_model),
            "labels_count": described["labels_count"],
            "head": described["head"],
            "was_training": described["was_training"],
            "preprocessing": described["preprocessing"],
            "layers": [asdict(layer) for layer in inventory.layers],
            "compatibility": asdict(inventory.compatibility),
            "categories": list(loaded.categories),
            "budget": {
                "forward_passes": budget.forward_equivalents,
                "memory_bytes": budget.memory_bytes,
                "forward_ms": calibration.forward_s * 1000,
                "backward_ms": calibration.backward_s * 1000,
                "device": calibration.device,
                "source": "calibrated"
                if state.settings.limits.budget_forward_passes is None
                else "configured",
            },
        }
    )
