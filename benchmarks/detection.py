"""Figure 13: explaining one detected box over one detector forward, beside pytorch-grad-cam.

torchvision's fasterrcnn_mobilenet_v3_large_320_fpn with seeded random weights and every
detection kept (`box_score_thresh=0`: the roi heads do the work a real image gives them, up
to 100 detections), on scikit-image's astronaut() at the detector's 320 px. The box explained
is its top detection; the layer the backbone's feature pyramid (cnnlens's default, and
pytorch-grad-cam's Faster R-CNN tutorial's, through its `fasterrcnn_reshape_transform`), and
one pyramid level as a plain tensor layer. pytorch-grad-cam cannot hook the gradient of a
dict output by itself: the pyramid's reference run hooks each level
(`tests.detection.detectors.pytorch_grad_cam_on_pyramid`, the tests' reference).

`detection` times Grad-CAM (the issue's figure, target <= 2.5x); `detection_methods` the
other methods on the same box: saliency, D-RISE (few masks, a per-mask cost, and the default
500 masks extrapolated from it), and Eigen-CAM beside pytorch-grad-cam's tutorial.

    python -m benchmarks.run --figures detection,detection_methods \
        --out benchmarks/results/detection
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from benchmarks.report import Row, at_most
from benchmarks.timing import Timing, paired_quartiles, paired_ratio

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
LEVEL = "backbone.fpn.layer_blocks.0"  # the level the box pools from: a plain (B, 256, h, w) layer
FIGURE = "13 detection"
D_RISE_MASKS = 32  # timed; the default (500) is extrapolated from the cost per mask
D_RISE_BATCH = 16


@dataclass
class _Setup:
    """The detector, its reference copy, the wrapped model, astronaut() and its top box."""

    detector: nn.Module
    reference: nn.Module  # pytorch-grad-cam trains no weights, but backpropagates into them
    model: Any  # cnnlens.LoadedModel
    x: torch.Tensor  # (1, 3, 320, 320), the model's view
    box: torch.Tensor  # (4,), the top detection's, in x's pixels
    label: int

    @staticmethod
    def of(bench: Any) -> _Setup:
        import torchvision
        from skimage import data

        import cnnlens

        torch.manual_seed(0)
        detector = torchvision.models.get_model(
            ARCH, weights=None, weights_backbone=None, box_score_thresh=0.0
        ).eval()
        reference = copy.deepcopy(detector).to(bench.device)
        model = cnnlens.wrap(detector).to(bench.device)
        x = model.preprocessing(Image.fromarray(data.astronaut())).to(bench.device)
        with torch.no_grad():
            found = detector(x)[0]
        return _Setup(detector, reference, model, x, found["boxes"][0], int(found["labels"][0]))

    def forward(self) -> object:
        with torch.no_grad():
            return self.detector(self.x)

    def explain(self, method: str, **params: Any) -> torch.Tensor:
        import cnnlens

        return cnnlens.attribute(
            method, self.model, self.x, target=self.label, box=self.box, **params
        )

    def box_target(self) -> list[Any]:
        from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

        return [FasterRCNNBoxScoreTarget([self.label], [self.box.cpu().numpy()])]


def detection_figure(bench: Any) -> list[Row]:
    """13. grad_cam of one box / one bare detector forward (target <= 2.5x), and
    pytorch-grad-cam's GradCAM with FasterRCNNBoxScoreTarget on the same box and layer."""
    from pytorch_grad_cam import GradCAM

    from tests.detection.detectors import pytorch_grad_cam_on_pyramid

    setup = _Setup.of(bench)
    target = setup.box_target()
    pyramid = pytorch_grad_cam_on_pyramid(setup.reference)
    level = GradCAM(setup.reference, [dict(setup.reference.named_modules())[LEVEL]])
    calls: dict[str, Callable[[], Any]] = {
        "forward": setup.forward,
        "cnnlens pyramid": lambda: setup.explain("grad_cam"),
        "cnnlens level": lambda: setup.explain("grad_cam", layer=LEVEL),
        "pytorch-grad-cam pyramid": lambda: pyramid(setup.x, targets=target),
        "pytorch-grad-cam level": lambda: level(setup.x, targets=target),
    }
    agreement = {
        "pyramid": _pearson(setup.explain("grad_cam"), pyramid(setup.x, targets=target)),
        "level": _pearson(setup.explain("grad_cam", layer=LEVEL), level(setup.x, targets=target)),
    }
    timings = bench.time(calls, repeats=3 * bench.settings.repeats)
    rows = []
    for layer in ("pyramid", "level"):
        where = "the feature pyramid (backbone)" if layer == "pyramid" else f"one level ({LEVEL})"
        rows.append(
            _ratio_row(
                bench,
                f"cnnlens grad_cam of one box / bare detector forward, {where}",
                timings[f"cnnlens {layer}"],
                timings["forward"],
                limit=2.5,
                note=f"r = {agreement[layer]:.4f} with pytorch-grad-cam",
            )
        )
        rows.append(
            _ratio_row(
                bench,
                f"pytorch-grad-cam GradCAM + FasterRCNNBoxScoreTarget / bare forward, {where}",
                timings[f"pytorch-grad-cam {layer}"],
                timings["forward"],
                note="reference",
            )
        )
    return rows


