"""The tensor-level driver: `attribute` for one method, `run_methods` for several sharing passes."""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlens.errors import LayerNotFoundError, TargetError
from cnnlens.methods.base import (
    GradientPass,
    MethodContext,
    MethodOutput,
    check_head_support,
    get_method,
    join_outputs,
    parse_params,
)
from cnnlens.methods.passes import rows_per_pass
from cnnlens.methods.targets import Targets, resolve_targets
from cnnlens.models import heads
from cnnlens.models.hooks import hook_session
from cnnlens.models.layers import LayerInventory, inspect_layers
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.preprocess import Preprocessing
from cnnlens.models.regions import Region, RegionError, region_weights

# Per module, then per input size: shapes (hence the default layer and the CAM head check)
# depend on the size the inventory was traced at.
_INVENTORIES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], LayerInventory]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class RunResult:
    outputs: dict[str, MethodOutput]  # by method name
    logits: torch.Tensor  # (B, K), detached
    targets: torch.Tensor  # (B,)
    layer: str
    elapsed_ms: dict[str, float]  # by method; a shared forward is split evenly among its users


def inventory_of(
    model: LoadedModel | nn.Module, input_size: tuple[int, int], channels: int | None = None
) -> LayerInventory:
    """The layer inventory traced at this input size (and channel count)."""
    if isinstance(model, LoadedModel):
        same_channels = channels is None or channels == model.preprocessing.channels
        if tuple(input_size) == tuple(model.input_size) and same_channels:
            return model.layers
        channels = channels or model.preprocessing.channels
        model = model.module
    channels = channels or 3
    by_size = _INVENTORIES.setdefault(model, {})
    key = (channels, *input_size)
    inventory = by_size.get(key)
    if inventory is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        inventory = by_size[key] = inspect_layers(
            model, input_size, device=device, channels=channels
        )
    return inventory


Layer = str | nn.Module | None


def layer_name(model: LoadedModel | nn.Module, layer: Layer) -> str | None:
    """A layer given by name or as the module object itself -> its name."""
    if layer is None or isinstance(layer, str):
        return layer
    module = model.module if isinstance(model, LoadedModel) else model
    for name, child in module.named_modules():
        if child is layer:
            return name
    raise LayerNotFoundError("the layer module given is not part of this model")


def resolve_layer(
    model: LoadedModel | nn.Module,
    layer: Layer,
    input_size: tuple[int, int],
    channels: int | None = None,
) -> str:
    inventory = inventory_of(model, input_size, channels)
    layer = layer_name(model, layer)
    if layer is None:
        return inventory.default_layer
    info = inventory.get(layer)
    if info is None:
        raise inventory.unknown(layer, model.name if isinstance(model, LoadedModel) else None)
    return layer


def run_methods(
    model: LoadedModel | nn.Module,
    x: torch.Tensor,
    methods: Sequence[tuple[str, Any]],
    target: Targets = None,
    layer: Layer = None,
    region: Region = None,
) -> RunResult:
    """Run several methods on one batch: gradient methods share one forward and one
    backward per ReLU rule; the others run their own passes.

    Args:
        model: a LoadedModel or any nn.Module classifier returning logits.
        x: (B, 3, H, W) preprocessed batch (left untouched).
        methods: (name, params) pairs; params a dict, the method's Params or None.
        target: None (top-1), an index, a label, or one per sample.
        layer: module name or module object for layer-based methods (default: the
            model's default layer).
        region: segmentation models: a box (x0, y0, x1, y1) or a mask (H, W) / (B, H, W) in
            the input's pixels that each target's logits are summed over (default: the
            pixels predicted as the target).
    """
    module = model.module if isinstance(model, LoadedModel) else model
    categories = model.categories if isinstance(model, LoadedModel) else ()
    preprocessing = model.preprocessing if isinstance(model, LoadedModel) else Preprocessing()
    head = model.head if isinstance(model, LoadedModel) else "softmax"
    if region is not None and head != heads.SEGMENTATION:
        raise RegionError("a region applies to segmentation models only")
    device = next((p.device for p in module.parameters()), x.device)
    x = x.detach().to(device)
    size, channels = (x.shape[-2], x.shape[-1]), x.shape[1]
    resolved_layer = resolve_layer(model, layer, size, channels)
    inventory = inventory_of(model, size, channels)
    chosen = [(get_method(name), name) for name, _ in methods]
    for method, _ in chosen:
        check_head_support(method, head)
        method.check_model(inventory, resolved_layer)
    parsed = [
        parse_params(method, params)
        for (method, _), (_, params) in zip(chosen, methods, strict=True)
    ]

    gradient_methods = [
        (m, p) for (m, _), p in zip(chosen, parsed, strict=True) if m.kind == "gradient"
    ]
    other_methods = [
        (m, p) for (m, _), p in zip(chosen, parsed, strict=True) if m.kind != "gradient"
    ]
    outputs: dict[str, MethodOutput] = {}
    elapsed: dict[str, float] = {}
    logits: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    region_mask: torch.Tensor | None = None  # (B, h, w), segmentation heads

    def context(
        x: torch.Tensor,
        targets: torch.Tensor,
        region_mask: torch.Tensor | None,
        gradient_pass: GradientPass | None = None,
    ) -> MethodContext:
        return MethodContext(
            module,
            x,
            targets.to(device),
            resolved_layer,
            preprocessing,
            inventory,
            categories,
            gradient_pass,
            head,
            region_mask,
        )

    def shared_pass(x: torch.Tensor, target: Targets) -> _SharedPass:
        """The gradient methods on rows x: one forward, one backward per ReLU rule."""
        with hook_session(module, layers=layers, relu_rules=needs_rules) as session:
            gradient_pass = GradientPass(session, requirements)
            started = time.perf_counter()
            logits = gradient_pass.run_forward(x)
            forward_share = (time.perf_counter() - started) * 1000 / len(gradient_methods)
            targets = _targets(target, logits, categories, x.shape[0], head)
            region_mask = _region(head, region, logits, targets, size)
            gradient_pass.select(targets.to(device), head, region_mask)
            shared_context = context(x, targets, region_mask, gradient_pass)
            outputs: dict[str, MethodOutput] = {}
            elapsed: dict[str, float] = {}
            for method, params in gradient_methods:
                started = time.perf_counter()
                outputs[method.name] = _detached(method.compute(shared_context, params))
                elapsed[method.name] = forward_share + (time.perf_counter() - started) * 1000
            return _SharedPass(outputs, elapsed, logits.detach(), targets, region_mask)

    if gradient_methods:
        requirements = [m.requirements(p, resolved_layer) for m, p in gradient_methods]
        layers = sorted(set().union(*(r.layers for r in requirements)))
        needs_rules = any(rule.value != "gradient" for r in requirements for _, rule in r.gradients)
        rows = _rows_per_shared_pass(inventory, x, head, region)
        joined = _SharedPass.join(
            [
                shared_pass(x[start : start + rows], _target_rows(target, start, rows, len(x)))
                for start in range(0, max(x.shape[0], 1), rows)
            ]
        )
        outputs, elapsed = joined.outputs, joined.elapsed
        logits, targets, region_mask = joined.logits, joined.targets, joined.region_mask

    if logits is None:
        with hook_session(module), torch.no_grad():
            logits = module(x)
    if targets is None:
        targets = _targets(target, logits, categories, x.shape[0], head)
        region_mask = _region(head, region, logits, targets, size)
    for method, params in other_methods:
        started = time.perf_counter()
        with hook_session(module):  # eval mode and frozen weights; methods nest their own
            outputs[method.name] = _detached(
                method.compute(context(x, targets, region_mask), params)
            )
        elapsed[method.name] = (time.perf_counter() - started) * 1000
    return RunResult(outputs, logits, targets, resolved_layer, elapsed)


