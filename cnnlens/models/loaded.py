"""The LoadedModel record: a frozen module plus everything needed to explain it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnlens.models.hooks import model_lock
from cnnlens.models.preprocess import Preprocessing

if TYPE_CHECKING:
    from cnnlens.models.layers import LayerInventory


@dataclass(eq=False)
class LoadedModel:
    """A model in eval mode with frozen parameters, ready to be explained.

    `lock` is the module tree's session lock (`hooks.model_lock`): module hooks are global
    to a module, so two sessions on one model never overlap (the service batches instead).
    """

    name: str
    module: nn.Module
    preprocessing: Preprocessing
    categories: tuple[str, ...]
    weights_sha256: str | None
    weights_source: str
    head: str = "softmax"  # see cnnlens.models.heads
    was_training: bool = False  # handed over in train mode (explained in eval mode regardless)
    # Detectors: the detections shown and explained by default score at least this much.
    score_threshold: float = 0.5

    @property
    def lock(self) -> threading.RLock:
        """The lock every hook session on this model's module takes."""
        return model_lock(self.module)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocessing.input_size

    @property
    def device(self) -> torch.device:
        for parameter in self.module.parameters():
            return parameter.device
        return torch.device("cpu")

    @cached_property
    def layers(self) -> LayerInventory:
        from cnnlens.models.layers import inspect_layers

        return inspect_layers(
            self.module, self.input_size, device=self.device, channels=self.preprocessing.channels
        )

    @property
    def default_layer(self) -> str:
        return self.layers.default_layer

    def to(self, device: str | torch.device) -> LoadedModel:
        """Move the module to a device (in place) and return self."""
        self.module.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        """What the service reports about this model: labels, head, preprocessing, mode."""
        prep = self.preprocessing
        return {
            "name": self.name,
            "labels_count": len(self.categories),
            "head": self.head,
            "preprocessing": {
                "input_size": list(prep.input_size),
                "mean": list(prep.mean),
                "std": list(prep.std),
                "interpolation": prep.interpolation,
                "resize": prep.resize,
                "resize_size": prep.resize_size,
                "channels": prep.channels,
            },
            "weights_source": self.weights_source,
            "was_training": self.was_training,
            "score_threshold": self.score_threshold if self.head == "detection" else None,
        }

    def __repr__(self) -> str:
        """One line (the module's own repr is tens of kilobytes): `model.module` has it."""
        height, width = self.input_size
        mode = ", was_training=True" if self.was_training else ""
        return (
            f"LoadedModel(name={self.name!r}, head={self.head!r}, "
            f"classes={len(self.categories)}, input={width}x{height}, "
            f"weights={self.weights_source!r}{mode})"
        )

    def label_of(self, index: int) -> str:
        if 0 <= index < len(self.categories):
            return self.categories[index]
        return str(index)