def detection_methods_figure(bench: Any) -> list[Row]:
    """13. saliency, D-RISE and Eigen-CAM of one box / one bare detector forward; D-RISE
    per mask and at its default 500 masks; pytorch-grad-cam's EigenCAM tutorial beside."""
    from pytorch_grad_cam import EigenCAM
    from pytorch_grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform

    from cnnlens.methods import method_names

    setup = _Setup.of(bench)
    target = setup.box_target()
    eigen = EigenCAM(
        setup.reference, [setup.reference.backbone], reshape_transform=fasterrcnn_reshape_transform
    )
    has_eigen = "eigen_cam" in method_names()
    d_rise = {"n_masks": D_RISE_MASKS, "batch_size": D_RISE_BATCH}
    fast: dict[str, Callable[[], Any]] = {
        "forward": setup.forward,
        "cnnlens saliency": lambda: setup.explain("saliency"),
        "pytorch-grad-cam eigen_cam": lambda: eigen(setup.x, targets=target),
    }
    if has_eigen:
        fast["cnnlens eigen_cam"] = lambda: setup.explain("eigen_cam")
    timings = bench.time(fast, repeats=3 * bench.settings.repeats)
    # D-RISE runs its masked copies in batches: a few rounds, each with its own forward.
    slow = bench.time(
        {"forward": setup.forward, "cnnlens d_rise": lambda: setup.explain("d_rise", **d_rise)},
        warmup=1,
        repeats=max(3, bench.settings.repeats // 2),
    )
    forward = timings["forward"]
    rows = [
        _ratio_row(
            bench,
            "cnnlens saliency of one box / bare detector forward",
            timings["cnnlens saliency"],
            forward,
        )
    ]
    if has_eigen:
        r = _pearson(setup.explain("eigen_cam"), eigen(setup.x, targets=target))
        rows.append(
            _ratio_row(
                bench,
                "cnnlens eigen_cam of one box / bare detector forward, the feature pyramid",
                timings["cnnlens eigen_cam"],
                forward,
                note=f"r = {r:.4f} with pytorch-grad-cam's EigenCAM",
            )
        )
    rows.append(
        _ratio_row(
            bench,
            "pytorch-grad-cam EigenCAM (its Faster R-CNN tutorial) / bare forward, the pyramid",
            timings["pytorch-grad-cam eigen_cam"],
            forward,
            note="reference"
            + ("" if has_eigen else "; cnnlens's eigen_cam is not registered in this tree"),
        )
    )
    masks = paired_ratio(slow["cnnlens d_rise"], slow["forward"])
    rows.append(
        _ratio_row(
            bench,
            f"cnnlens d_rise of one box, {D_RISE_MASKS} masks in batches of {D_RISE_BATCH} "
            "/ bare detector forward",
            slow["cnnlens d_rise"],
            slow["forward"],
        )
    )
    rows.append(
        Row(
            FIGURE,
            "cnnlens d_rise, cost of one mask / bare detector forward",
            bench.label,
            masks / D_RISE_MASKS,
            "x",
            note="each mask is one masked copy through the detector, in batches",
        )
    )
    rows.append(
        Row(
            FIGURE,
            "cnnlens d_rise at its default 500 masks / bare detector forward (extrapolated)",
            bench.label,
            masks / D_RISE_MASKS * 500,
            "x",
            note=f"about {masks / D_RISE_MASKS * 500 * slow['forward'].median_ms / 1000:.0f} s",
        )
    )
    return rows


def _ratio_row(
    bench: Any,
    name: str,
    mine: Timing,
    forward: Timing,
    limit: float | None = None,
    note: str = "",
) -> Row:
    """One ratio over the bare forward timed in the same rounds, with its quartiles."""
    ratio = paired_ratio(mine, forward)
    low, high = paired_quartiles(mine, forward)
    return Row(
        FIGURE,
        name,
        bench.label,
        ratio,
        "x",
        "" if limit is None else f"<= {limit}x",
        None if limit is None else at_most(ratio, limit),
        note=f"{mine.median_ms:.1f} ms vs forward {forward.median_ms:.1f} ms (quartiles of the "
        f"rounds {low:.2f}-{high:.2f}); {ARCH}, 320 px" + (f"; {note}" if note else ""),
        detail={"ms": mine.median_ms, "forward_ms": forward.median_ms},
    )


def _pearson(ours: torch.Tensor, theirs: np.ndarray) -> float:
    """r between cnnlens's (1, 1, H, W) map and pytorch-grad-cam's (1, H, W) one."""
    return float(np.corrcoef(ours[0, 0].detach().cpu().numpy().ravel(), theirs[0].ravel())[0, 1])
