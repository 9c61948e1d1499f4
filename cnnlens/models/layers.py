"""Layer inventory: names, types, output shapes, receptive fields, default layer, compatibility.

Receptive fields follow the recursive formula of the course notes (seeds/000, section 3),
r_l = r_{l-1} + (k_l - 1) * j_{l-1},  j_l = j_{l-1} * s_l,  with k' = d(k - 1) + 1 for
dilation d. They are propagated tensor by tensor through one traced forward, so branches
and skip connections take the larger field of their operands instead of being chained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlens.errors import IncompatibleModelError, LayerNotFoundError, unknown_layer
from cnnlens.models.hooks import (
    _RELU_FUNCTIONS,
    _UNSUPPORTED_FUNCTIONS,
    intercept_torch_functions,
    observe_modules,
    unsupported_activation_modules,
)
from cnnlens.models.levels import Levels, is_levels, stacked_shape
from cnnlens.models.outputs import is_detections

_CONV_FUNCTIONS = {F.conv2d, torch.conv2d}
_POOL_FUNCTIONS = {F.max_pool2d, F.avg_pool2d, torch.max_pool2d, torch._C._nn.avg_pool2d}
_ADAPTIVE_POOL_FUNCTIONS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_NOT_A_TARGET = (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten,
)  # fmt: skip
_RELU_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
# Element-wise ops of two activations, by the name torch functions and tensor methods carry.
_SUM_NAMES = {"add", "add_", "__add__", "__iadd__", "__radd__"} | {
    "sub", "sub_", "__sub__", "__isub__", "__rsub__",
}  # fmt: skip
_PRODUCT_NAMES = {"mul", "mul_", "__mul__", "__imul__", "__rmul__"} | {
    "div", "div_", "__truediv__", "__itruediv__", "__rtruediv__",
}  # fmt: skip


@dataclass
class LayerInfo:
    name: str
    type: str
    output_shape: list[int] | None  # (C, h, w) for spatial layers, batch dim dropped
    receptive_field: int | None  # pixels; None = the whole image (after global pooling)
    stride: int | None  # input pixels between neighbouring outputs (the "jump")
    calls: int  # how often the module runs per forward (shared modules run more than once)


@dataclass
class CompatibilityReport:
    relu_modules: int
    inplace_relu_modules: int
    relu6_modules: int
    functional_relu_calls: int
    unsupported_activations: list[str]
    guided_methods: bool  # guided backprop / deconvnet / guided Grad-CAM are valid
    gap_linear_head: bool  # CAM is valid: logits = W . GAP(default layer) + b
    classifier: str | None
    notes: list[str] = field(default_factory=list)


@dataclass
class LayerInventory:
    layers: list[LayerInfo]
    default_layer: str
    compatibility: CompatibilityReport
    # The class of every named module, for checks that need more than its name (a subclass),
    # and the modules that hold parameters or buffers of their own.
    module_types: dict[str, type[nn.Module]] = field(default_factory=dict)
    parameterized: frozenset[str] = frozenset()
    # Element-wise sums (a residual's `out + identity`) and products (a gate's `x * s`) of two
    # activations in one forward: rules that propagate module by module (LRP, DeepLIFT) have
    # none for them unless a canonizer rewrites them as a module.
    activation_sums: int = 0
    activation_products: int = 0

    def get(self, name: str) -> LayerInfo | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def unknown(self, name: str, model: str | None = None) -> LayerNotFoundError:
        """The error for a layer name this model does not have: the closest names, and
        where the whole list is."""
        return unknown_layer(name, self.names, model)


class _ReceptiveFieldTracer:
    """Attaches (receptive field, jump) to every tensor derived from the input."""

    def __init__(self) -> None:
        self.fields: dict[int, tuple[int | None, int | None]] = {}
        self._alive: list[torch.Tensor] = []  # keep tensors alive so ids stay unique
        self.relu_calls = 0
        self.unsupported: set[str] = set()
        self.sums = 0
        self.products = 0

    def track(self, tensor: torch.Tensor, value: tuple[int | None, int | None]) -> None:
        self.fields[id(tensor)] = value
        self._alive.append(tensor)

    def __call__(
        self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        output = func(*args, **kwargs)
        if func in _RELU_FUNCTIONS or func in (F.relu6, F.hardtanh, F.hardtanh_):
            self.relu_calls += 1
        if func in _UNSUPPORTED_FUNCTIONS:
            self.unsupported.add(getattr(func, "__name__", str(func)))
        tracked = [t for t in _tensors_in(args, kwargs) if id(t) in self.fields]
        known = [self.fields[id(t)] for t in tracked]
        if not known:
            return output
        if len(tracked) >= 2 and all(t.dim() >= 3 for t in tracked):
            name = getattr(func, "__name__", "")
            self.sums += name in _SUM_NAMES
            self.products += name in _PRODUCT_NAMES
        if any(rf is None for rf, _ in known):
            value: tuple[int | None, int | None] = (None, None)
        else:
            rf = max(int(r) for r, _ in known if r is not None)
            jump = max(int(j) for _, j in known if j is not None)
            value = _propagate(func, args, kwargs, rf, jump, output)
        for tensor in _tensors_in((output,), {}):
            if tensor.dim() < 3 and any(t.dim() >= 3 for t in _tensors_in(args, kwargs)):
                self.track(tensor, (None, None))  # spatial dims reduced away: global
            else:
                self.track(tensor, value)
        return output


def _tensors_in(args: Sequence[Any], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(item for item in value if isinstance(item, torch.Tensor))
    return found


def _first(value: Any) -> int:
    return int(value[0]) if isinstance(value, list | tuple) else int(value)


def _argument(
    args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str, default: Any
) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _propagate(
    func: Any, args: Sequence[Any], kwargs: dict[str, Any], rf: int, jump: int, output: Any
) -> tuple[int | None, int | None]:
    """Apply r += (k' - 1) * j, j *= s for convolutions and pools; pass through otherwise."""
    if func in _CONV_FUNCTIONS:
        kernel = int(args[1].shape[-2])
        stride = _first(_argument(args, kwargs, 3, "stride", 1))
        dilation = _first(_argument(args, kwargs, 5, "dilation", 1))
    elif func in _POOL_FUNCTIONS:
        kernel = _first(_argument(args, kwargs, 1, "kernel_size", 1))
        stride_arg = _argument(args, kwargs, 2, "stride", None)
        stride = kernel if stride_arg in (None, [], ()) else _first(stride_arg)
        dilation = _first(kwargs.get("dilation", 1)) if func is F.max_pool2d else 1
    elif func in _ADAPTIVE_POOL_FUNCTIONS:
        size_in = int(args[0].shape[-1])
        size_out = int(output.shape[-1]) if isinstance(output, torch.Tensor) else 1
        if size_out <= 1:
            return None, None
        kernel, stride, dilation = -(-size_in // size_out), size_in // size_out, 1
    else:
        return rf, jump
    return rf + (dilation * (kernel - 1)) * jump, jump * stride


def inspect_layers(
    model: nn.Module,
    input_size: tuple[int, int],
    device: torch.device | str = "cpu",
    channels: int = 3,
) -> LayerInventory:
    """Trace one forward on a fixed random input and describe every named module."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, *input_size, generator=generator).to(device)
    order: list[str] = []
    outputs: dict[str, Any] = {}
    calls: dict[str, int] = {}
    tracer = _ReceptiveFieldTracer()
    tracer.track(x, (1, 1))

    def record(name: str, module: nn.Module, output: Any) -> None:
        calls[name] = calls.get(name, 0) + 1
        outputs[name] = output
        if name in order:
            order.remove(name)
        order.append(name)

    modules = dict(model.named_modules())
    with observe_modules(model, record), torch.no_grad(), intercept_torch_functions(tracer):
        logits = model(x)

    layers = []
    for name in order:
        output = outputs[name]
        shape = list(output.shape[1:]) if isinstance(output, torch.Tensor) else None
        rf, jump = tracer.fields.get(id(output), (None, None)) if shape else (None, None)
        if is_levels(output):  # several maps, read as one stacked tensor (`levels`)
            shape = stacked_shape(output)
            rf, jump = _levels_field(tracer, output)
        layers.append(LayerInfo(name, type(modules[name]).__name__, shape, rf, jump, calls[name]))
    default = _default_layer(layers, modules, logits, outputs)
    report = _compatibility(model, modules, calls, tracer, outputs, default, logits)
    return LayerInventory(
        layers=layers,
        default_layer=default,
        compatibility=report,
        module_types={name: type(module) for name, module in modules.items()},
        parameterized=frozenset(
            name for name, module in modules.items() if module._parameters or module._buffers
        ),
        activation_sums=tracer.sums,
        activation_products=tracer.products,
    )


def _levels_field(tracer: _ReceptiveFieldTracer, levels: Levels) -> tuple[int | None, int | None]:
    """The largest receptive field and jump among the levels (None if any is unknown)."""
    found = [tracer.fields.get(id(level), (None, None)) for level in levels.values()]
    if any(rf is None or jump is None for rf, jump in found):
        return None, None
    return max(int(rf or 0) for rf, _ in found), max(int(jump or 0) for _, jump in found)


def _is_spatial(layer: LayerInfo) -> bool:
    shape = layer.output_shape
    return shape is not None and len(shape) == 3 and shape[1] * shape[2] > 1


def _default_layer(
    layers: list[LayerInfo], modules: dict[str, nn.Module], logits: Any, outputs: dict[str, Any]
) -> str:
    """The output of the last spatial block: the last module to finish with a (C, h, w) map.

    For (B, K, H, W) outputs (segmentation) the trailing layers with K channels are the
    class maps themselves: the default is the feature map before them. A detector's is the
    last layer that outputs several maps, its backbone's feature pyramid (pytorch-grad-cam's
    choice in its Faster R-CNN tutorial); the layers after it (its heads) work per proposal.
    """
    if is_detections(logits):
        pyramids = [layer.name for layer in layers if is_levels(outputs[layer.name])]
        if pyramids:
            return pyramids[-1]
    classes = logits.shape[1] if isinstance(logits, torch.Tensor) and logits.dim() == 4 else None
    candidates = [
        layer
        for layer in reversed(layers)
        if _is_spatial(layer) and not isinstance(modules[layer.name], _NOT_A_TARGET)
    ]
    features = [c for c in candidates if c.output_shape and c.output_shape[0] != classes]
    if features or candidates:
        return (features or candidates)[0].name
    raise IncompatibleModelError("the model has no layer with a spatial (C, h, w) output")


def _compatibility(
    model: nn.Module,
    modules: dict[str, nn.Module],
    calls: dict[str, int],
    tracer: _ReceptiveFieldTracer,
    outputs: dict[str, Any],
    default_layer: str,
    logits: Any,
) -> CompatibilityReport:
    relu_like = {n: m for n, m in modules.items() if isinstance(m, _RELU_MODULES) and n}
    module_relu_calls = sum(calls.get(name, 0) for name in relu_like)
    unsupported = unsupported_activation_modules(model) + sorted(tracer.unsupported)
    classifier, gap_head = _gap_linear_head(modules, outputs.get(default_layer), logits)
    notes = []
    if unsupported:
        notes.append(
            "guided backprop, deconvnet and guided Grad-CAM are refused: " + unsupported[0]
        )
    if not gap_head:
        notes.append("CAM needs global average pooling + one linear layer after the default layer")
    return CompatibilityReport(
        relu_modules=sum(isinstance(m, nn.ReLU) for m in relu_like.values()),
        inplace_relu_modules=sum(bool(getattr(m, "inplace", False)) for m in relu_like.values()),
        relu6_modules=sum(isinstance(m, nn.ReLU6) for m in relu_like.values()),
        functional_relu_calls=max(0, tracer.relu_calls - module_relu_calls),
        unsupported_activations=unsupported,
        guided_methods=not unsupported and tracer.relu_calls > 0,
        gap_linear_head=gap_head,
        classifier=classifier,
        notes=notes,
    )


def find_gap_linear_head(model: nn.Module, activations: torch.Tensor) -> nn.Linear | None:
    """The last Linear whose input width is the activation's channel count, if any."""
    channels = activations.shape[1]
    head = None
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.in_features == channels:
            head = module
    return head


def _gap_linear_head(
    modules: dict[str, nn.Module], activations: Any, logits: Any
) -> tuple[str | None, bool]:
    """Check numerically that logits == Linear(mean over h, w of the default layer)."""
    if not isinstance(activations, torch.Tensor) or not isinstance(logits, torch.Tensor):
        return None, False
    channels = activations.shape[1]
    candidates = [
        (name, m)
        for name, m in modules.items()
        if isinstance(m, nn.Linear) and m.in_features == channels
    ]
    if not candidates:
        return None, False
    name, linear = candidates[-1]
    with torch.no_grad():
        predicted = F.linear(activations.mean(dim=(2, 3)), linear.weight, linear.bias)
    if predicted.shape != logits.shape:
        return name, False
    scale = float(logits.abs().max()) + 1e-6
    return name, bool((predicted - logits).abs().max() <= 1e-3 * scale)
