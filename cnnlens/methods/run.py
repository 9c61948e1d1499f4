"""The tensor-level driver: `attribute` for one method, `run_methods` for several sharing passes.

A call is resolved once (`plan_run`: methods and their params checked, the layer named and
checked, its default filled in) and then run with its target (`run_plan`); the service
resolves its requests with the same `plan_run` and hands the plan to its worker.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlens.errors import LayerNotFoundError
from cnnlens.methods.base import (
    GradientPass,
    Method,
    MethodContext,
    MethodOutput,
    MethodParams,
    check_head_support,
    get_method,
    join_outputs,
    parse_params,
)
from cnnlens.methods.passes import rows_per_pass
from cnnlens.models import heads
from cnnlens.models.hooks import Tap, hook_session
from cnnlens.models.layers import LayerInventory, inspect_layers
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.outputs import ModelOutput, detached, joined
from cnnlens.models.preprocess import Preprocessing
from cnnlens.models.regions import Region
from cnnlens.targets import Boxes, BoxTarget, Classes, ClassTarget, Target, as_target

# Per module, then per input size: shapes (hence the default layer and the CAM head check)
# depend on the size the inventory was traced at.
_INVENTORIES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], LayerInventory]] = (
    weakref.WeakKeyDictionary()
)

TargetLike = Target | Classes  # a Target, or classes for the model's own kind of target
Layer = str | nn.Module | None


@dataclass
class RunResult:
    outputs: dict[str, MethodOutput]  # by method name
    logits: ModelOutput  # (B, K) or (B, K, h, w), detached; a detector's detections
    target: Target  # resolved: what each row explained
    layer: str
    elapsed_ms: dict[str, float]  # by method; a shared forward is split evenly among its users
    tapped: dict[str, torch.Tensor] = field(default_factory=dict)  # by Tap.name, (B, ...)

    @property
    def targets(self) -> torch.Tensor:
        """(B,) each row's class index."""
        return self.target.indices

    @staticmethod
    def join(parts: Sequence[RunResult]) -> RunResult:
        """Runs over consecutive rows of one batch -> one, row by row (times add up)."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        return RunResult(
            {name: join_outputs([p.outputs[name] for p in parts]) for name in first.outputs},
            joined([p.logits for p in parts]),
            first.target.join([p.target for p in parts[1:]]),
            first.layer,
            {name: sum(p.elapsed_ms.get(name, 0.0) for p in parts) for name in first.elapsed_ms},
            join_tapped([p.tapped for p in parts]),
        )


def join_tapped(parts: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Tapped results of consecutive rows -> the batch's, row by row."""
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]} if parts else {}


@dataclass(frozen=True)
class RunPlan:
    """One call, resolved before any pass: methods with validated params that can explain
    the model, and the checked layer (the default filled in)."""

    methods: tuple[tuple[Method, MethodParams], ...]
    layer: str

    @property
    def names(self) -> list[str]:
        return [method.name for method, _ in self.methods]


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


def layer_name(model: LoadedModel | nn.Module, layer: Layer) -> str | None:
    """A layer given by name or as the module object itself -> its name."""
    if layer is None or isinstance(layer, str):
        return layer
    module = model.module if isinstance(model, LoadedModel) else model
    for name, child in module.named_modules():
        if child is layer:
            return str(name)
    raise LayerNotFoundError("the layer module given is not part of this model")


def resolve_layer(
    model: LoadedModel | nn.Module,
    layer: Layer,
    input_size: tuple[int, int],
    channels: int | None = None,
) -> str:
    """The layer's name, checked against the model's layers; None: the default layer."""
    inventory = inventory_of(model, input_size, channels)
    layer = layer_name(model, layer)
    if layer is None:
        return inventory.default_layer
    if inventory.get(layer) is None:
        raise inventory.unknown(layer, model.name if isinstance(model, LoadedModel) else None)
    return layer


def head_of(model: LoadedModel | nn.Module) -> str:
    return model.head if isinstance(model, LoadedModel) else "softmax"


