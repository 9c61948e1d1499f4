"""The new methods on a segmenter: a class over a region is the target (the class's logits
summed over the box), equal to each library called on that region score.

Captum attributes `RegionScore`; Zennit starts from the region's share of the output; the
CAM variants take pytorch-grad-cam's `SemanticSegmentationTarget` with the same mask. The
segmenter is `relu_segmenter` (one module per ReLU, no batch norm): every library serves it.
"""

from __future__ import annotations

from typing import Any

import captum.attr as captum
import pytest
import torch
from pytorch_grad_cam import AblationCAM, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm

from cnnlens.methods import attribute, run_methods
from cnnlens.methods._zennit import COMPOSITES
from cnnlens.models import LoadedModel, count_hooks
from cnnlens.models.regions import box_coverage
from tests.methods.families import assert_equal_maps
from tests.methods.test_cam_variants import assert_close, reference_cam
from tests.methods.test_captum_methods import _mask, _seeded_call
from tests.ownmodel.segmenters import relu_segmenter, wrapped_segmenter

SIZE = 32
BOX = (4, 8, 20, 28)  # x0, y0, x1, y1 in input pixels
TARGET = 1  # "sky"
LAYER = "1"  # the first ReLU: (8, SIZE, SIZE)


class RegionScore(nn.Module):
    """Captum's forward: the class's logits summed over the box, (B,)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x)[:, TARGET] * box()).sum(dim=(1, 2))


def box() -> torch.Tensor:
    return box_coverage(tuple(float(v) for v in BOX), (SIZE, SIZE))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return wrapped_segmenter(size=SIZE)


@pytest.fixture(scope="module")
def reference() -> nn.Module:
    """The same seeded segmenter, for the libraries."""
    return relu_segmenter()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(2, 3, SIZE, SIZE)


def ours(loaded: LoadedModel, method: str, x: torch.Tensor, **params: Any) -> torch.Tensor:
    found = attribute(method, loaded, x, target=TARGET, region=BOX, **params)
    assert count_hooks(loaded.module) == 0
    return found


@pytest.mark.parametrize(
    ("method", "explainer"),
    [("deeplift", captum.DeepLift), ("input_x_gradient", captum.InputXGradient)],
)
def test_gradient_methods_equal_captum_on_the_region_score(
    loaded: LoadedModel, reference: nn.Module, x: torch.Tensor, method: str, explainer: Any
) -> None:
    baseline = {"baseline": "zero"} if method == "deeplift" else {}
    options = {"baselines": torch.zeros_like(x)} if baseline else {}
    found = ours(loaded, method, x, **baseline)
    assert_equal_maps(found, explainer(RegionScore(reference)).attribute(x, **options))


def test_gradient_shap_equals_captum_on_the_region_score(
    loaded: LoadedModel, reference: nn.Module, x: torch.Tensor
) -> None:
    found = ours(loaded, "gradient_shap", x, n_samples=4, stdevs=0.1, seed=5, baselines=["zero"])
    references = torch.zeros_like(x[:1])
    theirs = _seeded_call(
        5,
        lambda: captum.GradientShap(RegionScore(reference)).attribute(
            x, baselines=references, n_samples=4, stdevs=0.1
        ),
    )
    assert_equal_maps(found, theirs)


def test_feature_ablation_equals_captum_on_the_region_score(
    loaded: LoadedModel, reference: nn.Module, x: torch.Tensor
) -> None:
    params = {"superpixels": "grid", "segments": 16, "baseline": "zero"}
    found = ours(loaded, "feature_ablation", x, **params)
    mask = _mask(reference, x, superpixels="grid", segments=16)
    theirs = captum.FeatureAblation(RegionScore(reference)).attribute(
        x, baselines=0.0, feature_mask=mask
    )
    assert_equal_maps(found, theirs[:, :1])


def test_lrp_equals_zennit_from_the_region_share(
    loaded: LoadedModel, reference: nn.Module, x: torch.Tensor
) -> None:
    found = ours(loaded, "lrp", x)
    share = torch.zeros(1, 3, SIZE, SIZE)
    share[0, TARGET] = box()
    composite = COMPOSITES["epsilon_plus_flat"](
        epsilon=1e-6, canonizers=[SequentialMergeBatchNorm()]
    )
    with Gradient(reference, composite) as attributor:
        _, theirs = attributor(x.clone(), lambda output: share * output)
    assert_equal_maps(found, theirs)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("hirescam", HiResCAM), ("xgrad_cam", XGradCAM), ("layer_cam", LayerCAM),
     ("ablation_cam", AblationCAM)],
)  # fmt: skip
def test_cam_variants_equal_pytorch_grad_cam_on_the_region(
    loaded: LoadedModel, reference: nn.Module, x: torch.Tensor, name: str, kind: Any
) -> None:
    goals = [SemanticSegmentationTarget(TARGET, box().numpy())] * 2
    expected, _ = reference_cam(kind, reference, LAYER, x, goals)
    params = {"channels": "all"} if name == "ablation_cam" else {}
    run = run_methods(loaded, x, [(name, params)], target=TARGET, layer=LAYER, region=BOX)
    found = run.outputs[name].extras["low_resolution"][:, 0].numpy()
    assert_close(found, expected)
    assert count_hooks(loaded.module) == 0
