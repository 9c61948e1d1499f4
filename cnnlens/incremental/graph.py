"""Records one forward of a model as a flat graph of torch calls, and replays it.

The hook manager's torch-function interception sees every top-level torch function and
tensor method the model calls.
Calls that touch a tensor derived from the input become nodes; everything else (weights,
shapes, Python numbers computed from shapes) is baked into the node's arguments, so a graph
is valid for one input size. In-place calls are replayed out of place on a copy, so every
node's value can be cached. Replaying on a perturbed batch and comparing with the model
itself (`verify`) catches what a recording cannot see (data-dependent control flow, ops
that bypass torch functions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlens.models.hooks import intercept_torch_functions


@dataclass(frozen=True)
class Ref:
    """A node's output inside another node's arguments (`item` for tuple outputs)."""

    node: int
    item: int | None = None


@dataclass
class OpNode:
    """One recorded call: `func(*args, **kwargs)` with `Ref`s where graph tensors were."""

    index: int
    func: Callable[..., Any] | None  # None for the input placeholder
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inplace: bool  # mutated and returned its first argument (replayed on a copy)
    shape: tuple[int, ...]  # output shape at batch 1 (empty for tuple outputs)
    label: str  # e.g. "conv2d#12"
    inputs: tuple[int, ...]  # nodes referenced, in argument order

    @property
    def spatial(self) -> tuple[int, int] | None:
        return (self.shape[2], self.shape[3]) if len(self.shape) == 4 else None


@dataclass
class OpGraph:
    nodes: list[OpNode]
    output: Ref | None
    problem: str | None = None  # why replaying would not be faithful, when known
    last_use: list[int] = field(default_factory=list)  # last node reading each node

    def finish(self) -> OpGraph:
        self.last_use = list(range(len(self.nodes)))
        for node in self.nodes:
            for source in node.inputs:
                self.last_use[source] = node.index
        if self.output is not None:
            self.last_use[self.output.node] = len(self.nodes)
        return self


def _map_tensors(value: Any, mapping: Callable[[torch.Tensor], Any]) -> Any:
    if isinstance(value, torch.Tensor):
        return mapping(value)
    if isinstance(value, list | tuple) and any(isinstance(v, torch.Tensor) for v in value):
        return type(value)(_map_tensors(v, mapping) for v in value)
    return value


def tensors_in(args: Sequence[Any], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for value in [*args, *kwargs.values()]:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


def refs_in(args: Sequence[Any], kwargs: dict[str, Any]) -> list[Ref]:
    found: list[Ref] = []
    for value in [*args, *kwargs.values()]:
        if isinstance(value, Ref):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(v for v in value if isinstance(v, Ref))
    return found


class _Recorder:
    def __init__(self, x: torch.Tensor) -> None:
        self.nodes = [OpNode(0, None, (), {}, False, tuple(x.shape), "input", ())]
        self.refs: dict[int, Ref] = {id(x): Ref(0)}
        self._alive: list[Any] = [x]  # ids stay unique while the recording lives
        self.problem: str | None = None

    def __call__(
        self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        graph_tensors = [t for t in tensors_in(args, kwargs) if id(t) in self.refs]
        if not graph_tensors:
            return func(*args, **kwargs)
        versions = [t._version for t in graph_tensors]
        output = func(*args, **kwargs)
        mutated = [t for t, v in zip(graph_tensors, versions, strict=True) if t._version != v]
        inplace = bool(mutated) and output is args[0]
        name = getattr(func, "__name__", type(func).__name__)
        if mutated and (not inplace or any(t is not args[0] for t in mutated)):
            self.problem = self.problem or f"{name} mutates a tensor it does not return"
        if isinstance(output, torch.Tensor):
            shape: tuple[int, ...] = tuple(output.shape)
        elif isinstance(output, list | tuple) and all(isinstance(o, torch.Tensor) for o in output):
            shape = ()
        else:
            return output  # sizes, flags, numbers: baked into later calls' arguments
        index = len(self.nodes)
        template_args = tuple(_map_tensors(a, self._template) for a in args)
        template_kwargs = {k: _map_tensors(v, self._template) for k, v in kwargs.items()}
        inputs = tuple(r.node for r in refs_in(template_args, template_kwargs))
        self.nodes.append(
            OpNode(
                index,
                func,
                template_args,
                template_kwargs,
                inplace,
                shape,
                f"{name}#{index}",
                inputs,
            )
        )
        if isinstance(output, torch.Tensor):
            self.refs[id(output)] = Ref(index)
        else:
            for item, tensor in enumerate(output):
                self.refs[id(tensor)] = Ref(index, item)
        self._alive.append(output)
        return output

    def _template(self, tensor: torch.Tensor) -> Any:
        return self.refs.get(id(tensor), tensor)


def record(model: nn.Module, x: torch.Tensor) -> OpGraph:
    """Run `model(x)` once and return its op graph (x: (1, 3, H, W), the model in eval mode)."""
    # Version counters reveal in-place calls; inference tensors have none, so record on a
    # normal copy even when the caller is in inference mode.
    with torch.inference_mode(False), torch.no_grad():
        x = x.clone()
        recorder = _Recorder(x)
        with intercept_torch_functions(recorder):
            output = model(x)
    output_ref = recorder.refs.get(id(output)) if isinstance(output, torch.Tensor) else None
    problem = recorder.problem
    if output_ref is None:
        problem = problem or "the model output is not a tensor computed from the input"
    return OpGraph(recorder.nodes, output_ref, problem).finish()


def fill(value: Any, values: Sequence[Any] | Mapping[int, Any]) -> Any:
    """Replace every Ref in an argument template by the referenced value."""
    if isinstance(value, Ref):
        result = values[value.node]
        return result if value.item is None else result[value.item]
    if isinstance(value, list | tuple) and any(isinstance(v, Ref) for v in value):
        return type(value)(fill(v, values) for v in value)
    return value


def call(node: OpNode, values: Sequence[Any] | Mapping[int, Any], owned_first: bool = False) -> Any:
    """Run one node on the given values; an in-place node works on a copy unless told
    that its first argument is a temporary nobody else reads."""
    assert node.func is not None
    args = tuple(fill(a, values) for a in node.args)
    kwargs = {k: fill(v, values) for k, v in node.kwargs.items()}
    if node.inplace and not owned_first:
        args = (args[0].clone(), *args[1:])
    return node.func(*args, **kwargs)


def replay(graph: OpGraph, x: torch.Tensor, keep: bool = False) -> tuple[Any, list[Any]]:
    """Evaluate the graph on `x` (any batch size): (output, the node values when `keep`)."""
    assert graph.output is not None
    values: list[Any] = [None] * len(graph.nodes)
    values[0] = x
    with torch.no_grad():
        for node in graph.nodes[1:]:
            values[node.index] = call(node, values)
            if not keep:
                for source in set(node.inputs):
                    if graph.last_use[source] == node.index:
                        values[source] = None
    return fill(graph.output, values), values


def verify(graph: OpGraph, model: nn.Module, x: torch.Tensor) -> str | None:
    """None if replaying matches the model on x and on a perturbed copy, else why not."""
    if graph.problem is not None:
        return graph.problem
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=generator).to(device=x.device, dtype=x.dtype)
    batch = torch.cat([x, x + noise])
    with torch.no_grad():
        expected = model(batch)
    try:
        actual, _ = replay(graph, batch)
    except Exception as error:  # a call baked in a batch size or a data-dependent value
        return f"replaying the recorded graph failed ({type(error).__name__}: {error})"
    return mismatch(actual, expected, "replaying the recorded graph")


def mismatch(actual: object, expected: torch.Tensor, what: str) -> str | None:
    """Why `actual` (from `what`) is not the model's `expected` output, or None if it is."""
    if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
        return f"{what} gives a different output shape"
    scale = float(expected.abs().max()) + 1.0
    if float((actual - expected).abs().max()) > 1e-4 * scale:
        return f"{what} does not reproduce the model's output"
    return None
