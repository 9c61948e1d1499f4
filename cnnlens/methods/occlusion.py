"""Occlusion sensitivity (Zeiler & Fergus 2014), with exact incremental inference (Krypton)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from cnnlens.errors import InvalidParamsError
from cnnlens.incremental.occluder import Engine, Occluder
from cnnlens.incremental.windows import WindowGrid
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.workload import Cost, Workload, chunked, cost_field
from cnnlens.targets import Target


class OcclusionParams(MethodParams):
    window: int = Field(16, ge=1, description="side of the square occluding patch, in pixels")
    stride: int = cost_field(8, "time", "step between patches, in pixels", le=None)
    batch_size: int = cost_field(
        32, "memory", "occluded copies evaluated at once (bounds memory)", le=4096
    )
    fill: Literal["mean", "zero"] | Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        "mean",
        description='"mean": gray at the image\'s mean brightness; "zero": 0 in input space '
        "(the dataset mean colour); a number: gray at that level of [0, 1] pixels",
    )
    engine: Engine = Field(
        "auto",
        description='"incremental" recomputes only what each patch can change (exact); '
        '"dense" runs whole forwards; "auto" picks incremental where the model allows it',
    )
    threshold: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="approximate (the quality knob): projective-field thresholding; each "
        "layer's changed region is cut where the patch's effect falls below this fraction "
        "of the layer's largest change. 0 is exact; higher is faster and less exact. "
        "Incremental engine only",
    )
    coarse_stride: int | None = Field(
        None,
        ge=1,
        description="approximate: adaptive drill-down; windows at this stride first, then "
        "windows at `stride` only where the coarse map is highest (see `refine`). "
        "None: off",
    )
    refine: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="with `coarse_stride`: the fraction of the fine windows recomputed, "
        "those where the coarse map is highest; the others take the coarse map's mean over "
        "the window. 1 recomputes all (the exact fine map)",
    )


@register
class Occlusion(Method):
    """map(p) = mean over windows W containing p of  L(x with W occluded) - L(x),
    L = the target's loss: -log P(target | x) for a class, -score for a region or a box.

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014 (the
    loss-difference form of the seeds' occlusion loss map, signed so that high = the region
    supports the target). A gray patch slides over the image with the given stride (plus a
    last window flush with each far edge); overlapping windows are averaged per pixel. The
    incremental engine (Nakandala et al., "Incremental and Approximate Inference for Faster
    Occlusion-based Deep CNN Explanations", SIGMOD 2019) gives the same values faster; that
    paper's two approximations are opt-in: projective-field thresholding (`threshold`) and
    adaptive drill-down (`coarse_stride`, `refine`).
    Shapes: x (B, 3, H, W) -> map (B, 1, H, W); extras["window_loss_changes"] (B, rows, cols).
    """

    name = "occlusion"
    title = "Occlusion"
    paper = "Zeiler & Fergus 2014, arXiv:1311.2901; Nakandala et al. 2019, arXiv:1803.04626"
    Params = OcclusionParams
    kind = "standalone"

    def cost(self, params: OcclusionParams, workload: Workload) -> Cost:
        # Dense forwards bound the incremental engine too (and "auto" may fall back to them);
        # planning records one row and checks two.
        _, height, width = workload.input_shape
        windows = 0
        if params.window <= min(height, width):
            windows = len(WindowGrid.of(height, width, params.window, params.stride))
        planning = 0 if params.engine == "dense" else 3
        return Cost.of(
            forwards=workload.rows * (1 + windows) + planning,
            peak_rows=max(1, chunked(windows, params.batch_size)),
            resident_values=workload.rows * (windows + workload.pixels),
        )

    def compute(self, context: MethodContext, params: OcclusionParams) -> MethodOutput:
        x = context.x
        height, width = x.shape[-2:]
        if params.window > min(height, width):
            raise InvalidParamsError(
                f"occlusion: window ({params.window}) must not exceed the image's shorter "
                f"side ({min(height, width)} px)"
            )
        grid = WindowGrid.of(height, width, params.window, params.stride)
        occluder = self._occluder(context, grid, params)
        coarse = None
        if params.coarse_stride is not None:
            coarse_grid = WindowGrid.of(height, width, params.window, params.coarse_stride)
            coarse = self._occluder(context, coarse_grid, params)
        clean_losses, loss_changes = [], []
        evaluated = 0
        for row, image in enumerate(x):
            image = image.unsqueeze(0)  # (1, 3, H, W)
            target = context.target.take(slice(row, row + 1))
            patch = _patch(context, image, params)
            if coarse is None:
                clean, occluded = occluder.losses(image, target, patch)
                deltas_one = occluded - clean  # (N,)
                evaluated += len(grid)
            else:
                clean, deltas_one, count = _drill_down(
                    coarse, occluder, image, target, patch, params.refine
                )
                evaluated += count
            clean_losses.append(clean)
            loss_changes.append(deltas_one)
        deltas = torch.stack(loss_changes)  # (B, N)
        extras = {
            "window_loss_changes": deltas.view(-1, *grid.shape),
            "clean_loss": torch.stack(clean_losses),
            "engine": occluder.engine,
            "engine_note": occluder.note,
            "planned_work": occluder.planned_work,  # incremental / dense multiply-adds
            "evaluated_windows": evaluated,  # occluded copies scored, coarse ones included
        }
        return MethodOutput(grid.average(deltas), extras)

    @staticmethod
    def _occluder(context: MethodContext, grid: WindowGrid, params: OcclusionParams) -> Occluder:
        x = context.x
        return Occluder(
            context.model, grid, params.batch_size, params.engine, x[:1], params.threshold
        )


def _drill_down(
    coarse: Occluder,
    fine: Occluder,
    image: torch.Tensor,
    target: Target,
    patch: torch.Tensor,
    refine: float,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Adaptive drill-down (Krypton, section 4.2): clean loss, (N,) fine loss changes and the
    number of copies scored. Fine windows that are coarse windows keep their coarse values;
    the others get the coarse values interpolated linearly over window corners, which rank
    them; the highest `refine` fraction of them is recomputed."""
    clean, occluded = coarse.losses(image, target, patch)
    values = (occluded - clean).view(coarse.grid.shape)  # (Rc, Cc)
    rows = _interpolation(fine.grid.row_starts, coarse.grid.row_starts, values)  # (Rf, Rc)
    cols = _interpolation(fine.grid.col_starts, coarse.grid.col_starts, values)  # (Cf, Cc)
    estimate = (rows @ values @ cols.T).flatten()  # (N,), exact where corners coincide
    known = ((rows == 1).any(1)[:, None] & (cols == 1).any(1)[None, :]).flatten()
    unknown = torch.nonzero(~known).flatten()
    count = min(math.ceil(refine * len(fine.grid)), int(unknown.shape[0]))
    deltas = estimate.clone()
    if count > 0:
        order = torch.topk(estimate[unknown], count).indices
        chosen = torch.sort(unknown[order]).values
        _, refined = fine.losses(image, target, patch, chosen)
        deltas[chosen] = refined - clean
    return clean, deltas, len(coarse.grid) + count


def _interpolation(
    targets: tuple[int, ...], sources: tuple[int, ...], like: torch.Tensor
) -> torch.Tensor:
    """(len(targets), len(sources)) weights of linear interpolation between source offsets."""
    weights = like.new_zeros(len(targets), len(sources))
    for i, offset in enumerate(targets):
        upper = next((j for j, s in enumerate(sources) if s >= offset), len(sources) - 1)
        if sources[upper] == offset or upper == 0:
            weights[i, upper] = 1.0
            continue
        low, high = sources[upper - 1], sources[upper]
        share = (offset - low) / (high - low)
        weights[i, upper - 1], weights[i, upper] = 1.0 - share, share
    return weights


def _patch(context: MethodContext, image: torch.Tensor, params: OcclusionParams) -> torch.Tensor:
    """(C, w, w) occluding patch in input space, C the image's channels (3, or 1 for gray)."""
    size, channels = params.window, image.shape[1]
    if params.fill == "zero":
        return image.new_zeros(channels, size, size)
    prep = context.preprocessing
    level = prep.denormalize(image).mean() if params.fill == "mean" else params.fill
    gray = prep.normalize(torch.full_like(image[:, :, :1, :1], float(level)))  # (1, C, 1, 1)
    return gray[0].expand(channels, size, size)
