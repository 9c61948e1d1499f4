"""Every request within its budget: estimated work and memory, checked before any work starts.

A method declares its passes (`Method.cost`, in rows through the model at the input's size,
see `cnnlens.methods.workload`). A `Calibration` measures one model on its device: seconds
per row forward and backward, and bytes a row keeps. Together they give an `Estimate`:
forward-equivalents (one row through a forward at the calibrated size; a backward counts as
its measured ratio to a forward) and peak bytes. A `Budget` bounds both per request;
`check_budget` refuses what exceeds it with a 422 `over_budget` naming the param to change
and the value that fits, found by search over that param.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import annotated_types
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from cnnlens.errors import OverBudgetError
from cnnlens.methods.base import Method, MethodParams, get_method, parse_params
from cnnlens.methods.workload import Cost, Gradient, Workload
from cnnlens.models.hooks import hook_session
from cnnlens.models.loaded import LoadedModel

DEFAULT_DEADLINE_SHARE = 0.5  # of the deadline a request may plan to use: room for a busy CPU
DEFAULT_MEMORY_BYTES = 3 * 1024**3 // 2  # 1.5 GiB at once per request
# A forward that keeps the graph after a layer only (Grad-CAM's backward stops there): about
# twice a plain forward's live tensors, far below the whole graph.
_LAYER_GRADIENT_FACTOR = 2.0
_FLOAT_BYTES = 4

__all__ = [
    "Budget",
    "Calibration",
    "Cost",
    "Estimate",
    "Workload",
    "calibrate",
    "check_budget",
    "check_methods_budget",
    "cost_params",
    "estimate",
    "estimate_request",
    "layer_channels",
    "request_cost",
]


@dataclass(frozen=True)
class Calibration:
    """One model measured on its device, per row at `input_shape`."""

    input_shape: tuple[int, int, int]  # (C, H, W)
    forward_s: float  # seconds per row, no gradient
    backward_s: float  # seconds per row, backward to the input
    saved_bytes_per_row: int  # what a forward with input gradients keeps for its backward
    inference_bytes_per_row: int  # live tensors of a forward without gradients (estimate)
    device: str = "cpu"

    @property
    def pixels(self) -> int:
        return self.input_shape[1] * self.input_shape[2]

    @property
    def backward_ratio(self) -> float:
        """A backward in forward-equivalents."""
        return self.backward_s / self.forward_s

    def bytes_per_row(self, gradient: Gradient) -> float:
        if gradient == "input":
            return float(self.saved_bytes_per_row)
        if gradient == "layer":
            return self.inference_bytes_per_row * _LAYER_GRADIENT_FACTOR
        return float(self.inference_bytes_per_row)


def calibrate(
    model: LoadedModel | nn.Module,
    input_shape: tuple[int, int, int] | None = None,
    rows: int = 2,
    repeats: int = 3,
) -> Calibration:
    """Time forwards and backwards of `rows` rows (median of `repeats`, after a warm-up) and
    measure the bytes autograd keeps per row (its saved tensors, counted once each)."""
    module = model.module if isinstance(model, LoadedModel) else model
    if input_shape is None:
        if not isinstance(model, LoadedModel):
            raise ValueError("give the input shape of a plain nn.Module")
        input_shape = (3, *model.input_size)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((rows, *input_shape), generator=generator).to(device)
    forward_times, backward_times = [], []
    saved: dict[int, int] = {}  # this round's saved storages: a freed one's address is reused
    saved_bytes = largest = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal largest
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        largest = max(largest, storage.nbytes())
        return tensor

    with hook_session(module) as session:
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            with torch.no_grad():
                session.forward(x, input_grad=False)
            _synchronize(device)
            forward = time.perf_counter() - started
            saved.clear()
            started = time.perf_counter()
            with torch.enable_grad():
                with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
                    logits = session.forward(x, input_grad=True)
                saved_bytes = max(saved_bytes, sum(saved.values()))
                assert session.input is not None
                session.gradients(logits[:, 0], [session.input], retain_graph=False)
            _synchronize(device)
            if attempt:  # the first round warms up allocator and kernels
                forward_times.append(forward)
                backward_times.append(max(time.perf_counter() - started - forward, 0.0))
    forward_s = max(statistics.median(forward_times) / rows, 1e-9)
    return Calibration(
        input_shape=input_shape,
        forward_s=forward_s,
        backward_s=max(statistics.median(backward_times) / rows, forward_s),
        saved_bytes_per_row=max(1, saved_bytes // rows),
        # input, output and one skip tensor of the widest layer are alive at once
        inference_bytes_per_row=max(1, 3 * largest // rows),
        device=str(device),
    )


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Budget:
    """The most one request may use: forward-equivalents and bytes at once."""

    forward_equivalents: float
    memory_bytes: int
    calibration: Calibration
    deadline_s: float | None = None

    @classmethod
    def derive(
        cls,
        calibration: Calibration,
        deadline_s: float,
        *,
        deadline_share: float = DEFAULT_DEADLINE_SHARE,
        forward_equivalents: float | None = None,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> Budget:
        """Work that fits in `deadline_share` of the deadline at the measured forward time,
        unless `forward_equivalents` is configured."""
        if forward_equivalents is None:
            forward_equivalents = deadline_share * deadline_s / calibration.forward_s
        return cls(forward_equivalents, memory_bytes, calibration, deadline_s)


@dataclass(frozen=True)
class Estimate:
    forward_equivalents: float  # lighter first: what orders a queue
    peak_bytes: int
    seconds: float  # at the calibrated speed, on an idle device

    def fits(self, budget: Budget) -> bool:
        return (
            self.forward_equivalents <= budget.forward_equivalents
            and self.peak_bytes <= budget.memory_bytes
        )


def estimate(cost: Cost, workload: Workload, calibration: Calibration) -> Estimate:
    """Forward-equivalents and peak bytes of `cost`, scaled by pixels to the calibrated size."""
    scale = workload.pixels / calibration.pixels
    work = (cost.forwards + cost.backwards * calibration.backward_ratio) * scale
    peak = max(
        (peak.rows * calibration.bytes_per_row(peak.gradient) * scale for peak in cost.peaks),
        default=0.0,
    )
    peak_bytes = int(peak) + cost.resident_values * _FLOAT_BYTES
    return Estimate(work, peak_bytes, work * calibration.forward_s)


def request_cost(chosen: Sequence[tuple[Method, Any]], workload: Workload) -> Cost:
    """Everything one `run_methods` call runs: the driver's forward of the batch (shared by
    the gradient methods, whose declarations carry its memory), then each method's passes."""
    shares_forward = any(method.kind == "gradient" for method, _ in chosen)
    total = (
        Cost.of(forwards=workload.rows)
        if shares_forward
        else Cost.of(forwards=workload.rows, peak_rows=workload.rows)
    )
    for method, params in chosen:
        total = total.then(method.cost(params, workload))
    return total


