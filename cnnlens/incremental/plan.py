"""Where each patch can change each feature map: one box per node and patch, planned once.

Every patch gets, at every node, a box of the same size (the largest any patch needs) so
that patches batch together; a box is shifted, never shrunk, to stay inside its map, which
only recomputes a few unchanged positions. For a window call with stride s, padding p and
span k' = d(k-1)+1, input rows [r, r+h) change outputs o with
    ceil((r + p - k' + 1) / s) <= o <= floor((r + h - 1 + p) / s),
and outputs [o0, o0+h') read padded input rows [o0*s - p, o0*s - p + (h'-1)*s + k').
A node whose box would cover at least `dense_fraction` of its map (by default: all of it;
recomputing most of a map as a box measured no slower than densely), or whose call is
neither pointwise nor a window nor a constant pad, is computed densely, and so is
everything that reads it.

Projective-field thresholding (approximate, `caps`): a window node's box may be capped to a
smaller size, centred on the exact box; the positions cut off keep their clean values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from cnnlens.incremental.graph import OpGraph, OpNode, Ref, refs_in
from cnnlens.incremental.ops import (
    Window,
    constant_pad_of,
    conv_macs_per_position,
    is_pointwise,
    window_of,
)

Kind = Literal["input", "pointwise", "window", "pad", "dense"]


@dataclass
class Box:
    """A (height, width) box per patch at top-left (rows[i], cols[i]) of one node's map."""

    height: int
    width: int
    rows: torch.Tensor  # (N,) long
    cols: torch.Tensor  # (N,) long


@dataclass
class Gather:
    """How to build one input region per patch: clean map (padded) + the source's box."""

    source: int
    height: int
    width: int
    row_index: torch.Tensor  # (N, height) rows of the padded clean source map
    col_index: torch.Tensor  # (N, width)
    box_rows: torch.Tensor  # (N, source box height) where the source box lands in the region
    box_cols: torch.Tensor  # (N, source box width)
    pad: tuple[int, int, int, int]  # (top, bottom, left, right) added to the clean map
    pad_value: float
    direct: bool  # the region is exactly the source's box: no gathering
    clip: bool  # some source boxes stick out of their region


@dataclass
class NodePlan:
    kind: Kind
    box: Box | None = None
    gathers: dict[int, Gather] = field(default_factory=dict)
    window: Window | None = None
    shift: tuple[int, int] = (0, 0)  # constant pad: (top, left)
    reason: str | None = None  # why a dense node could not stay incremental


@dataclass
class Plan:
    nodes: list[NodePlan]
    incremental_cost: float  # estimated work (multiply-adds and copies) per patch
    dense_cost: float
    first_dense: str | None  # label of the first node computed densely, and why
    first_dense_reason: str | None

    @property
    def cost_fraction(self) -> float:
        return self.incremental_cost / max(self.dense_cost, 1.0)


def _fit(low: torch.Tensor, size: int, limit: int) -> torch.Tensor:
    return low.clamp(min=0, max=max(limit - size, 0))


def _window_axis(
    rows: torch.Tensor,
    height: int,
    window: Window,
    axis: int,
    size_in: int,
    size_out: int,
    cap: int | None = None,
) -> tuple[int, torch.Tensor, torch.Tensor, int, int]:
    """Output box (size, starts), region starts, region size and bottom padding on one axis;
    a `cap` smaller than the exact box keeps its centre `cap` positions."""
    stride, pad, span = window.stride[axis], window.padding[axis], window.span(axis)
    low = torch.div(rows + pad - span + stride, stride, rounding_mode="floor").clamp(min=0)
    high = torch.div(rows + height - 1 + pad, stride, rounding_mode="floor")
    high = high.clamp(max=size_out - 1)
    size = max(int((high - low).max()) + 1, 1)
    if cap is not None and 1 <= cap < size:
        low = low + (high - low + 1 - cap).clamp(min=0) // 2
        size = cap
    starts = _fit(low, size, size_out)
    region_size = (size - 1) * stride + span
    region_starts = starts * stride - pad
    bottom = max(0, (size_out - 1) * stride + span - pad - size_in)
    return size, starts, region_starts, region_size, bottom


def _gather(
    source: int,
    box: Box,
    region_rows: torch.Tensor,
    region_cols: torch.Tensor,
    height: int,
    width: int,
    pad: tuple[int, int, int, int],
    pad_value: float,
) -> Gather:
    device = box.rows.device
    top, _, left, _ = pad
    row_index = (region_rows + top)[:, None] + torch.arange(height, device=device)
    col_index = (region_cols + left)[:, None] + torch.arange(width, device=device)
    rel_rows = box.rows - region_rows
    rel_cols = box.cols - region_cols
    box_rows = rel_rows[:, None] + torch.arange(box.height, device=device)
    box_cols = rel_cols[:, None] + torch.arange(box.width, device=device)
    direct = bool(
        height == box.height
        and width == box.width
        and (rel_rows == 0).all()
        and (rel_cols == 0).all()
    )
    clip = bool(
        (rel_rows < 0).any()
        or (rel_cols < 0).any()
        or (rel_rows + box.height > height).any()
        or (rel_cols + box.width > width).any()
    )
    return Gather(
        source, height, width, row_index, col_index, box_rows, box_cols, pad, pad_value,
        direct, clip,
    )  # fmt: skip


