"""Methods on a detector whose answer is known: the colour-square detector explains each
square's detection by that square."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

import cnnlens
from cnnlens.errors import IncompatibleModelError, NoDetectionError
from cnnlens.methods import get_method, method_names
from cnnlens.methods.base import explains_head
from cnnlens.models import LoadedModel
from tests.detection.conftest import BLUE_BOX, RED_AND_BLUE, RED_BOX
from tests.detection.detectors import SIZE, square_image

DETECTOR_METHODS = [m for m in method_names() if explains_head(get_method(m), "detection")]
FAST: dict[str, dict[str, Any]] = {
    "occlusion": {"window": 16, "stride": 8},
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 4},
    "d_rise": {"n_masks": 64},
}


def _inside(box: tuple[float, ...]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[y0:y1, x0:x1] = True
    return mask


def test_the_methods_that_explain_detectors() -> None:
    assert {"grad_cam", "saliency", "integrated_gradients", "smoothgrad"} <= set(DETECTOR_METHODS)
    assert {"guided_backprop", "occlusion", "d_rise", "guided_grad_cam"} <= set(DETECTOR_METHODS)
    # Methods that read (B, K) class logits are refused, as on segmenters (CAM by its check
    # of a GAP + linear head); D-RISE explains detectors only.
    assert not {"score_cam", "activation_max", "adversarial"} & set(DETECTOR_METHODS)
    assert not explains_head(get_method("d_rise"), "softmax")


@pytest.mark.parametrize(
    "method", ["grad_cam", "saliency", "guided_backprop", "integrated_gradients", "smoothgrad"]
)
def test_gradient_maps_of_each_box_lie_on_its_square(
    method: str, squares: LoadedModel, two_squares: torch.Tensor
) -> None:
    x = two_squares.expand(2, -1, -1, -1)
    maps = cnnlens.attribute(
        method, squares, x, target=["red", "blue"], box=[RED_BOX, BLUE_BOX], **FAST.get(method, {})
    )
    for row, (own, other) in enumerate(((RED_BOX, BLUE_BOX), (BLUE_BOX, RED_BOX))):
        energy = maps[row].abs().sum(dim=0).numpy()
        assert energy[_inside(own)].sum() > 10 * energy[_inside(other)].sum()
    # Grad-CAM reads the feature pyramid at its coarsest grid (stride 8): the square plus a
    # cell of spill; the input-gradient maps stay inside it.
    share = 0.6 if method == "grad_cam" else 0.99
    for row, own in enumerate((RED_BOX, BLUE_BOX)):
        energy = maps[row].abs().sum(dim=0).numpy()
        assert energy[_inside(own)].sum() >= share * energy.sum()


def test_occlusion_is_the_change_of_the_box_score_computed_densely(
    squares: LoadedModel, two_squares: torch.Tensor
) -> None:
    window, stride = 16, 16
    ours = cnnlens.attribute(
        "occlusion", squares, two_squares, target="blue", box=BLUE_BOX, window=window,
        stride=stride, fill=0.5,
    )[0, 0]  # fmt: skip
    detector = squares.module

    def box_score(x: torch.Tensor) -> float:
        """pytorch-grad-cam's FasterRCNNBoxScoreTarget: IoU + score of the best match."""
        with torch.no_grad():
            found = detector(x)[0]
        same = found["labels"] == 3
        if not same.any():
            return 0.0
        ious = box_iou(torch.tensor([BLUE_BOX]), found["boxes"][same])[0]
        best = int(ious.argmax())
        return float(ious[best] + found["scores"][same][best]) if ious[best] >= 0.5 else 0.0

    clean = box_score(two_squares)
    expected = torch.zeros(SIZE, SIZE)
    for top in range(0, SIZE - window + 1, stride):
        for left in range(0, SIZE - window + 1, stride):
            copy = two_squares.clone()
            copy[..., top : top + window, left : left + window] = 0.5
            expected[top : top + window, left : left + window] = clean - box_score(copy)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert float(expected.max()) > 0.2  # occluding the blue square costs the detection


