"""Figure 13: Grad-CAM of one detected box over one detector forward, beside pytorch-grad-cam.

torchvision's fasterrcnn_mobilenet_v3_large_320_fpn with seeded random weights and every
detection kept (`box_score_thresh=0`: the roi heads do the work a real image gives them, up
to 100 detections), on scikit-image's astronaut() at the detector's 320 px. The box explained
is its top detection; the layer the backbone's feature pyramid (cnnlens's default, and
pytorch-grad-cam's Faster R-CNN tutorial's, through its `fasterrcnn_reshape_transform`), and
one pyramid level as a plain tensor layer. pytorch-grad-cam cannot hook the gradient of a
dict output by itself: the pyramid's reference run hooks each level
(`tests.detection.detectors.pytorch_grad_cam_on_pyramid`, the tests' reference).

    python -m benchmarks.run --figures detection --out benchmarks/results/detection
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.report import Row, at_most
from benchmarks.timing import paired_quartiles, paired_ratio

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
LEVEL = "backbone.fpn.layer_blocks.1"  # one pyramid level: a plain (B, 256, h, w) layer


def detection_figure(bench: Any) -> list[Row]:
    """13. grad_cam of one box / one bare detector forward (target <= 2.5x), and
    pytorch-grad-cam's GradCAM with FasterRCNNBoxScoreTarget on the same box and layer."""
    import torchvision
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
    from skimage import data

    import cnnlens
    from tests.detection.detectors import pytorch_grad_cam_on_pyramid

    torch.manual_seed(0)
    detector = torchvision.models.get_model(
        ARCH, weights=None, weights_backbone=None, box_score_thresh=0.0
    ).eval()
    reference = copy.deepcopy(detector).to(bench.device)  # pytorch-grad-cam trains no weights,
    model = cnnlens.wrap(detector).to(bench.device)  # but backpropagates into them
    x = model.preprocessing(Image.fromarray(data.astronaut())).to(bench.device)
    with torch.no_grad():
        found = detector(x)[0]
    box, label = found["boxes"][0], int(found["labels"][0])
    target = [FasterRCNNBoxScoreTarget([label], [box.cpu().numpy()])]
    pyramid = pytorch_grad_cam_on_pyramid(reference)
    level = GradCAM(reference, [dict(reference.named_modules())[LEVEL]])

    def forward() -> object:
        with torch.no_grad():
            return detector(x)

    calls: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "cnnlens pyramid": lambda: cnnlens.attribute("grad_cam", model, x, target=label, box=box),
        "cnnlens level": lambda: cnnlens.attribute(
            "grad_cam", model, x, target=label, box=box, layer=LEVEL
        ),
        "pytorch-grad-cam pyramid": lambda: pyramid(x, targets=target),
        "pytorch-grad-cam level": lambda: level(x, targets=target),
    }
    ours = cnnlens.attribute("grad_cam", model, x, target=label, box=box)[0, 0].cpu().numpy()
    theirs = pyramid(x, targets=target)[0]
    agreement = float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1])
    timings = bench.time(calls, repeats=3 * bench.settings.repeats)
    forward_ms = timings["forward"].median_ms
    rows = []
    for layer in ("pyramid", "level"):
        mine = timings[f"cnnlens {layer}"]
        reference_run = timings[f"pytorch-grad-cam {layer}"]
        ratio = paired_ratio(mine, timings["forward"])
        low, high = paired_quartiles(mine, timings["forward"])
        where = "the feature pyramid (backbone)" if layer == "pyramid" else f"one level ({LEVEL})"
        rows.append(
            Row(
                "13 detection",
                f"cnnlens grad_cam of one box / bare detector forward, {where}",
                bench.label,
                ratio,
                "x",
                "<= 2.5x",
                at_most(ratio, 2.5),
                note=f"{mine.median_ms:.1f} ms vs forward {forward_ms:.1f} ms (quartiles of the "
                f"rounds {low:.2f}-{high:.2f}); {ARCH}, 320 px"
                + (f"; r = {agreement:.4f} with pytorch-grad-cam" if layer == "pyramid" else ""),
                detail={"ms": mine.median_ms, "forward_ms": forward_ms, "r": agreement},
            )
        )
        theirs_ratio = paired_ratio(reference_run, timings["forward"])
        rows.append(
            Row(
                "13 detection",
                f"pytorch-grad-cam GradCAM + FasterRCNNBoxScoreTarget / bare forward, {where}",
                bench.label,
                theirs_ratio,
                "x",
                note=f"reference; {reference_run.median_ms:.1f} ms",
                detail={"ms": reference_run.median_ms, "forward_ms": forward_ms},
            )
        )
    return rows
