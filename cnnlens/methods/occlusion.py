"""Occlusion sensitivity (Zeiler & Fergus 2014), with exact incremental inference (Krypton)."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from cnnlens.errors import InvalidParamsError
from cnnlens.incremental.occluder import Engine, Occluder
from cnnlens.incremental.windows import WindowGrid
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.workload import Cost, Workload, chunked


class OcclusionParams(MethodParams):
    window: int = Field(16, ge=1, description="side of the square occluding patch, in pixels")
    stride: int = Field(
        8,
        ge=1,
        description="step between patches, in pixels",
        json_schema_extra={"drives_cost": "time"},
    )
    batch_size: int = Field(
        32,
        ge=1,
        le=4096,
        description="occluded copies evaluated at once (bounds memory)",
        json_schema_extra={"drives_cost": "memory"},
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


@register
class Occlusion(Method):
    """map(p) = mean over windows W containing p of  L(x with W occluded) - L(x),
    L = -log P(target | x).

    Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014 (the
    loss-difference form of the seeds' occlusion loss map, signed so that high = the region
    supports the target). A gray patch slides over the image with the given stride (plus a
    last window flush with each far edge); overlapping windows are averaged per pixel. The
    incremental engine (Nakandala et al., "Incremental and Approximate Inference for Faster
    Occlusion-based Deep CNN Explanations", SIGMOD 2019) gives the same values faster.
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
        occluder = Occluder(context.model, grid, params.batch_size, params.engine, x[:1])
        clean_losses, loss_changes = [], []
        for image, target in zip(x, context.targets.tolist(), strict=True):
            image = image.unsqueeze(0)  # (1, 3, H, W)
            clean, occluded = occluder.losses(image, target, _patch(context, image, params))
            clean_losses.append(clean)
            loss_changes.append(occluded - clean)  # (N,)
        deltas = torch.stack(loss_changes)  # (B, N)
        extras = {
            "window_loss_changes": deltas.view(-1, *grid.shape),
            "clean_loss": torch.stack(clean_losses),
            "engine": occluder.engine,
            "engine_note": occluder.note,
            "planned_work": occluder.planned_work,  # incremental / dense multiply-adds
        }
        return MethodOutput(grid.average(deltas), extras)


def _patch(context: MethodContext, image: torch.Tensor, params: OcclusionParams) -> torch.Tensor:
    """(3, w, w) occluding patch in input space."""
    size = params.window
    if params.fill == "zero":
        return image.new_zeros(3, size, size)
    prep = context.preprocessing
    level = prep.denormalize(image).mean() if params.fill == "mean" else params.fill
    gray = prep.normalize(torch.full_like(image[:, :, :1, :1], float(level)))  # (1, 3, 1, 1)
    return gray[0].expand(3, size, size)