def plan_run(
    model: LoadedModel | nn.Module,
    methods: Sequence[tuple[str | Method, Any]],
    layer: Layer = None,
    input_shape: tuple[int, int, int] | None = None,
    head: str | None = None,
) -> RunPlan:
    """Resolve a call once: each method known and able to explain this model at this layer
    (422 otherwise), its params validated, the layer checked (default filled in).
    `input_shape` (C, H, W): the batch's (default: the LoadedModel's own input); `head`: the
    model's (default: a LoadedModel's, softmax for a plain module)."""
    if input_shape is None:
        assert isinstance(model, LoadedModel), "an nn.Module's plan needs the input shape"
        input_shape = (model.preprocessing.channels, *model.input_size)
    channels, size = input_shape[0], (input_shape[1], input_shape[2])
    resolved_layer = resolve_layer(model, layer, size, channels)
    inventory = inventory_of(model, size, channels)
    chosen = []
    for name, params in methods:
        method = name if isinstance(name, Method) else get_method(name)
        check_head_support(method, head or head_of(model))
        method.check_model(inventory, resolved_layer)
        chosen.append((method, parse_params(method, params)))
    return RunPlan(tuple(chosen), resolved_layer)


def run_methods(
    model: LoadedModel | nn.Module,
    x: torch.Tensor,
    methods: Sequence[tuple[str, Any]],
    target: TargetLike = None,
    layer: Layer = None,
    region: Region = None,
    box: Boxes | None = None,
    taps: Sequence[Tap] = (),
) -> RunResult:
    """Run several methods on one batch: gradient methods share one forward and one
    backward per ReLU rule; the others run their own passes.

    Args:
        model: a LoadedModel or any nn.Module classifier returning logits.
        x: (B, 3, H, W) preprocessed batch (left untouched).
        methods: (name, params) pairs; params a dict, the method's Params or None.
        target: a Target (`cnnlens.targets`: ClassTarget, RegionTarget, BoxTarget), or
            for the model's own kind: None (top-1), an index, a label, or one per sample.
        layer: module name or module object for layer-based methods (default: the
            model's default layer).
        region: segmentation models: a box (x0, y0, x1, y1) or a mask (H, W) / (B, H, W) in
            the input's pixels that each target's logits are summed over (default: the
            pixels predicted as the target); the same as `RegionTarget(target, region)`.
        box: detectors: the detection to explain, x0, y0, x1, y1 in the input's pixels, one
            for every row or (B, 4); `target` its label (default: the label of the detection
            the box matches). Without a box: each row's highest-scoring detection (of the
            `target` label). The same as `BoxTarget(target, box)`.
    """
    wanted = as_target(target, head_of(model), x.shape[0], region, box)
    head = heads.DETECTION if isinstance(wanted, BoxTarget) else None  # a plain module's too
    plan = plan_run(model, methods, layer, (x.shape[1], x.shape[2], x.shape[3]), head)
    return run_plan(model, x, plan, wanted, taps)


def run_plan(
    model: LoadedModel | nn.Module,
    x: torch.Tensor,
    plan: RunPlan,
    target: Target,
    taps: Sequence[Tap] = (),
) -> RunResult:
    """Run a resolved call (`plan_run`) on the batch x for `target` (`as_target`); `taps`
    read their layers in the call's own forward (`RunResult.tapped`)."""
    batch = _Batch.of(model, x, plan)
    gradient = [(m, p) for m, p in plan.methods if m.kind == "gradient"]
    others = [(m, p) for m, p in plan.methods if m.kind != "gradient"]
    if gradient:
        rows = _rows_per_shared_pass(batch, target)
        result = RunResult.join(
            [
                batch.shared_pass(start, rows, gradient, target, taps)
                for start in range(0, max(batch.x.shape[0], 1), rows)
            ]
        )
    else:
        with hook_session(batch.module, taps=taps) as session, torch.no_grad():
            logits = session.forward(batch.x, input_grad=False) if taps else batch.module(batch.x)
            tapped = dict(session.tapped)
        result = RunResult({}, logits, batch.resolve(target, logits), plan.layer, {}, tapped)
    for method, params in others:
        started = time.perf_counter()
        with hook_session(batch.module):  # eval mode and frozen weights; methods nest their own
            output = method.compute(batch.context(batch.x, result.target), params)
        result.outputs[method.name] = _detached(output)
        result.elapsed_ms[method.name] = (time.perf_counter() - started) * 1000
    result.outputs = {name: result.outputs[name] for name in plan.names}  # the asked order
    return result


