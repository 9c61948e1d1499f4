"""What an audit computes and how: model, methods, batch size, flag thresholds."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cnnlens.features.config import FeatureConfig, split_names

if TYPE_CHECKING:
    from cnnlens.methods.run import RunPlan
    from cnnlens.models.loaded import LoadedModel

# PGD L-inf budgets, 0-255 pixel units: whole 8-bit levels, since a flip counts only if the
# saved 8-bit image flips and an image cannot move a pixel by less than one level.
DEFAULT_EPSILONS = (1.0, 2.0, 4.0, 8.0)
DEFAULT_FRAGILE_AT = 2.0


class AuditConfig(BaseModel):
    """One audit's settings; the same config on the same images resumes the same job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default="efficientnet_lite0", min_length=1, description="load_model name")
    weights: str = Field(default="default", description='"default", "none" or a weights file')
    methods: tuple[str, ...] = Field(default=("grad_cam",), min_length=1, description="map methods")
    layer: str | None = Field(default=None, description="target layer (default: the model's)")
    batch_size: int = Field(default=8, ge=1, le=256)
    top_k: int = Field(default=5, ge=1, le=20)
    low_confidence: float = Field(default=0.5, ge=0, le=1, description="top-1 below this: flagged")
    min_box_energy: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of map energy inside the object below this: flagged",
    )
    pointing_tolerance: int = Field(default=15, ge=0, le=256, description="pointing game, pixels")
    fragility: bool = Field(default=False, description="run the PGD epsilon ladder (slow)")
    epsilons: tuple[float, ...] = Field(
        default=DEFAULT_EPSILONS,
        min_length=1,
        description="the PGD ladder, 0-255 units, whole levels from 1 (one 8-bit level)",
    )
    fragile_at: float = Field(
        default=DEFAULT_FRAGILE_AT,
        ge=1,
        le=255,
        description="the saved 8-bit image flips at this epsilon (0-255) or below: flagged "
        "fragile (default 2/255)",
    )
    pgd_steps: int = Field(default=5, ge=1, le=100)
    thumbnail_side: int = Field(default=160, ge=32, le=512)
    overlay_max_side: int = Field(default=1024, ge=64, le=8192, description="overlay PNG files")
    max_pixels: int = Field(default=40_000_000, ge=1)
    features: FeatureConfig = Field(
        default_factory=FeatureConfig,
        description="the dataset view: feature vectors, map, neighbours, findings, exemplars",
    )

    @field_validator("methods", mode="before")
    @classmethod
    def _split_methods(cls, value: object) -> object:
        return split_names(value)

    @field_validator("epsilons")
    @classmethod
    def _ascending(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(eps < 1 or eps > 255 or not float(eps).is_integer() for eps in value):
            raise ValueError(
                "epsilons must be whole 8-bit levels in [1, 255]: a saved image moves its "
                "pixels by whole levels, so a smaller or fractional budget cannot be stored"
            )
        return tuple(sorted(set(value)))

    def signature(self) -> str:
        """A stable digest of everything that changes the results."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_methods(config: AuditConfig) -> None:
    """Unknown methods and methods without a per-pixel map fail before any work starts."""
    from cnnlens.errors import InvalidParamsError
    from cnnlens.methods.base import get_method

    for name in config.methods:
        method = get_method(name)  # MethodNotFoundError (422) for unknown names
        if method.produces != "map":
            raise InvalidParamsError(
                f"method {name!r} produces {method.produces}, not a heatmap; an audit needs "
                "heatmap methods (e.g. grad_cam, saliency)"
            )


def check_model(config: AuditConfig, model: LoadedModel) -> RunPlan:
    """Methods the model (its head, its layers) cannot serve, and the fragility ladder on a
    segmentation model (PGD flips one class score, which a class map does not have), fail
    before any work. Returns the audit's resolved plan (methods, default params, layer)."""
    from cnnlens.errors import IncompatibleModelError
    from cnnlens.methods.run import plan_run
    from cnnlens.models import heads

    plan = plan_run(model, [(name, None) for name in config.methods], config.layer)
    if config.features.enabled:  # unknown feature or exemplar layers fail here
        from cnnlens.features.capture import FeatureCapture

        FeatureCapture(model, config.features)
    if config.fragility and model.head == heads.SEGMENTATION:
        raise IncompatibleModelError(
            "the fragility check attacks an image's top-1 class, which a segmentation model "
            "does not have: audit it without fragility"
        )
    return plan
