"""A user's own model: a colour classifier saved the DataParallel way, labels, heads, wrap."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import cnnlens
from cnnlens.methods.run import _INVENTORIES, resolve_layer
from cnnlens.models import heads
from cnnlens.models.custom import LabelsError, wrap
from tests.ownmodel.conftest import COLOURS, SIZE, colour_images, small_cnn


def _load(weights: Path, labels: Path | list[str]) -> cnnlens.LoadedModel:
    return cnnlens.load_model(
        "torchvision:resnet18",
        weights=weights,
        num_classes=5,
        labels=labels,
        preprocessing={"input_size": SIZE},
    )


def test_own_checkpoint_predicts_its_colour_names(colour_checkpoint: tuple[Path, Path]) -> None:
    weights, labels = colour_checkpoint
    model = _load(weights, labels)
    assert model.categories == tuple(COLOURS)
    for seed, (name, rgb) in enumerate(COLOURS.items()):
        picture = colour_images(rgb, 1, 100 + seed)[0]
        result = cnnlens.explain(model, picture, methods=["grad_cam"])
        assert result.predictions[0].label == name
        assert result[0].target is not None and result[0].target.label == name
        total = sum(p.probability for p in cnnlens.explain(model, picture, top_k=5).predictions)
        assert total == pytest.approx(1.0, abs=1e-4)  # softmax: one distribution


def test_labels_count_must_match_outputs(colour_checkpoint: tuple[Path, Path]) -> None:
    weights, _ = colour_checkpoint
    with pytest.raises(LabelsError, match="4 labels given.*5 classes"):
        _load(weights, ["a", "b", "c", "d"])


def test_describe_reports_labels_head_preprocessing(colour_checkpoint: tuple[Path, Path]) -> None:
    weights, labels = colour_checkpoint
    description = _load(weights, labels).describe()
    assert description["labels_count"] == 5
    assert description["head"] == "softmax"
    assert description["preprocessing"]["input_size"] == [SIZE, SIZE]
    assert description["was_training"] is False


def test_sigmoid_head_gives_independent_probabilities() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    probabilities = heads.probabilities("sigmoid", logits)
    assert torch.allclose(probabilities, torch.sigmoid(logits))
    assert heads.predicted_sets("sigmoid", logits) == [{0, 2}]
    loss = heads.target_loss("sigmoid", logits)
    assert torch.allclose(loss, -torch.log(torch.sigmoid(logits)))
    binary = heads.probabilities("binary", torch.tensor([[0.0], [2.0]]))
    assert torch.allclose(
        binary[1],
        torch.tensor([1 - torch.sigmoid(torch.tensor(2.0)), torch.sigmoid(torch.tensor(2.0))]),
    )


def _notebook_cnn() -> nn.Sequential:
    return small_cnn(outputs=3, seed=1, width=16)


def test_wrap_sequential_explains_with_module_layer_and_warns_on_train_mode() -> None:
    module = _notebook_cnn()  # fresh modules are in train mode
    with pytest.warns(UserWarning, match="train mode"):
        model = wrap(
            module, labels=["cat", "dog", "bird"], preprocessing={"input_size": 48}, name="mine"
        )
    assert model.was_training and module.training  # left as it was: explained in eval mode
    picture = Image.fromarray((np.random.default_rng(0).random((40, 56, 3)) * 255).astype("uint8"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_object = cnnlens.explain(
            model, picture, ["grad_cam", "cam"], layer=module[3], target="dog"
        )
        by_name = cnnlens.explain(model, picture, ["grad_cam"], layer="3", target="dog")
    assert by_object.was_training
    assert by_object[0].layer == "3"
    np.testing.assert_allclose(by_object[0].map, by_name[0].map, rtol=1e-5, atol=1e-7)
    # GAP + linear head at the last conv: CAM equals Grad-CAM up to a positive scale
    cam, grad_cam = by_object[1].map.ravel(), by_object[0].map.ravel()
    assert np.corrcoef(cam, grad_cam)[0, 1] > 0.999
    assert by_object[0].target is not None and by_object[0].target.label == "dog"


def test_layer_object_not_in_model_is_refused() -> None:
    model = wrap(_notebook_cnn().eval())
    from cnnlens.errors import LayerNotFoundError

    with pytest.raises(LayerNotFoundError):
        resolve_layer(model, nn.Conv2d(3, 3, 1), (48, 48))


def test_default_layer_does_not_depend_on_the_size_that_ran_before() -> None:
    torch.manual_seed(0)
    module = torchvision.models.resnet18().eval()
    _INVENTORIES.pop(module, None)
    small = torch.randn(1, 3, 32, 32)
    cnnlens.attribute("grad_cam", module, small)
    large = torch.randn(1, 3, 224, 224)
    result = cnnlens.run_methods(module, large, [("grad_cam", None), ("cam", None)])
    assert result.layer == "layer4"
    assert result.outputs["cam"].map.shape[-2:] == (224, 224)


def test_grayscale_timm_model_preprocesses_one_channel() -> None:
    torch.manual_seed(0)
    model = cnnlens.load_model(
        "timm:resnet18", weights="none", in_chans=1, num_classes=4, preprocessing={"input_size": 64}
    )
    picture = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8"))
    x = model.preprocessing(picture)
    assert x.shape == (1, 1, 64, 64)
    result = cnnlens.explain(model, picture, ["saliency", "grad_cam"])
    assert result[0].map.shape[-2:] == (64, 64)
    from captum.attr import LayerGradCam, Saliency

    target = result.predictions[0].index
    ours = cnnlens.attribute("saliency", model, x, target=target)
    theirs = Saliency(model.module).attribute(x.clone().requires_grad_(), target=target, abs=True)
    r = np.corrcoef(ours.flatten().numpy(), theirs.detach().flatten().numpy())[0, 1]
    assert r >= 0.99
    # seeded random weights: pick the class whose Grad-CAM has a positive part at layer3
    layer = model.module.layer3
    cams = [LayerGradCam(model.module, layer).attribute(x, target=c).detach() for c in range(4)]
    target = max(range(4), key=lambda c: float(cams[c].max()))
    assert float(cams[target].max()) > 0
    ours_cam = cnnlens.attribute("grad_cam", model, x, target=target, layer=layer)
    theirs_up = nn.functional.interpolate(
        cams[target].clamp(min=0), size=(64, 64), mode="bilinear", align_corners=False
    )
    r = np.corrcoef(ours_cam.flatten().numpy(), theirs_up.flatten().numpy())[0, 1]
    assert r >= 0.99


def test_other_channel_counts_are_refused() -> None:
    from cnnlens.errors import InvalidParamsError

    with pytest.raises(InvalidParamsError, match="4 input channels"):
        cnnlens.load_model("timm:resnet18", weights="none", in_chans=4)
