"""Shared body of deconvnet and guided backprop: project a class score or one activation."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, model_validator

from cnnlens.errors import InvalidParamsError
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, Requirements
from cnnlens.models.hooks import ReluRule


class ProjectionParams(MethodParams):
    """Project the class score (default), or one activation of the chosen layer.

    With `channel` set, the signal starts at that feature map of `layer`, at `position`
    (row, column on the layer's grid) or, if omitted, at the channel's strongest activation,
    with every other activation of the layer set to zero (Zeiler & Fergus, section 2.1).
    """

    channel: int | None = Field(None, ge=0, description="feature map of `layer` to project")
    position: tuple[int, int] | None = Field(
        None, description="(row, column) on the layer's grid; default: the strongest activation"
    )

    @model_validator(mode="after")
    def _position_needs_channel(self) -> ProjectionParams:
        if self.position is not None and self.channel is None:
            raise ValueError("position needs a channel: it is a place on one feature map")
        return self


def project(context: MethodContext, params: ProjectionParams, rule: ReluRule) -> torch.Tensor:
    """(B, 3, H, W): gradient of the score or activation w.r.t. the input under `rule`."""
    shared = context.shared
    if params.channel is None:
        return shared.input_gradient(rule)
    activations = shared.activation(context.layer)  # (B, C, h, w)
    if activations.dim() != 4:
        raise InvalidParamsError(f"layer {context.layer!r} has no (C, h, w) output")
    channels, height, width = activations.shape[1:]
    if not 0 <= params.channel < channels:
        raise InvalidParamsError(f"channel {params.channel} is out of range 0..{channels - 1}")
    feature = activations[:, params.channel]  # (B, h, w)
    if params.position is None:
        flat = feature.detach().flatten(1).argmax(dim=1)  # (B,)
        rows, cols = flat // width, flat % width
    else:
        row, col = params.position
        if not (0 <= row < height and 0 <= col < width):
            raise InvalidParamsError(f"position {params.position} is outside {height}x{width}")
        rows = torch.full((feature.shape[0],), row, device=feature.device)
        cols = torch.full((feature.shape[0],), col, device=feature.device)
    batch = torch.arange(feature.shape[0], device=feature.device)
    unit = feature[batch, rows, cols]  # (B,)
    assert shared.session.input is not None
    (gradient,) = shared.session.gradients(unit, [shared.session.input], rule=rule)
    return gradient


class ProjectionMethod(Method):
    """The input gradient (or a layer's, projected) under one ReLU rule."""

    Params = ProjectionParams
    rule: ClassVar[ReluRule]

    def requirements(self, params: ProjectionParams, layer: str) -> Requirements:
        layers = frozenset({layer}) if params.channel is not None else frozenset()
        return Requirements.input_gradient(self.rule, layers)

    def compute(self, context: MethodContext, params: ProjectionParams) -> MethodOutput:
        return MethodOutput(project(context, params, self.rule))
