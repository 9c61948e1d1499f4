"""Convolution filters: the weights of a conv layer, first-layer ones as RGB tiles."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from cnnlens.errors import IncompatibleModelError, InvalidParamsError, LayerNotFoundError, shown
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register


class FiltersParams(MethodParams):
    conv: str | None = Field(
        None,
        description="conv module to show; default: the layer if it is a Conv2d, "
        "else the model's first Conv2d",
    )
    normalize: Literal["filter", "layer"] = Field(
        "filter", description="RGB tiles scaled to [0, 1] per filter or over the whole layer"
    )


@register
class Filters(Method):
    """W in R^(C_out x C_in x k x k): what each filter looks for in its input channels.

    First-layer filters see RGB directly and are shown as colour tiles (Krizhevsky et al.
    2012, fig. 3; Zeiler & Fergus 2014); deeper ones are reported raw with their norms.
    Shapes: -> map (C_out, C_in / groups, k, k), not per image.
    """

    name = "filters"
    title = "Convolution filters"
    paper = "Krizhevsky et al. 2012 (AlexNet), fig. 3; Zeiler & Fergus 2014, arXiv:1311.2901"
    Params = FiltersParams
    kind = "standalone"
    produces = "weights"
    uses_layer = True
    uses_image = False
    uses_target = False

    def compute(self, context: MethodContext, params: FiltersParams) -> MethodOutput:
        name, conv = _choose_conv(context.model, context.layer, params.conv)
        weights = conv.weight.detach().clone()  # (C_out, C_in / groups, k, k)
        norms = weights.flatten(1).norm(dim=1)  # (C_out,)
        rgb_tiles = _unit_range(weights, params.normalize) if weights.shape[1] == 3 else None
        extras = {
            "layer": name,
            "rgb_tiles": rgb_tiles,
            "norms": norms,
            "bias": None if conv.bias is None else conv.bias.detach().clone(),
        }
        return MethodOutput(weights, extras)


def _choose_conv(model: nn.Module, layer: str, conv_name: str | None) -> tuple[str, nn.Conv2d]:
    """The named conv, else the layer if it is a Conv2d, else the model's first Conv2d."""
    modules = dict(model.named_modules())
    if conv_name is not None:
        if conv_name not in modules:
            raise LayerNotFoundError(
                f"unknown module {shown(conv_name)}; see the model's layer list"
            )
        module = modules[conv_name]
        if not isinstance(module, nn.Conv2d):
            raise InvalidParamsError(
                f"{conv_name!r} is a {type(module).__name__}, not a Conv2d; filters need a conv"
            )
        return conv_name, module
    chosen = modules.get(layer)
    if isinstance(chosen, nn.Conv2d):
        return layer, chosen
    for name, module in modules.items():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise IncompatibleModelError("this model has no Conv2d layer")


def _unit_range(weights: torch.Tensor, scope: str) -> torch.Tensor:
    """Min-max scale to [0, 1], per filter or over the layer; a constant filter is mid-gray."""
    dims = (1, 2, 3) if scope == "filter" else (0, 1, 2, 3)
    low = weights.amin(dim=dims, keepdim=True)
    span = weights.amax(dim=dims, keepdim=True) - low
    scaled = (weights - low) / span.clamp(min=torch.finfo(weights.dtype).tiny)
    return torch.where(span > 0, scaled, torch.full_like(weights, 0.5))
