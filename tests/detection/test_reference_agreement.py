"""Grad-CAM of a box equals pytorch-grad-cam's GradCAM with FasterRCNNBoxScoreTarget on the
same seeded torchvision Faster R-CNN, set up as pytorch-grad-cam's Faster R-CNN tutorial sets
it up: the backbone's feature pyramid as the layer, through its `fasterrcnn_reshape_transform`,
and its box target. Grad-CAM++ equals its GradCAMPlusPlus on one level the same way."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from pytorch_grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform
from torch import nn

import cnnlens
from cnnlens.models import count_hooks
from tests.conftest import pearson
from tests.detection.detectors import pytorch_grad_cam_on_pyramid, seeded_fasterrcnn


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, int]:
    """The detector (to explain), an identical copy (the reference's), astronaut() as the
    model sees it, and the first detection's box and label."""
    from skimage import data

    detector = seeded_fasterrcnn()
    reference = copy.deepcopy(detector)  # pytorch-grad-cam needs parameters with gradients
    model = cnnlens.wrap(detector)
    x = model.preprocessing(Image.fromarray(data.astronaut()))
    with torch.no_grad():
        found = detector(x)[0]
    return detector, reference, x, found["boxes"][0], int(found["labels"][0])


def test_grad_cam_of_a_box_equals_pytorch_grad_cam_on_the_feature_pyramid(
    setup: tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, int],
) -> None:
    detector, reference, x, box, label = setup
    ours = cnnlens.attribute("grad_cam", cnnlens.wrap(detector), x, target=label, box=box)
    cam = pytorch_grad_cam_on_pyramid(reference)
    theirs = cam(x, targets=[FasterRCNNBoxScoreTarget([label], [box.numpy()])])[0]
    assert np.ptp(theirs) > 0
    assert pearson(ours[0, 0], theirs) >= 0.99
    assert count_hooks(detector) == 0


@pytest.mark.parametrize(
    ("method", "reference_cam"), [("grad_cam", GradCAM), ("grad_cam_pp", GradCAMPlusPlus)]
)
def test_a_cam_of_a_box_equals_pytorch_grad_cam_on_one_level(
    setup: tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, int],
    method: str,
    reference_cam: type[BaseCAM],
) -> None:
    detector, reference, x, box, label = setup
    layer = "backbone.fpn.layer_blocks.0"
    ours = cnnlens.attribute(method, cnnlens.wrap(detector), x, target=label, box=box, layer=layer)
    cam = reference_cam(reference, [dict(reference.named_modules())[layer]])
    theirs = cam(x, targets=[FasterRCNNBoxScoreTarget([label], [box.numpy()])])[0]
    assert np.ptp(theirs) > 0
    assert pearson(ours[0, 0], theirs) >= 0.99


def test_eigen_cam_of_the_pyramid_equals_pytorch_grad_cams_tutorial(
    setup: tuple[nn.Module, nn.Module, torch.Tensor, torch.Tensor, int],
) -> None:
    """pytorch-grad-cam's Faster R-CNN tutorial exactly: EigenCAM on the backbone through
    `fasterrcnn_reshape_transform` (a class-free map: the box only picks the run's target)."""
    from pytorch_grad_cam import EigenCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

    detector, reference, x, box, label = setup
    ours = cnnlens.attribute("eigen_cam", cnnlens.wrap(detector), x, target=label, box=box)
    cam = EigenCAM(reference, [reference.backbone], reshape_transform=fasterrcnn_reshape_transform)
    cam(x, targets=[FasterRCNNBoxScoreTarget([label], [box.numpy()])])
    # EigenCAM's sign is LAPACK's; cnnlens signs the component as pytorch-grad-cam's sign
    # correction does (its largest magnitude positive), so that projection of the same
    # pyramid activations is the reference, resized as the tutorial's map is.
    activations = cam.activations_and_grads.activations[0].cpu().numpy()
    projection = np.maximum(get_2d_projection_with_sign_correction(activations), 0)
    theirs = scale_cam_image(projection, (x.shape[-1], x.shape[-2]))[0]
    assert np.ptp(theirs) > 0
    assert pearson(ours[0, 0], theirs) >= 0.99