def test_d_rise_finds_the_object(squares: LoadedModel) -> None:
    """One red square at a place only D-RISE's masks can tell: its map peaks on the square."""
    x = squares.preprocessing(square_image([("red", 64, 32)]))
    box = (64.0, 32.0, 96.0, 64.0)
    saliency = cnnlens.attribute("d_rise", squares, x, target="red", box=box, n_masks=400)[0, 0]
    inside = _inside(box)
    values = saliency.numpy()
    assert values[inside].mean() > 5 * abs(values[~inside].mean())
    peak = np.unravel_index(int(values.argmax()), values.shape)
    assert inside[peak]
    # Seeded and chunked: the same masks whatever the chunk size.
    again = cnnlens.attribute(
        "d_rise", squares, x, target="red", box=box, n_masks=400, batch_size=7
    )[0, 0]
    torch.testing.assert_close(again, saliency, atol=1e-6, rtol=1e-5)
    other = cnnlens.attribute("d_rise", squares, x, target="red", box=box, n_masks=400, seed=1)
    assert not torch.allclose(other[0, 0], saliency)


def test_each_detection_above_the_threshold_is_explained_by_default(squares: LoadedModel) -> None:
    explanations = cnnlens.explain(squares, square_image([("red", 16, 24), ("blue", 72, 80)]))
    assert [(p.label, p.box) for p in explanations.predictions] == [
        ("red", list(RED_BOX)),
        ("blue", list(BLUE_BOX)),
    ]
    assert [(e.target.label, e.target.box) for e in explanations if e.target] == [
        ("red", list(RED_BOX)),
        ("blue", list(BLUE_BOX)),
    ]
    assert explanations[0].target is not None and explanations[0].target.probability > 0.99
    # The overlay draws the detections: white around the explained one.
    overlay = np.asarray(explanations[1].overlay())
    assert (overlay[96, 72] > 240).all()  # on the blue square's left edge (2 px lines)


def test_a_box_nothing_matches_is_refused_not_a_blank_map(squares: LoadedModel) -> None:
    picture = square_image([("red", 16, 24)])
    with pytest.raises(NoDetectionError, match="no detection labelled 'blue'"):
        cnnlens.explain(squares, picture, target="blue", box=RED_BOX)
    with pytest.raises(NoDetectionError, match="detects nothing of blue"):
        cnnlens.explain(squares, picture, target="blue")
    with pytest.raises(IncompatibleModelError, match="does not explain detectors"):
        cnnlens.explain(squares, picture, ["score_cam"])


def test_a_torchvision_ssd_is_explained_and_guided_backprop_refused_on_hardswish() -> None:
    """SSDlite on MobileNetV3: Grad-CAM of its top detection's box through its own feature
    pyramid (a dict of six levels); guided backprop has no rule for its Hardswish units."""
    import torchvision

    from cnnlens.models import count_hooks

    torch.manual_seed(0)
    detector = torchvision.models.get_model(
        "ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None
    )
    pixels = torch.from_numpy(np.array(square_image(RED_AND_BLUE).resize((320, 320))))
    x = pixels.permute(2, 0, 1)[None].float() / 255
    # Random SSDlite features vanish (1e-14 by the last level) under its initial batch-norm
    # statistics: measured on the image instead, the seeded detector's scores differ.
    for module in detector.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    with torch.no_grad():
        detector.train()(
            x.expand(2, -1, -1, -1),
            [{"boxes": torch.tensor([[0.0, 0, 9, 9]]), "labels": torch.tensor([1])}] * 2,
        )
    model = cnnlens.wrap(detector.eval())
    with torch.no_grad():
        found = detector(x)[0]
    box, label = found["boxes"][0], int(found["labels"][0])
    assert model.default_layer == "backbone"
    # Six levels, 20 x 20 down to 1 x 1: stacked on the 5 x 5 grid (at least 4 a side).
    assert model.layers.get("backbone").output_shape == [672 + 480 + 512 + 256 + 256 + 128, 5, 5]
    cam = cnnlens.attribute("grad_cam", model, x, target=label, box=box)
    assert cam.shape == (1, 1, 320, 320) and torch.isfinite(cam).all()
    assert float(cam.std()) > 0.05 * float(cam.max()) > 0  # a map, not a constant
    with pytest.raises(IncompatibleModelError, match="Hardswish"):
        cnnlens.attribute("guided_backprop", model, x, target=label, box=box)
    assert count_hooks(detector) == 0
