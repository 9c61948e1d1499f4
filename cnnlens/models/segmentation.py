"""Segmentation models: dict outputs made plain, the head detected from the output's shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cnnlens.errors import InvalidParamsError
from cnnlens.models.heads import SEGMENTATION, HeadError
from cnnlens.models.preprocess import Preprocessing


class MainOutput(nn.Module):
    """A model whose forward returns {"out": logits, "aux": ...} (torchvision's segmentation
    models), returning the "out" tensor only.

    The model's children are registered here under their own names, so layer names and
    state-dict keys stay the model's ("backbone.16", not "model.backbone.16"), and hooks on
    them fire as the model runs.
    """

    def __init__(self, model: nn.Module, key: str = "out") -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self.key = key
        self._model = [model]  # a list: not registered a second time as a child

    @property
    def inner(self) -> nn.Module:
        return self._model[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.inner(x)
        main: torch.Tensor = output[self.key] if isinstance(output, Mapping) else output
        return main

    def train(self, mode: bool = True) -> MainOutput:
        super().train(mode)
        self.inner.training = mode
        return self


def plain_output(module: nn.Module, preprocessing: Preprocessing) -> tuple[nn.Module, Any]:
    """The module (wrapped in `MainOutput` if it returns a dict) and one probe output."""
    output = probe(module, preprocessing)
    if isinstance(output, Mapping):
        if "out" not in output or not isinstance(output["out"], torch.Tensor):
            raise HeadError(
                f"a model returning a dict needs an 'out' tensor; it has keys {sorted(output)}"
            )
        return MainOutput(module), output["out"]
    return module, output


def probe(module: nn.Module, preprocessing: Preprocessing) -> Any:
    """One forward of a zero input of the model's input size (eval mode, no gradients; the
    module's flags restored after)."""
    from cnnlens.models.hooks import frozen_eval

    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    x = torch.zeros(1, preprocessing.channels, *preprocessing.input_size, device=device)
    try:
        with frozen_eval(module), torch.no_grad():
            return module(x)
    except RuntimeError as error:  # typically a size the model cannot take
        raise InvalidParamsError(
            f"the model cannot run on a {tuple(x.shape)} input ({error}); "
            "give its preprocessing (input_size, channels)"
        ) from None


def head_of(output: Any, head: str | None) -> str:
    """The head for a model's output (a probe output, or its rank): segmentation for
    (B, K, H, W) logits, else `head` (default softmax); a head that cannot read it is an error.
    """
    rank = output if isinstance(output, int) else None
    if isinstance(output, torch.Tensor):
        rank = output.dim()
    if rank == 4:
        if head not in (None, SEGMENTATION):
            raise HeadError(
                f"the model returns (B, K, H, W) maps, which a {head} head cannot read: "
                'use head="segmentation"'
            )
        return SEGMENTATION
    if head == SEGMENTATION:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else "no tensor"
        raise HeadError(f"a segmentation head needs (B, K, H, W) outputs; the model gives {shape}")
    return head or "softmax"


def is_torchvision_segmentation(arch: str) -> bool:
    import torchvision

    return arch in torchvision.models.list_models(torchvision.models.segmentation)


def torchvision_categories(arch: str, classes: int) -> tuple[str, ...]:
    """The class names of the architecture's default weights if they have `classes` outputs."""
    import torchvision

    names = torchvision.models.get_model_weights(arch).DEFAULT.meta.get("categories") or []
    if len(names) == classes:
        return tuple(names)
    return tuple(str(index) for index in range(classes))
