"""Runs batches of occluded copies of one image through a recorded graph incrementally.

Clean maps are cached once per image, channels-last, so that a region is gathered as whole
channel vectors. A patch's state at a node is either a box (P, C, h, w) plus its position,
meaning "the clean map with this box pasted in", or a dense (P, ...) tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlens.incremental.graph import (
    OpGraph,
    Ref,
    call,
    fill,
    mismatch,
    record,
    replay,
    verify,
)
from cnnlens.incremental.plan import Box, Gather, Plan, make_plan
from cnnlens.incremental.threshold import projective_caps


class Unsupported(Exception):
    """The model cannot be computed incrementally (the message says why)."""


@dataclass
class _Boxed:
    data: torch.Tensor  # (P, C, h, w), channels-last
    rows: torch.Tensor  # (P,)
    cols: torch.Tensor  # (P,)
    dense: torch.Tensor | None = None  # the full maps, once some dense node needed them


def _nhwc(tensor: torch.Tensor) -> torch.Tensor:
    """(P, C, h, w) -> (P, h, w, C) view, copying only if not channels-last already."""
    return tensor.permute(0, 2, 3, 1).contiguous()


def _nchw(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 3, 1, 2)


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


class IncrementalOcclusion:
    """Logits of patch-occluded copies of one image, recomputing only what patches reach.

    Build with `prepare` (records and checks the graph once per model and input size),
    then `set_image` per image and `logits(start, stop, patch)` per batch of windows.
    """

    def __init__(self, model: nn.Module, graph: OpGraph, plan: Plan) -> None:
        self.model = model
        self.graph = graph
        self.plan = plan
        self._clean: list[Any] = []
        self._padded: dict[tuple[int, tuple[int, int, int, int], float], torch.Tensor] = {}

    @classmethod
    def prepare(
        cls,
        model: nn.Module,
        x: torch.Tensor,
        window_rows: torch.Tensor,
        window_cols: torch.Tensor,
        window_size: tuple[int, int],
        dense_fraction: float = 1.0,
        threshold: float = 0.0,
    ) -> IncrementalOcclusion:
        """Record the model on x (1, 3, H, W) and plan patches at the given top-left corners;
        threshold > 0 caps each layer's changed box where the patch's effect on x falls
        below that fraction of the layer's largest change (approximate; 0: exact).

        Raises:
            Unsupported: the recorded graph, or one incremental batch, does not reproduce
                the model.
        """
        graph = record(model, x)
        problem = verify(graph, model, x)
        if problem is not None:
            raise Unsupported(problem)
        plan = make_plan(graph, window_rows, window_cols, window_size, dense_fraction)
        engine = cls(model, graph, plan)
        problem = engine._check_batch(x, window_size)
        if problem is not None:
            raise Unsupported(problem)
        caps = projective_caps(graph, x, window_rows, window_cols, window_size, threshold)
        if caps:
            engine.plan = make_plan(
                graph, window_rows, window_cols, window_size, dense_fraction, caps
            )
        return engine

    def _check_batch(self, x: torch.Tensor, window_size: tuple[int, int]) -> str | None:
        """None if one real incremental batch (the first windows, a random patch) gives the
        model's own logits, else why not: a dense replay of boxed maps can meet calls that
        a whole-batch replay never does (a `view` of a map pasted back from boxes)."""
        box = self.plan.nodes[0].box
        assert box is not None
        count = min(2, int(box.rows.shape[0]))
        generator = torch.Generator().manual_seed(1)
        patch = torch.randn((count, x.shape[1], *window_size), generator=generator)
        patch = patch.to(device=x.device, dtype=x.dtype)
        copies = x.detach().expand(count, -1, -1, -1).clone()
        height, width = window_size
        for i in range(count):
            row, col = int(box.rows[i]), int(box.cols[i])
            copies[i, :, row : row + height, col : col + width] = patch[i]
        try:
            with torch.no_grad():
                expected = self.model(copies)
                self.set_image(x)
                actual = self.logits(0, count, patch)
        except Exception as error:  # a call that cannot take a map pasted back from boxes
            return f"an incremental batch failed ({type(error).__name__}: {error})"
        finally:
            self._clean, self._padded = [], {}
        return mismatch(actual, expected, "an incremental batch")

    def set_image(self, x: torch.Tensor) -> torch.Tensor:
        """Cache every clean map of x (1, 3, H, W); returns the clean logits (1, K)."""
        self._padded.clear()
        output, values = replay(self.graph, x, keep=True)
        self._clean = values
        return torch.as_tensor(output)

    def logits(self, start: int, stop: int, patch: torch.Tensor) -> torch.Tensor:
        """(P, K) logits for windows start..stop-1, each replaced by `patch` (P, 3, h, w)."""
        return self.logits_at(slice(start, stop), patch)

    def logits_at(self, select: slice | torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
        """(P, K) logits for the windows `select` picks (a slice or (P,) indices)."""
        graph, plans = self.graph, self.plan.nodes
        input_box = plans[0].box
        assert input_box is not None and graph.output is not None
        states: dict[int, Any] = {
            0: _Boxed(
                patch.clone(memory_format=torch.channels_last),
                input_box.rows[select],
                input_box.cols[select],
            )
        }
        with torch.no_grad():
            for node in graph.nodes[1:]:
                plan = plans[node.index]
                if plan.kind == "dense":
                    values = {s: self._dense(s, states) for s in node.inputs}
                    owned = self._overwritable(node.index, states, values)
                    states[node.index] = call(node, values, owned_first=owned)
                elif plan.kind == "pad":
                    source = states[node.inputs[0]]
                    assert plan.box is not None
                    states[node.index] = _Boxed(
                        source.data, plan.box.rows[select], plan.box.cols[select]
                    )
                else:
                    states[node.index] = self._boxed(node.index, states, select)
                for source in set(node.inputs):
                    if graph.last_use[source] == node.index:
                        del states[source]
            return torch.as_tensor(self._dense(graph.output.node, states))

    def _boxed(self, index: int, states: dict[int, Any], select: slice | torch.Tensor) -> _Boxed:
        node, plan = self.graph.nodes[index], self.plan.nodes[index]
        assert plan.box is not None
        regions: dict[int, torch.Tensor] = {}
        gathered: set[int] = set()
        for source, gather in plan.gathers.items():
            if gather.direct:
                regions[source] = states[source].data
            else:
                regions[source] = self._region(gather, states[source], select)
                gathered.add(source)
        if plan.window is not None:
            filled = [fill(a, regions) for a in node.args]
            output = plan.window.run(regions[node.inputs[0]], filled)
        else:
            # A freshly gathered region is a private copy, safe to overwrite in place.
            owned = bool(node.inputs) and node.inputs[0] in gathered
            owned = owned or self._overwritable(index, states, regions)
            output = call(node, regions, owned_first=owned)
        return _Boxed(output, plan.box.rows[select], plan.box.cols[select])

    def _region(self, gather: Gather, state: _Boxed, select: slice | torch.Tensor) -> torch.Tensor:
        """(P, C, height, width) channels-last: the source's padded clean map at the region,
        with the source's box pasted in."""
        clean = self._clean_padded(gather.source, gather.pad, gather.pad_value)  # (H', W', C)
        rows = gather.row_index[select]
        cols = gather.col_index[select]
        region = clean[rows[:, :, None], cols[:, None, :]]  # (P, height, width, C)
        box = state.data.permute(0, 2, 3, 1)  # (P, h, w, C)
        box_rows = gather.box_rows[select]
        box_cols = gather.box_cols[select]
        batch = torch.arange(rows.shape[0], device=rows.device)[:, None, None]
        if gather.clip:  # read the box where it overlaps the region, else keep clean
            height, width = box.shape[1], box.shape[2]
            inside_rows = torch.arange(gather.height, device=rows.device)[None] - box_rows[:, :1]
            inside_cols = torch.arange(gather.width, device=rows.device)[None] - box_cols[:, :1]
            mask = ((inside_rows >= 0) & (inside_rows < height))[:, :, None] & (
                (inside_cols >= 0) & (inside_cols < width)
            )[:, None, :]
            from_box = box[
                batch,
                inside_rows.clamp(0, height - 1)[:, :, None],
                inside_cols.clamp(0, width - 1)[:, None, :],
            ]
            region = torch.where(mask[..., None], from_box, region)
        else:
            region[batch, box_rows[:, :, None], box_cols[:, None, :]] = box
        return _nchw(region)

    def _clean_padded(
        self, source: int, pad: tuple[int, int, int, int], value: float
    ) -> torch.Tensor:
        key = (source, pad, value)
        cached = self._padded.get(key)
        if cached is None:
            top, bottom, left, right = pad
            clean = self._clean[source]
            if any(pad):
                clean = F.pad(clean, (left, right, top, bottom), value=value)
            cached = self._padded[key] = _nhwc(clean)[0]
        return cached

    def _dense(self, index: int, states: dict[int, Any]) -> Any:
        state = states[index]
        if not isinstance(state, _Boxed):
            return state
        if state.dense is None:
            clean = self._clean[index]  # (1, C, H, W)
            batch = state.data.shape[0]
            full = _nhwc(clean).expand(batch, -1, -1, -1).clone()  # (P, H, W, C)
            height, width = state.data.shape[2], state.data.shape[3]
            device = full.device
            rows = state.rows[:, None] + torch.arange(height, device=device)
            cols = state.cols[:, None] + torch.arange(width, device=device)
            patches = torch.arange(batch, device=device)[:, None, None]
            full[patches, rows[:, :, None], cols[:, None, :]] = state.data.permute(0, 2, 3, 1)
            # Contiguous, as a dense forward would hand it on: `view` and friends need it.
            state.dense = _nchw(full).contiguous()
        return state.dense

    def _overwritable(
        self, index: int, states: dict[int, Any], values: dict[int, torch.Tensor]
    ) -> bool:
        """An in-place node may overwrite its first input when nothing else can see it."""
        node = self.graph.nodes[index]
        first = node.args[0] if node.args else None
        if not node.inplace or not isinstance(first, Ref) or first.item is not None:
            return False
        source = first.node
        if self.graph.last_use[source] != index or node.inputs.count(source) != 1:
            return False
        storage = _storage(values[source])
        for other, state in states.items():
            if other == source:
                continue
            tensors = [state.data, state.dense] if isinstance(state, _Boxed) else [state]
            if any(isinstance(t, torch.Tensor) and _storage(t) == storage for t in tensors):
                return False
        return True


__all__ = ["Box", "IncrementalOcclusion", "Unsupported"]
