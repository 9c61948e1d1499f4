"""Detectors as models: torchvision's by name, any module returning their detections, the
head detected from the output, the score threshold, and default weights that fail offline."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.errors import InvalidParamsError, WeightsError
from cnnlens.models.heads import HeadError
from cnnlens.models.loaded import LoadedModel
from tests.detection.detectors import LABELS, PREPROCESSING, SquareDetector
from tests.ownmodel.conftest import small_cnn

DETECTORS = {  # arch: the transform's own side
    "fasterrcnn_mobilenet_v3_large_320_fpn": 320,
    "retinanet_resnet50_fpn_v2": 800,
    "fcos_resnet50_fpn": 800,
    "ssdlite320_mobilenet_v3_large": 320,
}


@pytest.mark.parametrize("arch", list(DETECTORS))
def test_torchvision_detectors_load_by_name_without_downloads(arch: str) -> None:
    model = cnnlens.load_model(f"torchvision:{arch}", weights="none", score_threshold=0.3)
    assert model.head == "detection" and model.score_threshold == 0.3
    side = DETECTORS[arch]
    assert model.input_size == (side, side)
    # The detector's own transform normalizes: cnnlens hands it [0, 1] pixels.
    assert model.preprocessing.mean == (0.0, 0.0, 0.0) and model.preprocessing.std == (1.0,) * 3
    assert len(model.categories) == 91 and model.categories[1] == "person"
    assert model.weights_source == "none"
    assert not any(p.requires_grad for p in model.module.parameters())


def test_num_classes_labels_and_the_default_layer() -> None:
    model = cnnlens.load_model(
        "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
        weights="none",
        num_classes=4,
        labels=LABELS,
    )
    assert model.categories == tuple(LABELS)
    # The default layer is the backbone's feature pyramid: its levels read as one layer.
    assert model.default_layer == "backbone"
    info = model.layers.get("backbone")
    assert info is not None and info.output_shape == [768, 5, 5]  # 3 levels x 256 at 5 x 5
    with pytest.raises(Exception, match="labels given"):
        cnnlens.load_model(
            "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn",
            weights="none",
            num_classes=5,
            labels=LABELS,
        )


def test_default_weights_fail_fast_and_clearly_offline() -> None:
    started = time.monotonic()
    with pytest.raises(WeightsError, match="give local weights instead"):
        cnnlens.load_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    assert time.monotonic() - started < 30  # no long download attempt (a loose bound)


def test_wrap_detects_the_head_from_the_output() -> None:
    model = cnnlens.wrap(
        SquareDetector().eval(), labels=LABELS, preprocessing=PREPROCESSING, score_threshold=0.9
    )
    assert isinstance(model, LoadedModel)
    assert model.head == "detection" and model.score_threshold == 0.9
    assert model.default_layer == "backbone"
    assert model.describe()["score_threshold"] == 0.9
    # A torchvision detector wrapped keeps its transform's size and normalization.
    torch.manual_seed(0)
    import torchvision

    detector = torchvision.models.get_model(
        "ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None
    ).eval()
    wrapped = cnnlens.wrap(detector)
    assert wrapped.head == "detection" and wrapped.input_size == (320, 320)
    assert wrapped.preprocessing.std == (1.0, 1.0, 1.0)


def test_a_threshold_or_detection_head_for_a_classifier_is_refused() -> None:
    classifier: nn.Module = small_cnn(outputs=3, seed=0).eval()
    with pytest.raises(InvalidParamsError, match="score_threshold applies to detectors"):
        cnnlens.wrap(classifier, score_threshold=0.5, preprocessing={"input_size": 24})
    with pytest.raises(HeadError, match="detections per image"):
        cnnlens.wrap(classifier, head="detection", preprocessing={"input_size": 24})
    with pytest.raises(InvalidParamsError, match="not in"):
        cnnlens.wrap(SquareDetector().eval(), preprocessing=PREPROCESSING, score_threshold=2)