def _positions(node: OpNode) -> int:
    if len(node.shape) == 4:
        return node.shape[2] * node.shape[3]
    return 1


def _cost_per_position(node: OpNode) -> float:
    channels = node.shape[1] if len(node.shape) >= 2 else 1
    return float(conv_macs_per_position(node) + channels)


def make_plan(
    graph: OpGraph,
    window_rows: torch.Tensor,
    window_cols: torch.Tensor,
    window_size: tuple[int, int],
    dense_fraction: float = 1.0,
    caps: dict[int, tuple[int, int]] | None = None,
) -> Plan:
    """Plan every node for patches of `window_size` at (window_rows, window_cols) (N,) each;
    `caps`: the largest (height, width) box of some window nodes (approximate)."""
    shapes = [node.shape for node in graph.nodes]
    plans: list[NodePlan] = [
        NodePlan("input", Box(window_size[0], window_size[1], window_rows, window_cols))
    ]
    incremental = dense = 0.0
    first_dense: str | None = None
    first_reason: str | None = None
    for node in graph.nodes[1:]:
        cap = (caps or {}).get(node.index)
        plan = _plan_node(node, plans, shapes, dense_fraction, cap)
        plans.append(plan)
        per_position = _cost_per_position(node)
        dense += per_position * _positions(node)
        if plan.kind == "dense":
            incremental += per_position * _positions(node)
            if first_dense is None:
                first_dense, first_reason = node.label, plan.reason
        else:
            assert plan.box is not None
            incremental += per_position * plan.box.height * plan.box.width
            for gather in plan.gathers.values():
                if not gather.direct:  # copying the region costs about one pass over it
                    incremental += shapes[gather.source][1] * gather.height * gather.width
    return Plan(plans, incremental, dense, first_dense, first_reason)


def _covers(box_area: int, map_area: int) -> str:
    return f"the changed region covers {min(box_area / map_area, 1.0):.0%} of the map"


def _plan_node(
    node: OpNode,
    plans: list[NodePlan],
    shapes: list[tuple[int, ...]],
    dense_fraction: float,
    cap: tuple[int, int] | None = None,
) -> NodePlan:
    refs = refs_in(node.args, node.kwargs)
    if any(ref.item is not None for ref in refs):
        return NodePlan("dense", reason="reads one element of a tuple output")
    if any(plans[ref.node].kind == "dense" for ref in refs):
        return NodePlan("dense", reason="reads a densely computed map")
    spatial = node.spatial
    if spatial is None:
        return NodePlan("dense", reason="output has no (C, h, w) map")
    height, width = spatial
    shift = constant_pad_of(node)
    window = window_of(node)
    if shift is not None and isinstance(node.args[0], Ref) and len(refs) == 1:
        source = plans[node.args[0].node].box
        assert source is not None
        box = Box(source.height, source.width, source.rows + shift[0], source.cols + shift[1])
        return NodePlan("pad", box, shift=shift)
    if window is not None and isinstance(node.args[0], Ref) and len(refs) == 1:
        source_index = node.args[0].node
        source = plans[source_index].box
        assert source is not None
        size_in = shapes[source_index][2:]
        cap_rows, cap_cols = cap if cap is not None else (None, None)
        rows = _window_axis(source.rows, source.height, window, 0, size_in[0], height, cap_rows)
        cols = _window_axis(source.cols, source.width, window, 1, size_in[1], width, cap_cols)
        box = Box(rows[0], cols[0], rows[1], cols[1])
        if box.height * box.width >= dense_fraction * height * width:
            return NodePlan("dense", reason=_covers(box.height * box.width, height * width))
        pad = (window.padding[0], rows[4], window.padding[1], cols[4])
        gather = _gather(
            source_index, source, rows[2], cols[2], rows[3], cols[3], pad, window.pad_value
        )
        return NodePlan("window", box, {source_index: gather}, window)
    if is_pointwise(node, shapes):
        sources = sorted({ref.node for ref in refs})
        boxes = [plans[s].box for s in sources]
        assert all(b is not None for b in boxes)
        low_r = torch.stack([b.rows for b in boxes if b]).amin(0)
        low_c = torch.stack([b.cols for b in boxes if b]).amin(0)
        high_r = torch.stack([b.rows + b.height for b in boxes if b]).amax(0)
        high_c = torch.stack([b.cols + b.width for b in boxes if b]).amax(0)
        box_h, box_w = int((high_r - low_r).max()), int((high_c - low_c).max())
        box = Box(box_h, box_w, _fit(low_r, box_h, height), _fit(low_c, box_w, width))
        if box_h * box_w >= dense_fraction * height * width:
            return NodePlan("dense", reason=_covers(box_h * box_w, height * width))
        gathers = {
            s: _gather(s, b, box.rows, box.cols, box_h, box_w, (0, 0, 0, 0), 0.0)
            for s, b in zip(sources, boxes, strict=True)
            if b is not None
        }
        return NodePlan("pointwise", box, gathers)
    name = node.label.split("#")[0]
    return NodePlan("dense", reason=f"{name} is not pointwise, a window or a constant pad")
