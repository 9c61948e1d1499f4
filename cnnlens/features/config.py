"""What an audit's dataset view computes: the feature layer, the 2-D map, the neighbour index,
the thresholds of its findings and the channel exemplars."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cnnlens.api.forms import split_list

MapMethod = Literal["umap", "pca", "tsne"]

# Near-duplicates: a pair within both distances. The perceptual hash separates copies from
# distinct photos (on crops of scikit-image photos: resized, JPEG-45 copies at Hamming 0-2,
# distinct crops at 12 or more); the feature distance keeps two different pictures whose
# hashes collide (flat, textureless images) apart. See docs/guides/feature-space.md.
NEAR_DUPLICATE_HAMMING = 6
NEAR_DUPLICATE_DISTANCE = 0.35
# Label issues on a small audit: the given label's probability (self-confidence) below this.
LABEL_ISSUE_CONFIDENCE = 0.05


class FeatureConfig(BaseModel):
    """The dataset view of one audit (part of its config: a change makes a new job)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="keep feature vectors and find neighbours")
    layer: str | None = Field(
        default=None,
        description="layer whose output is the feature vector (global-average-pooled when "
        "4-D); default: the input of the classifier head",
    )
    map: MapMethod = Field(default="umap", description="2-D map: umap, pca or tsne")
    neighbors: int = Field(default=5, ge=1, le=50, description="neighbours kept per image")
    seed: int = Field(default=0, ge=0, description="seeds the map, the samples and the index")
    index_exact_max: int = Field(
        default=200_000,
        ge=1,
        description="past this many vectors the neighbour index is IVF (approximate)",
    )
    near_duplicate_hamming: int = Field(
        default=NEAR_DUPLICATE_HAMMING, ge=0, le=64, description="pHash bits that may differ"
    )
    near_duplicate_distance: float = Field(
        default=NEAR_DUPLICATE_DISTANCE, ge=0, le=2, description="feature cosine distance"
    )
    label_issue_confidence: float = Field(
        default=LABEL_ISSUE_CONFIDENCE,
        ge=0,
        le=1,
        description="small audits: flag a label whose probability is below this",
    )
    exemplars: tuple[str, ...] = Field(
        default=(), description="layers whose channels get their top-k audited images"
    )
    exemplars_k: int = Field(default=9, ge=1, le=100, description="exemplars per channel")

    @field_validator("exemplars", mode="before")
    @classmethod
    def _split_layers(cls, value: object) -> object:
        return split_names(value)


def split_names(value: object) -> object:
    """Repeated and/or comma-separated names (a string or a list) -> a tuple of distinct
    names in order; anything else is left for pydantic to refuse."""
    if isinstance(value, str | list | tuple):
        return tuple(split_list([value] if isinstance(value, str) else map(str, value)))
    return value


def form_options(config: FeatureConfig) -> dict[str, object]:
    """The form fields of POST /v1/audits that ask for `config` (the CLI's --server path)."""
    return {
        "features": config.enabled,
        "feature_layer": config.layer,
        "map": config.map,
        "exemplars": list(config.exemplars) or None,
        "exemplars_k": config.exemplars_k,
        "index_exact_max": config.index_exact_max,
    }