def estimate_request(
    methods: Sequence[tuple[str | Method, Any]],
    n_targets: int,
    input_shape: tuple[int, int, int],
    calibration: Calibration,
    *,
    layer_channels: int | None = None,
    images: int = 1,
) -> Estimate:
    """The estimate of a request: its `forward_equivalents` orders a queue, lighter first."""
    chosen = _parsed(methods)
    workload = Workload(n_targets * images, input_shape, layer_channels)
    return estimate(request_cost(chosen, workload), workload, calibration)


def layer_channels(model: LoadedModel, layer: str | None) -> int | None:
    """Channels of `layer`, for Score-CAM's cost (None: the default layer, for a caller with
    no resolved plan; a request's plan always names its layer)."""
    info = model.layers.get(layer or model.default_layer)
    if info is None or not info.output_shape:
        return None
    return int(info.output_shape[0])


def check_budget(
    method: str,
    params: BaseModel | dict[str, Any] | None,
    n_targets: int,
    input_shape: tuple[int, int, int],
    budget: Budget,
    *,
    layer_channels: int | None = None,
) -> None:
    """Raise OverBudgetError (422 over_budget) if one method's request exceeds the budget."""
    check_methods_budget(
        [(method, params)], n_targets, input_shape, budget, layer_channels=layer_channels
    )


def check_methods_budget(
    methods: Sequence[tuple[str | Method, Any]],
    n_targets: int,
    input_shape: tuple[int, int, int],
    budget: Budget,
    *,
    layer_channels: int | None = None,
    images: int = 1,
) -> None:
    """Raise OverBudgetError if the methods of one run, together, exceed the budget.

    The message names the first param (of a method in the request, then the number of
    targets) whose change alone makes the request fit, and the value that fits.
    """
    chosen = _parsed(methods)
    workload = Workload(n_targets * images, input_shape, layer_channels)
    calibration = budget.calibration
    found = estimate(request_cost(chosen, workload), workload, calibration)
    if found.fits(budget):
        return
    over_memory = found.peak_bytes > budget.memory_bytes
    names = ", ".join(method.name for method, _ in chosen)
    problem = _describe(found, budget, over_memory)

    def fits(candidate: Sequence[tuple[Method, Any]], load: Workload) -> bool:
        return estimate(request_cost(candidate, load), load, calibration).fits(budget)

    for index, (method, params) in enumerate(chosen):
        for name in cost_params(method, prefer="memory" if over_memory else "time"):
            fix = _search_param(method, params, name, workload, chosen, index, fits)
            if fix is not None:
                value, lower = fix
                verb = "lower" if lower else "raise"
                bound = "at most" if lower else "at least"
                raise OverBudgetError(
                    f"{method.name}: {problem}; {verb} {name} to {bound} {value}",
                    method=method.name,
                    param=name,
                    limit=value,
                )
    for targets in range(n_targets - 1, 0, -1):
        if fits(chosen, Workload(targets * images, input_shape, layer_channels)):
            raise OverBudgetError(
                f"{names}: {problem}; ask for at most {targets} targets",
                method=names,
                param="targets",
                limit=targets,
            )
    raise OverBudgetError(
        f"{names}: {problem}, even with one target; use a lighter method or smaller input",
        method=names,
    )


