"""Feature vectors: one layer's activations as one vector per image, taken in a forward the
caller runs anyway (an audit's own) through a `Tap` of the hook manager, or in no-grad passes
of their own for `cnnlens.features(model, images)`.

The seeds' "Visualization feature vectors" and "Image retrieval" (004): the final flattened
volume is an image's signature. By default the vector is the input of the classifier head
(timm's `classifier`, torchvision's `fc`): the pooled features the classes are read from.
A 4-D layer is global-average-pooled, so a segmentation model's vector pools over the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from cnnlens.imageio import ImageSource, load_image
from cnnlens.methods.passes import heap_rows
from cnnlens.methods.run import resolve_layer
from cnnlens.models import heads
from cnnlens.models.hooks import Tap, hook_session
from cnnlens.models.loaded import LoadedModel

FEATURES_TAP = "features"


@dataclass(frozen=True)
class FeatureLayer:
    """Where the vector is read: a module's input or output."""

    layer: str
    side: Literal["input", "output"]

    def describe(self) -> str:
        return f"{self.layer} ({self.side})"

    def tap(self, name: str = FEATURES_TAP) -> Tap:
        return Tap(name, self.layer, pooled, self.side)


def pooled(activations: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C) global average; (B, D) as it is; other shapes flattened.
    Always float32 (a half-precision model's vectors too)."""
    if activations.dim() == 4:
        activations = activations.mean(dim=(2, 3))
    elif activations.dim() != 2:
        activations = activations.flatten(1)
    return activations.float()


def feature_layer(model: LoadedModel, layer: str | None = None) -> FeatureLayer:
    """The output of `layer` (checked against the model's layers), or by default the input
    of the classifier head: the last Linear layer that makes the model's (B, K) output. A
    model without one (segmentation, a convolutional head) uses its default target layer."""
    if layer is not None:
        return FeatureLayer(resolve_layer(model, layer, model.input_size), "output")
    inventory = model.layers
    if model.head != heads.SEGMENTATION:
        last = inventory.layers[-1].output_shape if inventory.layers else None
        for info in reversed(inventory.layers):
            one_dimensional = info.output_shape is not None and len(info.output_shape) == 1
            if info.type == "Linear" and one_dimensional and info.output_shape == last:
                return FeatureLayer(info.name, "input")
    return FeatureLayer(inventory.default_layer, "output")


def features(
    model: LoadedModel,
    images: Sequence[ImageSource] | torch.Tensor,
    layer: str | None = None,
) -> np.ndarray:
    """(N, D) float32 feature vectors of `images` (paths, bytes, PIL images, arrays, or a
    preprocessed (N, 3, H, W) batch): `layer`'s output, global-average-pooled when 4-D, or
    by default the input of the classifier head. No-grad passes sized like an audit's."""
    tap = feature_layer(model, layer).tap()
    if isinstance(images, torch.Tensor):
        x = images
    else:
        batches = [model.preprocessing(load_image(image)) for image in images]
        if not batches:
            return np.zeros((0, 0), np.float32)
        x = torch.cat(batches)
    x = x.to(model.device)
    rows = heap_rows(model, x, gradients=False) or len(x)
    parts = []
    with hook_session(model.module, taps=[tap]) as session, torch.no_grad():
        for start in range(0, len(x), max(1, rows)):
            session.forward(x[start : start + rows], input_grad=False)
            parts.append(session.tapped[tap.name].cpu())
    return torch.cat(parts).numpy().astype(np.float32, copy=False)
