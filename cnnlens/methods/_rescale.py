"""DeepLIFT's Rescale rule through Captum, for every element-wise activation module, and the
models it cannot serve.

Captum's DeepLIFT replaces the gradient of each nonlinearity *module* it knows by the
multiplier (y - y') / (x - x') (Shrikumar et al. 2017, sec. 3.5.2), from the input and output
it stores on the module during the forward. Its table lacks ReLU6, SiLU, GELU and other
element-wise activations, which it would silently treat as linear: `RescaleMixin` gives them
the same Rescale multiplier (Captum's own `nonlinear`). Functional activations and reused
modules (the stored references would mix) are refused before any work.
"""

from __future__ import annotations

from typing import Any

import torch
from captum.attr import DeepLift, DeepLiftShap
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR, nonlinear
from torch import nn

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods._captum import CaptumMethod
from cnnlens.models.layers import LayerInventory

# Element-wise activations missing from Captum's table, with the same Rescale multiplier.
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish, nn.Hardsigmoid,
    nn.SELU, nn.CELU, nn.Softsign,
)  # fmt: skip
_RULE_TYPES = (*SUPPORTED_NON_LINEAR, *ELEMENTWISE)


class RescaleMixin:
    """Captum's DeepLIFT hooks on `ELEMENTWISE` modules and subclasses too: Captum's rule for
    the nearest class in its table, else the Rescale multiplier."""

    eps: float

    def _is_non_linear(self, module: nn.Module) -> bool:
        return isinstance(module, _RULE_TYPES)

    def _backward_hook(
        self, module: nn.Module, grad_input: torch.Tensor, grad_output: torch.Tensor
    ) -> torch.Tensor:
        rule = next(
            (
                SUPPORTED_NON_LINEAR[kind]
                for kind in type(module).__mro__
                if kind in SUPPORTED_NON_LINEAR
            ),
            nonlinear,
        )
        stored = vars(module)  # set by Captum's forward hooks; its maxpool rule reads them too
        if "input" not in stored or "output" not in stored:  # pragma: no cover - refused before
            raise IncompatibleModelError(f"DeepLIFT: module {module} ran more than once")
        inputs, outputs = stored["input"], stored["output"]
        multipliers = rule(module, inputs, outputs, grad_input, grad_output, eps=self.eps)
        del stored["input"], stored["output"]
        return multipliers  # type: ignore[no-any-return]


class RescaleDeepLift(RescaleMixin, DeepLift):  # type: ignore[misc]
    """captum.attr.DeepLift with every element-wise activation module."""


class RescaleDeepLiftShap(RescaleMixin, DeepLiftShap):  # type: ignore[misc]
    """captum.attr.DeepLiftShap with every element-wise activation module."""


class RescaleMethod(CaptumMethod):
    """A Captum DeepLIFT method: refused on models its multipliers cannot reach."""

    def check_model(self, inventory: LayerInventory, layer: str) -> None:
        check_rescale(self.name, inventory)


def check_rescale(method: str, inventory: LayerInventory) -> None:
    """Refuse (422) a model whose nonlinearities DeepLIFT's multipliers cannot reach."""
    reused = [
        f"{layer.name} ({layer.type}, {layer.calls} calls)"
        for layer in inventory.layers
        if layer.calls > 1 and _is_rule_type(inventory.module_types.get(layer.name))
    ]
    if reused:
        raise IncompatibleModelError(
            f"{method}: DeepLIFT keeps each activation's reference on its module, and these "
            f"modules run more than once per forward: {', '.join(reused[:5])}; give each use "
            "its own module (torchvision's ResNet blocks reuse one ReLU), or use "
            "integrated_gradients"
        )
    compatibility = inventory.compatibility
    functional = [name for name in compatibility.unsupported_activations if " (" not in name]
    if compatibility.functional_relu_calls:
        functional.append(f"relu ({compatibility.functional_relu_calls} calls)")
    if functional:
        raise IncompatibleModelError(
            f"{method}: DeepLIFT's Rescale rule applies to activation modules; this model calls "
            f"functional ones ({', '.join(functional[:5])}) that it would treat as linear"
        )
    if inventory.activation_products:
        raise IncompatibleModelError(
            f"{method}: the model multiplies activations together "
            f"({inventory.activation_products} products, e.g. squeeze-excitation gates), for "
            "which DeepLIFT's Rescale rule has no multiplier"
        )


def _is_rule_type(module_type: Any) -> bool:
    return isinstance(module_type, type) and issubclass(module_type, _RULE_TYPES)