def cost_params(method: Method, prefer: str | None = None) -> list[str]:
    """Integer params marked `drives_cost` in the method's schema, `prefer`'s kind first."""
    marked = []
    for name, field in method.Params.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("drives_cost"):
            marked.append((name, extra["drives_cost"]))
    return [name for name, kind in marked if kind == prefer] + [
        name for name, kind in marked if kind != prefer
    ]


def _search_param(
    method: Method,
    params: MethodParams,
    name: str,
    workload: Workload,
    chosen: Sequence[tuple[Method, Any]],
    index: int,
    fits: Any,
) -> tuple[int, bool] | None:
    """(value, lowered) nearest to the current one that makes the request fit, else None."""
    current = method.cost_param_value(params, name, workload)
    low, high = _bounds(method.Params, name, current, workload)

    def fits_at(value: int) -> bool:
        candidate = _with(params, name, value)
        if candidate is None:
            return False
        replaced = [*chosen[:index], (method, candidate), *chosen[index + 1 :]]
        return bool(fits(replaced, workload))

    if low < current and fits_at(low):  # cost grows with the param: the largest that fits
        lo, hi = low, current - 1
        while lo < hi:
            middle = (lo + hi + 1) // 2
            lo, hi = (middle, hi) if fits_at(middle) else (lo, middle - 1)
        return lo, True
    if high > current and fits_at(high):  # cost falls as it grows: the smallest that fits
        lo, hi = current + 1, high
        while lo < hi:
            middle = (lo + hi) // 2
            lo, hi = (lo, middle) if fits_at(middle) else (middle + 1, hi)
        return lo, False
    return None


def _bounds(
    params_type: type[MethodParams], name: str, current: int, workload: Workload
) -> tuple[int, int]:
    """The param's declared range; without an upper bound, the input's longer side (a
    window or stride beyond it changes nothing)."""
    low, high = 1, max(current, *workload.input_shape[1:])
    for constraint in params_type.model_fields[name].metadata:
        if isinstance(constraint, annotated_types.Ge):
            low = int(constraint.ge)  # type: ignore[call-overload]
        elif isinstance(constraint, annotated_types.Gt):
            low = int(constraint.gt) + 1  # type: ignore[call-overload]
        elif isinstance(constraint, annotated_types.Le):
            high = int(constraint.le)  # type: ignore[call-overload]
        elif isinstance(constraint, annotated_types.Lt):
            high = int(constraint.lt) - 1  # type: ignore[call-overload]
    return low, max(high, current)


def _with(params: MethodParams, name: str, value: int) -> MethodParams | None:
    try:
        return type(params).model_validate({**params.model_dump(), name: value})
    except ValidationError:
        return None


def _parsed(methods: Sequence[tuple[str | Method, Any]]) -> list[tuple[Method, MethodParams]]:
    """(name or method, params) -> (method, validated params); resolved pairs pass as they are."""
    chosen = []
    for name, params in methods:
        method = name if isinstance(name, Method) else get_method(name)
        chosen.append((method, parse_params(method, params)))
    return chosen


def _describe(found: Estimate, budget: Budget, over_memory: bool) -> str:
    if over_memory:
        return (
            f"would need about {_bytes(found.peak_bytes)} at once, over the "
            f"{_bytes(budget.memory_bytes)} memory budget"
        )
    deadline = f" ({budget.deadline_s:g} s deadline)" if budget.deadline_s else ""
    return (
        f"would cost about {found.forward_equivalents:.0f} forward passes "
        f"(~{found.seconds:.1f} s here), over the budget of "
        f"{budget.forward_equivalents:.0f}{deadline}"
    )


def _bytes(count: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"
