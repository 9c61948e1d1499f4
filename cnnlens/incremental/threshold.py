"""Projective-field thresholding (Krypton, Nakandala et al. 2019, section 4.1): how far into
each layer's changed cone a patch's effect is worth recomputing.

A patch's exact cone grows by the kernel at every window layer, but its effect fades towards
the cone's edges. Once per model, input size and threshold, a few windows near the image
centre are occluded and replayed densely; at every window node the mean absolute change per
position (over channels) is profiled along rows and columns of the exact box, relative to
that node's largest change. The box is then capped to the stretch of rows and columns whose
profile reaches `threshold`, centred on each patch's exact range; the plan recomputes only
the capped box and leaves the rest of the cone at its clean value. Threshold 0 keeps every
box whole (exact).
"""

from __future__ import annotations

import torch

from cnnlens.incremental.graph import OpGraph, replay
from cnnlens.incremental.plan import make_plan

CALIBRATION_WINDOWS = 4


def _extent(profile: torch.Tensor, threshold: float) -> int:
    """Length of the stretch of `profile` from its first to its last entry >= threshold."""
    above = torch.nonzero(profile >= threshold).flatten()
    if above.numel() == 0:
        return 1
    return int(above[-1]) - int(above[0]) + 1


def _central(rows: torch.Tensor, cols: torch.Tensor, x: torch.Tensor, size: int) -> torch.Tensor:
    """Indices of the windows whose centres lie nearest the image's centre."""
    centre_r, centre_c = (x.shape[-2] - size) / 2, (x.shape[-1] - size) / 2
    distance = (rows.double() - centre_r) ** 2 + (cols.double() - centre_c) ** 2
    return torch.argsort(distance)[: min(CALIBRATION_WINDOWS, rows.shape[0])]


def projective_caps(
    graph: OpGraph,
    x: torch.Tensor,
    window_rows: torch.Tensor,
    window_cols: torch.Tensor,
    window_size: tuple[int, int],
    threshold: float,
) -> dict[int, tuple[int, int]]:
    """{window node: (height, width) cap} for x (1, 3, H, W); empty at threshold 0."""
    if threshold <= 0.0:
        return {}
    # Exact boxes everywhere a box exists: never switch to dense for coverage here.
    exact = make_plan(graph, window_rows, window_cols, window_size, float("inf"))
    chosen = _central(window_rows, window_cols, x, window_size[0])
    copies = x.expand(chosen.shape[0], -1, -1, -1).clone()
    height, width = window_size
    for i, index in enumerate(chosen.tolist()):
        row, col = int(window_rows[index]), int(window_cols[index])
        copies[i, :, row : row + height, col : col + width] = 0.0
    with torch.no_grad():
        _, clean = replay(graph, x, keep=True)
        _, occluded = replay(graph, copies, keep=True)
    caps: dict[int, tuple[int, int]] = {}
    for node in graph.nodes[1:]:
        plan = exact.nodes[node.index]
        if plan.kind != "window" or plan.box is None:
            continue
        box = plan.box
        change = (occluded[node.index] - clean[node.index]).abs().mean(dim=1)  # (P, H, W)
        regions = [
            change[i, top : top + box.height, left : left + box.width]
            for i, (top, left) in enumerate(
                zip(box.rows[chosen].tolist(), box.cols[chosen].tolist(), strict=True)
            )
        ]
        peak = max(float(region.max()) for region in regions)
        if peak <= 0.0:
            continue  # no measurable effect: keep the exact box
        # The widest stretch any calibration patch needs; plan.py centres it on each
        # patch's own exact range.
        caps[node.index] = (
            max(_extent(region.amax(dim=1) / peak, threshold) for region in regions),
            max(_extent(region.amax(dim=0) / peak, threshold) for region in regions),
        )
    return caps