def attribute(
    method: str,
    model: LoadedModel | nn.Module,
    x: torch.Tensor,
    target: TargetLike = None,
    layer: Layer = None,
    region: Region = None,
    box: Boxes | None = None,
    **params: Any,
) -> torch.Tensor:
    """One method on a preprocessed batch, like captum's `attribute`: the raw map in input space.

    `target`: as `run_methods`'s (a Target, or classes); `region` (segmentation models): a box
    or mask in the input's pixels; `box` (detectors): the detection's box in the input's
    pixels (see `run_methods`).
    """
    result = run_methods(
        model, x, [(method, params)], target=target, layer=layer, region=region, box=box
    )
    return result.outputs[method].map


@dataclass
class _Batch:
    """What every pass of one call shares: the model's parts and the batch on its device."""

    module: nn.Module
    x: torch.Tensor  # (B, C, H, W) on the model's device, detached
    layer: str
    preprocessing: Preprocessing
    inventory: LayerInventory
    categories: Sequence[str]
    head: str

    @staticmethod
    def of(model: LoadedModel | nn.Module, x: torch.Tensor, plan: RunPlan) -> _Batch:
        module = model.module if isinstance(model, LoadedModel) else model
        device = next((p.device for p in module.parameters()), x.device)
        x = x.detach().to(device)
        loaded = model if isinstance(model, LoadedModel) else None
        return _Batch(
            module,
            x,
            plan.layer,
            loaded.preprocessing if loaded else Preprocessing(),
            inventory_of(model, (x.shape[-2], x.shape[-1]), x.shape[1]),
            loaded.categories if loaded else (),
            head_of(model),
        )

    def resolve(self, target: Target, logits: ModelOutput) -> Target:
        size = (self.x.shape[-2], self.x.shape[-1])
        return target.resolve(logits, head=self.head, categories=self.categories, input_size=size)

    def context(
        self, x: torch.Tensor, target: Target, gradient_pass: GradientPass | None = None
    ) -> MethodContext:
        return MethodContext(
            self.module,
            x,
            target,
            self.layer,
            self.preprocessing,
            self.inventory,
            self.categories,
            gradient_pass,
        )

    def shared_pass(
        self,
        start: int,
        rows: int,
        methods: Sequence[tuple[Method, MethodParams]],
        target: Target,
        taps: Sequence[Tap] = (),
    ) -> RunResult:
        """The gradient methods on rows start..start+rows: one forward, one backward per
        ReLU rule."""
        x = self.x[start : start + rows]
        requirements = [m.requirements(p, self.layer) for m, p in methods]
        layers = sorted(set().union(*(r.layers for r in requirements)))
        rules = any(rule.value != "gradient" for r in requirements for _, rule in r.gradients)
        with hook_session(self.module, layers=layers, relu_rules=rules, taps=taps) as session:
            gradient_pass = GradientPass(session, requirements)
            started = time.perf_counter()
            logits = gradient_pass.run_forward(x)
            forward_share = (time.perf_counter() - started) * 1000 / len(methods)
            resolved = self.resolve(target.take(slice(start, start + rows)), logits)
            gradient_pass.select(resolved)
            context = self.context(x, resolved, gradient_pass)
            outputs: dict[str, MethodOutput] = {}
            elapsed: dict[str, float] = {}
            for method, params in methods:
                started = time.perf_counter()
                outputs[method.name] = _detached(method.compute(context, params))
                elapsed[method.name] = forward_share + (time.perf_counter() - started) * 1000
            tapped = dict(session.tapped)
            return RunResult(outputs, detached(logits), resolved, self.layer, elapsed, tapped)


def _rows_per_shared_pass(batch: _Batch, target: Target) -> int:
    """Rows per shared gradient pass: on a CPU, few enough that its activations reuse the
    heap (`passes.rows_per_pass`: a batch of 64 in one pass ran at half the images/s of
    heap-sized passes); the whole batch elsewhere, and for segmentation heads."""
    x = batch.x
    if x.shape[0] <= 1 or batch.head == heads.SEGMENTATION or not isinstance(target, ClassTarget):
        return max(1, x.shape[0])  # (one row: nothing to split, and no inventory walk)
    return max(1, min(x.shape[0], rows_per_pass(batch.inventory, x.device) or x.shape[0]))


def _detached(output: MethodOutput) -> MethodOutput:
    output.map = output.map.detach()
    return output
