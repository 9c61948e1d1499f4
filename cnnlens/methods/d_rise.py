"""D-RISE (Petsiuk et al. 2021): a detection explained by randomly masked copies of its image."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from pydantic import Field
from torchvision.ops import box_iou

from cnnlens.errors import IncompatibleModelError
from cnnlens.methods.base import Method, MethodContext, MethodOutput, MethodParams, register
from cnnlens.methods.workload import Cost, Workload, chunked, cost_field
from cnnlens.models.heads import DETECTION
from cnnlens.models.hooks import hook_session
from cnnlens.targets import BoxTarget


class DRiseParams(MethodParams):
    # The paper draws 5000; 500 keep a request within a CPU service's default budget.
    n_masks: int = cost_field(500, "time", "random masks, one forward each", le=20000)
    grid_size: int = Field(16, ge=2, le=64, description="cells a side of each mask's grid")
    keep: float = Field(0.5, gt=0.0, lt=1.0, description="probability that a cell is kept")
    batch_size: int = cost_field(16, "memory", "masked copies per forward (bounds memory)")
    seed: int = Field(0, ge=0)


@register
class DRise(Method):
    """S = 1/N sum_i w_i (M_i - p),  w_i = max_j sim(d_t, d_ij),
    sim(d_t, d) = IoU(L_t, L_d) * cos(P_t, P_d) * O_d.

    Petsiuk et al., "Black-box Explanation of Object Detectors via Saliency Maps", CVPR 2021,
    eq. (1)-(3). M_i: RISE masks (Petsiuk et al. 2018), a `grid_size`^2 grid of cells kept
    with probability `keep`, upsampled bilinearly and shifted at random; the image is
    multiplied by each (black where masked, in [0, 1] pixels). d_ij: the detections of masked
    copy i. The target d_t is the explained detection: its box L_t and one-hot class P_t.
    The paper's sum_i w_i M_i less its constant part: p = `keep`, the masks' expected value,
    so that pixels that do not matter are about 0 and the map's energy lies on what does.
    torchvision's detectors give a detection's label and score only: its class vector is
    taken as P_d = s_d e_label + (1 - s_d) e_background, so cos(P_t, P_d) =
    [label_d = label_t] s_d / sqrt(s_d^2 + (1 - s_d)^2), and O_d = 1 (no objectness).
    Seeded, chunked by `batch_size`; rows of one image share its masked forwards.
    Shapes: x (B, 3, H, W) -> map (B, 1, H, W).
    """

    name = "d_rise"
    title = "D-RISE"
    paper = "Petsiuk et al. 2021, arXiv:2006.03204"
    Params = DRiseParams
    kind = "standalone"
    segmentation = False
    heads = frozenset({DETECTION})

    def cost(self, params: DRiseParams, workload: Workload) -> Cost:
        # An upper bound: rows of one image share their masked copies.
        return Cost.of(
            forwards=workload.rows * params.n_masks,
            peak_rows=chunked(params.n_masks, params.batch_size),
            resident_values=workload.rows * workload.pixels,
        )

    def compute(self, context: MethodContext, params: DRiseParams) -> MethodOutput:
        target = context.target
        if not isinstance(target, BoxTarget):
            raise IncompatibleModelError("d_rise explains a detector's box (a BoxTarget)")
        x = context.x
        maps = x.new_zeros(x.shape[0], 1, *x.shape[-2:])
        for rows in _same_images(x):
            maps[rows] = _saliency(context, target, rows, params)
        return MethodOutput(maps)


def _same_images(x: torch.Tensor) -> list[torch.Tensor]:
    """Groups of rows holding the same image (one image's several detections)."""
    groups: list[list[int]] = []
    for row in range(x.shape[0]):
        group = next((g for g in groups if torch.equal(x[g[0]], x[row])), None)
        if group is None:
            groups.append([row])
        else:
            group.append(row)
    return [torch.tensor(group) for group in groups]


def _saliency(
    context: MethodContext, target: BoxTarget, rows: torch.Tensor, params: DRiseParams
) -> torch.Tensor:
    """(len(rows), 1, H, W): the masks weighted by each row's similarity, averaged."""
    image = context.x[rows[0] : rows[0] + 1]  # (1, 3, H, W)
    pixels = context.preprocessing.denormalize(image)
    boxes = target.box_tensor[rows].to(image.device)  # (T, 4)
    labels = target.indices[rows].to(image.device)  # (T,)
    generator = torch.Generator().manual_seed(params.seed)
    total = image.new_zeros(rows.shape[0], 1, *image.shape[-2:])
    with hook_session(context.model), torch.inference_mode():
        for start in range(0, params.n_masks, params.batch_size):
            count = min(params.batch_size, params.n_masks - start)
            masks = rise_masks(count, image.shape[-2:], params, generator).to(image.device)
            masked = context.preprocessing.normalize(pixels * masks)  # (n, 3, H, W)
            weights = torch.stack(
                [_similarity(found, boxes, labels) for found in context.model(masked)]
            )  # (n, T)
            total += torch.einsum("nt,nchw->tchw", weights, masks - params.keep)
    return total / params.n_masks


def rise_masks(
    count: int, size: torch.Size | tuple[int, int], params: DRiseParams, generator: torch.Generator
) -> torch.Tensor:
    """(count, 1, H, W) RISE masks: a grid of cells kept with probability `keep`, upsampled
    bilinearly to (grid + 1) cells and cropped at a random shift of up to one cell."""
    height, width = int(size[0]), int(size[1])
    grid = params.grid_size
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    cells, shifts = [], []
    for _ in range(count):  # mask by mask: the same masks whatever the chunk size
        cells.append(torch.rand(1, grid, grid, generator=generator) < params.keep)
        shifts.append(
            divmod(int(torch.randint(0, cell_h * cell_w, (1,), generator=generator)), cell_w)
        )
    upsampled = F.interpolate(
        torch.stack(cells).float(),
        size=((grid + 1) * cell_h, (grid + 1) * cell_w),
        mode="bilinear",
    )
    return torch.stack(
        [upsampled[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(shifts)]
    )


def _similarity(
    found: Mapping[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """(T,) max over one masked copy's detections of IoU x class cosine (x objectness 1)."""
    if found["boxes"].shape[0] == 0:
        return boxes.new_zeros(boxes.shape[0])
    ious: torch.Tensor = box_iou(boxes, found["boxes"].float())  # (T, n)
    scores = found["scores"].float()
    cosine = scores / torch.sqrt(scores.square() + (1 - scores).square())  # (n,)
    same = labels[:, None] == found["labels"][None, :]  # (T, n)
    return (ious * cosine[None, :] * same).amax(dim=1)