def attribute(
    method: str,
    model: LoadedModel | nn.Module,
    x: torch.Tensor,
    target: Targets = None,
    layer: Layer = None,
    region: Region = None,
    **params: Any,
) -> torch.Tensor:
    """One method on a preprocessed batch, like captum's `attribute`: the raw map in input space.

    `region` (segmentation models): a box or mask in the input's pixels (see `run_methods`).
    """
    result = run_methods(model, x, [(method, params)], target=target, layer=layer, region=region)
    return result.outputs[method].map


def _targets(
    target: Targets, logits: torch.Tensor, categories: Sequence[str], batch: int, head: str
) -> torch.Tensor:
    scores = heads.ranking(head, logits)  # binary: negative, positive; segmentation: shares
    return resolve_targets(target, scores, categories, batch, scores.shape[1]).to(logits.device)


def _region(
    head: str, region: Region, logits: torch.Tensor, targets: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor | None:
    """(B, h, w) weights of each row's segmentation target; None for classifiers."""
    if head != heads.SEGMENTATION:
        return None
    return region_weights(region, logits, targets.to(logits.device), size)


@dataclass
class _SharedPass:
    """What the shared gradient pass gave for some rows of the batch."""

    outputs: dict[str, MethodOutput]
    elapsed: dict[str, float]
    logits: torch.Tensor
    targets: torch.Tensor
    region_mask: torch.Tensor | None

    @staticmethod
    def join(parts: list[_SharedPass]) -> _SharedPass:
        """Passes over consecutive rows -> one, row by row (times add up)."""
        if len(parts) == 1:
            return parts[0]
        return _SharedPass(
            {name: join_outputs([p.outputs[name] for p in parts]) for name in parts[0].outputs},
            {name: sum(p.elapsed[name] for p in parts) for name in parts[0].elapsed},
            torch.cat([p.logits for p in parts]),
            torch.cat([p.targets for p in parts]),
            None,  # only classifiers are split (see _rows_per_shared_pass)
        )


def _rows_per_shared_pass(
    inventory: LayerInventory, x: torch.Tensor, head: str, region: Region
) -> int:
    """Rows per shared gradient pass: on a CPU, few enough that its activations reuse the
    heap (`passes.rows_per_pass`: a batch of 64 in one pass ran at half the images/s of
    heap-sized passes); the whole batch elsewhere, and for segmentation heads, whose regions
    may be given per row."""
    if x.shape[0] <= 1 or head == heads.SEGMENTATION or region is not None:
        return max(1, x.shape[0])  # (one row: nothing to split, and no inventory walk)
    return max(1, min(x.shape[0], rows_per_pass(inventory, x.device) or x.shape[0]))


def _target_rows(target: Targets, start: int, rows: int, batch: int) -> Targets:
    """The targets of rows start..start+rows: one per sample is sliced, one for all is kept."""
    if target is None or isinstance(target, int | str):
        return target
    if isinstance(target, torch.Tensor) and target.dim() == 0:
        return target
    if not isinstance(target, torch.Tensor | Sequence):
        target = list(target)  # any other iterable of classes
    if len(target) != batch:
        raise TargetError(f"got {len(target)} targets for a batch of {batch}")
    return target[start : start + rows]


def _detached(output: MethodOutput) -> MethodOutput:
    output.map = output.map.detach()
    return output
