"""What each recorded call does to space: pointwise, a sliding window, a constant pad, or
anything else (which the engine computes densely).

A pointwise call computes each output position from the same position of its inputs (eval
BatchNorm, activations, residual adds, channel concatenation), so a changed box passes
through unchanged. A window call (conv2d, max/avg pool) changes the outputs whose window
touches the box; its geometry is normalized here to kernel, stride, dilation and the
padding on each side.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from cnnlens.incremental.graph import OpNode, Ref

_T = torch.Tensor
POINTWISE_FUNCTIONS: set[Any] = {
    F.relu, F.relu_, F.relu6, F.hardtanh, F.hardtanh_, F.leaky_relu, F.leaky_relu_, F.elu,
    F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.sigmoid,
    F.tanh, F.softplus, F.relu6, F.threshold, F.logsigmoid,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp, torch.clip, torch.abs,
    torch.neg, torch.exp, torch.add, torch.sub, torch.mul, torch.div, torch.maximum,
    torch.minimum,
    _T.relu, _T.relu_, _T.sigmoid, _T.sigmoid_, _T.tanh, _T.clamp, _T.clamp_, _T.clip,
    _T.abs, _T.neg, _T.exp, _T.clone, _T.contiguous, _T.add, _T.add_, _T.sub, _T.sub_,
    _T.mul, _T.mul_, _T.div, _T.div_, _T.__add__, _T.__radd__, _T.__iadd__, _T.__sub__,
    _T.__rsub__, _T.__isub__, _T.__mul__, _T.__rmul__, _T.__imul__, _T.__truediv__,
    _T.__itruediv__, _T.__neg__,
    operator.add, operator.mul,
}  # fmt: skip
_NEEDS_EVAL = {F.batch_norm: 5, F.dropout: 2, F.dropout2d: 2, F.alpha_dropout: 2}
_CONCATENATIONS = {torch.cat, torch.concat, torch.concatenate}
_MAX_POOLS = {F.max_pool2d, torch.max_pool2d}
_AVG_POOLS = {F.avg_pool2d, torch._C._nn.avg_pool2d}
_CONVOLUTIONS = {F.conv2d, torch.conv2d}


def _argument(node: OpNode, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, list | tuple):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def is_pointwise(node: OpNode, shapes: list[tuple[int, ...]]) -> bool:
    """Each output position depends only on the same position of every graph input."""
    spatial = node.spatial
    if not _pointwise_call(node) or spatial is None or node.shape[0] != 1:
        return False
    for value in [*node.args, *node.kwargs.values()]:
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, Ref):
                shape = shapes[item.node]
                if len(shape) != 4 or shape[2:] != spatial:
                    return False
            elif isinstance(item, torch.Tensor) and item.dim() >= 2 and item.shape[-2:] != (1, 1):
                return False  # a constant with spatial extent would need gathering
    return True


def _pointwise_call(node: OpNode) -> bool:
    """The function is pointwise as called: normalization in eval mode (batch norm with
    running statistics), concatenation along channels, or a pointwise function."""
    func = node.func
    if func in _NEEDS_EVAL:
        if bool(_argument(node, _NEEDS_EVAL[func], "training", True)):
            return False
        return not (func is F.batch_norm and _argument(node, 1, "running_mean", None) is None)
    if func in _CONCATENATIONS:
        return int(_argument(node, 1, "dim", 0)) in (1, -3)
    return func in POINTWISE_FUNCTIONS


@dataclass(frozen=True)
class Window:
    """A sliding-window call along (rows, cols): output o reads padded input rows
    o*stride .. o*stride + dilation*(kernel-1); padding[0] rows sit before row 0."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: tuple[int, int]  # (top, left); bottom / right follow from the output size
    pad_value: float
    run: Callable[[torch.Tensor, list[Any]], torch.Tensor]  # (region, filled args) -> output

    def span(self, axis: int) -> int:
        return self.dilation[axis] * (self.kernel[axis] - 1) + 1


def _conv_padding(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> Any:
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        return tuple((dilation[a] * (kernel[a] - 1)) // 2 for a in (0, 1))
    return _pair(padding)


def window_of(node: OpNode) -> Window | None:
    """The geometry of a conv / pool call, or None when it is not a plain window."""
    func = node.func
    if func in _CONVOLUTIONS:
        weight = _argument(node, 1, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
            return None
        kernel = (int(weight.shape[2]), int(weight.shape[3]))
        stride = _pair(_argument(node, 3, "stride", 1))
        dilation = _pair(_argument(node, 5, "dilation", 1))
        padding = _conv_padding(_argument(node, 4, "padding", 0), kernel, dilation)
        groups = int(_argument(node, 6, "groups", 1))

        def run_conv(region: torch.Tensor, args: list[Any]) -> torch.Tensor:
            bias = args[2] if len(args) > 2 else None
            return F.conv2d(region, args[1], bias, stride, 0, dilation, groups)

        return Window(kernel, stride, dilation, padding, 0.0, run_conv)
    if func in _MAX_POOLS:
        if bool(_argument(node, 6, "return_indices", False)):
            return None
        kernel = _pair(_argument(node, 1, "kernel_size", 1))
        stride_value = _argument(node, 2, "stride", None)
        stride = kernel if stride_value in (None, [], ()) else _pair(stride_value)
        dilation = _pair(_argument(node, 4, "dilation", 1))
        padding = _pair(_argument(node, 3, "padding", 0))

        def run_max(region: torch.Tensor, args: list[Any]) -> torch.Tensor:
            return F.max_pool2d(region, kernel, stride, 0, dilation)

        # Padding and ceil_mode's clipped windows both behave like -inf cells.
        return Window(kernel, stride, dilation, padding, -math.inf, run_max)
    if func in _AVG_POOLS:
        kernel = _pair(_argument(node, 1, "kernel_size", 1))
        stride_value = _argument(node, 2, "stride", None)
        stride = kernel if stride_value in (None, [], ()) else _pair(stride_value)
        padding = _pair(_argument(node, 3, "padding", 0))
        ceil_mode = bool(_argument(node, 4, "ceil_mode", False))
        include_pad = bool(_argument(node, 5, "count_include_pad", True))
        divisor = _argument(node, 6, "divisor_override", None)
        if ceil_mode or (padding != (0, 0) and not include_pad):
            return None  # the divisor would depend on the position

        def run_avg(region: torch.Tensor, args: list[Any]) -> torch.Tensor:
            return F.avg_pool2d(region, kernel, stride, 0, False, True, divisor)

        return Window(kernel, stride, (1, 1), padding, 0.0, run_avg)
    return None


def constant_pad_of(node: OpNode) -> tuple[int, int] | None:
    """(top, left) of an F.pad call that only adds constant, non-negative rows / columns."""
    if node.func is not F.pad:
        return None
    pad = list(_argument(node, 1, "pad", []))
    mode = _argument(node, 2, "mode", "constant")
    if mode != "constant" or len(pad) not in (2, 4) or any(int(p) < 0 for p in pad):
        return None
    left = int(pad[0])
    top = int(pad[2]) if len(pad) == 4 else 0
    return (top, left)


def conv_macs_per_position(node: OpNode) -> int:
    """Multiply-adds per output position of a conv call (0 for anything else)."""
    if node.func not in _CONVOLUTIONS:
        return 0
    weight = _argument(node, 1, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return 0
    return int(weight.numel())
