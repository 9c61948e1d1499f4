"""What an audit's forward keeps for the dataset view: the taps it adds (feature vector,
channel maxima) and, per image, its `ImageFeatures` (the vector, the perceptual hash of the
decoded image, the probabilities cleanlab needs, the channel maxima)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from cnnlens.errors import LayerNotFoundError
from cnnlens.features.columns import ImageFeatures
from cnnlens.features.config import FeatureConfig
from cnnlens.features.duplicates import perceptual_hash
from cnnlens.features.exemplars import LayerGeometry, exemplar_tap
from cnnlens.features.store import FeatureStore
from cnnlens.features.vectors import FEATURES_TAP, feature_layer
from cnnlens.methods.run import resolve_layer
from cnnlens.models.hooks import Tap
from cnnlens.models.loaded import LoadedModel

if TYPE_CHECKING:
    from cnnlens.audit.store import AuditStore


class FeatureCapture:
    """The dataset view's share of one model's audit forward."""

    def __init__(self, model: LoadedModel, config: FeatureConfig) -> None:
        self.config = config
        self.layer = feature_layer(model, config.layer)
        self.geometries: dict[str, LayerGeometry] = {}
        for name in config.exemplars:
            info = model.layers.get(resolve_layer(model, name, model.input_size))
            if info is None or not info.output_shape:
                raise LayerNotFoundError(f"exemplars: layer {name!r} has no tensor output")
            self.geometries[name] = LayerGeometry.of(model, info)
        # cleanlab reads one class per image: softmax and binary heads
        self.keeps_probabilities = model.head in ("softmax", "binary")
        self.taps: list[Tap] = [self.layer.tap()]
        self.taps += [exemplar_tap(name) for name in self.geometries]

    def image(
        self,
        row: int,
        tapped: Mapping[str, torch.Tensor],
        probabilities: torch.Tensor,
        thumbnail: Image.Image,
        labelled: bool,
    ) -> ImageFeatures:
        """Row `row` of the batch's tapped results; `probabilities` (B, K); `thumbnail` the
        audit's thumbnail of the decoded image (its pHash)."""
        kept = None
        if labelled and self.keeps_probabilities:
            kept = probabilities[row].float().cpu().numpy().astype(np.float16)
        return ImageFeatures(
            vector=tapped[FEATURES_TAP][row].cpu().numpy().astype(np.float32),
            phash=perceptual_hash(thumbnail),
            probabilities=kept,
            maxima={
                name: tapped[exemplar_tap(name).name][row].cpu().numpy().astype(np.float32)
                for name in self.geometries
            },
        )


def prepare_features(
    store: AuditStore, job_id: str, model: LoadedModel, config: FeatureConfig
) -> None:
    """What the audit's end needs to know of the model: the feature layer (for the summary)
    and the exemplar layers' geometry (grid, receptive field, preprocessing)."""
    if not config.enabled:
        return
    capture = FeatureCapture(model, config)
    features = FeatureStore(store)
    for layer, geometry in capture.geometries.items():
        features.set_geometry(job_id, layer, geometry.as_json())
    features.set_summary(
        job_id, {**(features.summary(job_id) or {}), "layer": capture.layer.describe()}
    )
