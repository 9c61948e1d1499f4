"""Zennit's LRP composites for a model: the canonizers its architecture needs, and the models
whose layers no rule covers (refused before any work).

Zennit propagates relevance module by module: each module type gets a rule, batch norms are
merged into the convolution before them, and torchvision's ResNet blocks get their residual
sum rewritten as a module (`zennit.torchvision.ResNetCanonizer`). A sum or product of two
activations anywhere else, or a parameterized layer no rule covers, would pass relevance on
as a plain gradient: not LRP, so refused. Leaves without weights of their own that no rule
covers (an identity, a custom activation) pass relevance on as their gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import VGG
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.canonizers import Canonizer, SequentialMergeBatchNorm
from zennit.composites import (
    EpsilonAlpha2Beta1,
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlus,
    EpsilonPlusFlat,
)
from zennit.core import Composite
from zennit.torchvision import ResNetCanonizer, VGGCanonizer
from zennit.types import Activation, BatchNorm, Convolution

from cnnlens.errors import IncompatibleModelError
from cnnlens.models.layers import LayerInventory

COMPOSITES: dict[str, type[Composite]] = {
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_gamma_box": EpsilonGammaBox,
    "epsilon_alpha2_beta1_flat": EpsilonAlpha2Beta1Flat,
    "epsilon_plus": EpsilonPlus,
    "epsilon_alpha2_beta1": EpsilonAlpha2Beta1,
}
_RESNET_BLOCKS = (BasicBlock, Bottleneck)
# Layers with weights that every composite has a rule for (batch norms merged or passed).
_COVERED = (Convolution, nn.Linear, BatchNorm, Activation)


def canonizers(model: nn.Module, modules: dict[str, nn.Module]) -> list[Canonizer]:
    """Zennit's canonizers for the architecture: torchvision's ResNet and VGG ones, else the
    batch norms merged into the layer before them."""
    if any(isinstance(module, _RESNET_BLOCKS) for module in modules.values()):
        return [ResNetCanonizer()]
    if isinstance(model, VGG):
        return [VGGCanonizer()]
    return [SequentialMergeBatchNorm()]


def composite(
    name: str,
    model: nn.Module,
    modules: dict[str, nn.Module],
    low: torch.Tensor,
    high: torch.Tensor,
    epsilon: float,
    gamma: float,
) -> Composite:
    """Zennit's composite `name` with the architecture's canonizers; `low`/`high` (the box
    rule's pixel bounds) and `gamma` only where the composite has those rules."""
    options: dict[str, Any] = {"epsilon": epsilon, "canonizers": canonizers(model, modules)}
    if name == "epsilon_gamma_box":
        options.update(low=low, high=high, gamma=gamma)
    return COMPOSITES[name](**options)


def check_lrp(inventory: LayerInventory) -> None:
    """Refuse (422) a model with layers or operations no LRP rule covers."""
    types = inventory.module_types
    ran = {layer.name: layer for layer in inventory.layers}
    parents = {name.rpartition(".")[0] for name in types if name} | {""}
    uncovered = [  # leaves with weights of their own that no rule covers
        f"{name} ({layer.type})"
        for name, layer in ran.items()
        if name not in parents
        and name in inventory.parameterized
        and not issubclass(types.get(name, nn.Module), _COVERED)
    ]
    if uncovered:
        raise IncompatibleModelError(
            f"lrp: no LRP rule covers these layers: {', '.join(uncovered[:5])}; Zennit's "
            "composites cover convolutions, linear layers, batch norms, pooling and activations"
        )
    canonized = sum(
        layer.calls for name, layer in ran.items() if issubclass(types[name], _RESNET_BLOCKS)
    )
    if inventory.activation_sums > canonized:
        raise IncompatibleModelError(
            f"lrp: the model adds activations outside torchvision's ResNet blocks "
            f"({inventory.activation_sums - canonized} residual sums), which no canonizer "
            "rewrites as a module: LRP would count their relevance twice"
        )
    if inventory.activation_products:
        raise IncompatibleModelError(
            f"lrp: the model multiplies activations together ({inventory.activation_products} "
            "products, e.g. squeeze-excitation gates), for which LRP has no rule"
        )
