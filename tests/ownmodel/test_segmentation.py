"""Segmentation models: a class plus a region is the target, its logits summed over the region.

The model is torchvision's deeplabv3_mobilenet_v3_large built without any download (random,
seeded), with its batch-norm statistics measured on scikit-image photos so that its maps
depend on the image; inputs are 128 px to keep CPU time low.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data
from torch import nn

import cnnlens
from cnnlens.errors import IncompatibleModelError, WeightsError
from cnnlens.models import availability, count_hooks
from cnnlens.models.regions import RegionError, box_coverage
from cnnlens.models.weights import sha256_of_file
from cnnlens.service import create_app
from cnnlens.service.settings import load_settings
from tests.ownmodel.segmenters import relu_segmenter

ARCH = "deeplabv3_mobilenet_v3_large"
SIZE = 128
CLASSES = 4
BOX = (24, 40, 88, 104)  # x0, y0, x1, y1 in input pixels (the image is SIZE x SIZE)
LAYER = "backbone.16"


def _photos() -> list[np.ndarray]:
    return [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]


def _batch(prep: cnnlens.models.Preprocessing) -> torch.Tensor:
    return torch.cat([prep(Image.fromarray(photo)) for photo in _photos()])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded random weights with batch-norm statistics measured on the photos."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(
        ARCH, weights=None, weights_backbone=None, num_classes=CLASSES
    )
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # the plain average over the calibration batch
    model.train()
    with torch.no_grad():
        model(_batch(cnnlens.models.Preprocessing(input_size=(SIZE, SIZE))))
    path = tmp_path_factory.mktemp("segmentation") / "deeplab.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def loaded(checkpoint: Path) -> cnnlens.LoadedModel:
    return cnnlens.load_model(
        f"torchvision:{ARCH}",
        weights=str(checkpoint),
        num_classes=CLASSES,
        preprocessing={"input_size": SIZE},
    )


@pytest.fixture(scope="module")
def x(loaded: cnnlens.LoadedModel) -> torch.Tensor:
    return loaded.preprocessing(Image.fromarray(data.astronaut()))  # (1, 3, SIZE, SIZE)


class _Out(nn.Module):
    """The plain (B, K, H, W) output, as pytorch-grad-cam's segmentation tutorial wraps it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.model(x)
        return output["out"] if isinstance(output, dict) else output


class _RegionScore(nn.Module):
    """captum's forward: the class's logits summed over the mask, (B,)."""

    def __init__(self, model: nn.Module, target: int, mask: torch.Tensor) -> None:
        super().__init__()
        self.model, self.target, self.mask = model, target, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (_Out(self.model)(x)[:, self.target] * self.mask).sum(dim=(1, 2))


def _r(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    first = np.asarray(a.detach() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    second = np.asarray(b.detach() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    return float(np.corrcoef(first.ravel(), second.ravel())[0, 1])


def _mask() -> torch.Tensor:
    return box_coverage(tuple(float(v) for v in BOX), (SIZE, SIZE))  # type: ignore[arg-type]


def test_loads_offline_without_backbone_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    model = cnnlens.load_model(f"torchvision:{ARCH}", weights="none", num_classes=CLASSES)
    assert model.head == "segmentation"
    assert model.categories == ("0", "1", "2", "3")
    voc = cnnlens.load_model(f"torchvision:{ARCH}", weights="none")
    assert len(voc.categories) == 21 and voc.categories[15] == "person"

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(availability, "torchvision_cached", lambda arch: None)
    monkeypatch.setattr(availability.socket, "create_connection", offline)
    with pytest.raises(WeightsError, match="not cached"):  # default weights: fail at once
        cnnlens.load_model(f"torchvision:{ARCH}")


def test_default_layer_is_the_feature_map_before_the_class_maps(
    loaded: cnnlens.LoadedModel,
) -> None:
    assert loaded.default_layer == "classifier.3"  # ReLU of DeepLabHead, 256 channels
    assert loaded.layers.get(LAYER) is not None  # names as torchvision's (no wrapper prefix)


def test_grad_cam_matches_pytorch_grad_cam(loaded: cnnlens.LoadedModel, x: torch.Tensor) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    target = 2
    ours = cnnlens.attribute("grad_cam", loaded, x, target=target, layer=LAYER, region=BOX)
    inner = loaded.module.inner  # type: ignore[union-attr]
    wrapped = _Out(inner)
    with GradCAM(model=wrapped, target_layers=[inner.backbone["16"]]) as cam:
        theirs = cam(
            input_tensor=x.clone().requires_grad_(),
            targets=[SemanticSegmentationTarget(target, _mask().numpy())],
        )
    assert ours.shape == (1, 1, SIZE, SIZE)
    assert float(ours.max()) > 0
    assert _r(ours[0, 0], theirs[0]) >= 0.99
    assert count_hooks(loaded.module) == 0


def test_saliency_and_integrated_gradients_match_captum(
    loaded: cnnlens.LoadedModel, x: torch.Tensor
) -> None:
    from captum.attr import IntegratedGradients, Saliency

    target = 1
    score = _RegionScore(loaded.module, target, _mask())
    ours = cnnlens.attribute("saliency", loaded, x, target=target, region=BOX)
    theirs = Saliency(score).attribute(x.clone().requires_grad_(), abs=True)
    assert _r(ours, theirs.amax(dim=1, keepdim=True)) >= 0.99
    torch.testing.assert_close(ours, theirs.amax(dim=1, keepdim=True), rtol=1e-3, atol=1e-6)

    ours = cnnlens.attribute(
        "integrated_gradients", loaded, x, target=target, region=BOX, steps=4, baseline="zero"
    )
    theirs = IntegratedGradients(score).attribute(x, n_steps=4)
    assert _r(ours, theirs) >= 0.99


def test_occlusion_is_the_change_of_the_region_score(
    loaded: cnnlens.LoadedModel, x: torch.Tensor
) -> None:
    from captum.attr import Occlusion

    target = 1
    params = {"window": 64, "stride": 64, "fill": "zero", "engine": "dense"}
    dense = cnnlens.attribute("occlusion", loaded, x, target=target, region=BOX, **params)
    score = _RegionScore(loaded.module, target, _mask())
    with torch.no_grad():
        theirs = Occlusion(score).attribute(
            x, sliding_window_shapes=(3, 64, 64), strides=(3, 64, 64), baselines=0.0
        )
    torch.testing.assert_close(dense, theirs[:, :1], rtol=1e-4, atol=1e-3)
    assert float(dense.abs().max()) > 1e-2  # the region's score does change


def test_default_region_is_the_pixels_predicted_as_the_class(
    loaded: cnnlens.LoadedModel, x: torch.Tensor
) -> None:
    with torch.no_grad():
        predicted = loaded.module(x).argmax(dim=1)[0]  # (SIZE, SIZE)
    target = int(predicted.flatten().mode().values)
    default = cnnlens.attribute("saliency", loaded, x, target=target)
    explicit = cnnlens.attribute("saliency", loaded, x, target=target, region=predicted == target)
    torch.testing.assert_close(default, explicit, rtol=1e-4, atol=1e-6)
    top1 = cnnlens.attribute("saliency", loaded, x)  # the class with the most pixels
    torch.testing.assert_close(top1, default, rtol=1e-4, atol=1e-6)


def test_cam_refuses_and_bad_regions_are_caller_errors(
    loaded: cnnlens.LoadedModel, x: torch.Tensor
) -> None:
    with pytest.raises(IncompatibleModelError, match="linear head"):
        cnnlens.attribute("cam", loaded, x, target=1, region=BOX)
    for bad in [(10, 10, 10, 20), (0, 0, SIZE + 1, 20), (-1, 0, 5, 5), (1, 2, 3)]:
        with pytest.raises(RegionError):
            cnnlens.attribute("saliency", loaded, x, target=1, region=bad)
    classifier = cnnlens.wrap(
        nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)).eval(),
        preprocessing={"input_size": SIZE},
    )
    assert classifier.head == "softmax"
    with pytest.raises(RegionError, match="segmentation models only"):
        cnnlens.attribute("saliency", classifier, x, target=1, region=BOX)
    assert count_hooks(loaded.module) == 0  # nothing left after the errors


def test_explain_lists_classes_with_pixel_shares(loaded: cnnlens.LoadedModel) -> None:
    photo = data.chelsea()  # 451 x 300: the box is in the photo's own pixels
    result = cnnlens.explain(
        loaded, photo, methods=["grad_cam", "saliency"], target=1, region=(100, 50, 300, 250)
    )
    shares = [p.pixel_share for p in result.predictions]
    assert all(s is not None and s > 0 for s in shares)
    assert sum(s for s in shares if s is not None) == pytest.approx(1.0, abs=1e-5)
    assert shares == sorted(shares, reverse=True)
    assert [e.map.shape for e in result] == [(300, 451), (300, 451)]
    assert result[0].explained_box == (0, 0, 451, 300)
    mask = np.zeros(photo.shape[:2], dtype=bool)
    mask[50:250, 100:300] = True  # the same box as a mask of the photo's size
    masked = cnnlens.explain(loaded, photo, methods=["saliency"], target=1, region=mask)
    assert _r(masked[0].map, result[1].map) >= 0.99
    with pytest.raises(RegionError, match="outside"):
        cnnlens.explain(loaded, photo, methods=["saliency"], target=1, region=(0, 0, 452, 10))


def test_guided_methods_on_a_module_returning_class_maps() -> None:
    from captum.attr import Deconvolution, GuidedBackprop

    module = relu_segmenter()
    model = cnnlens.wrap(module, preprocessing={"input_size": 24})
    assert model.head == "segmentation" and len(model.categories) == 3
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    box = (4, 6, 16, 20)
    mask = box_coverage((4.0, 6.0, 16.0, 20.0), (24, 24))
    score = _RegionScore(module, 0, mask)
    for name, reference in [("guided_backprop", GuidedBackprop), ("deconvnet", Deconvolution)]:
        ours = cnnlens.attribute(name, model, x, target=0, region=box)
        theirs = reference(score).attribute(x.clone())
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    combined = cnnlens.attribute("guided_grad_cam", model, x, target=0, region=box, layer="2")
    assert combined.shape == (1, 3, 24, 24) and torch.isfinite(combined).all()
    occlusion = {"window": 6, "stride": 3}
    auto = cnnlens.attribute("occlusion", model, x, target=0, region=box, **occlusion)
    dense = cnnlens.attribute(
        "occlusion", model, x, target=0, region=box, engine="dense", **occlusion
    )
    torch.testing.assert_close(auto, dense, rtol=1e-4, atol=1e-5)
    assert float(dense.abs().max()) > 0
    for unsupported in ("score_cam", "activation_max", "adversarial"):
        with pytest.raises(IncompatibleModelError, match="segmentation"):
            cnnlens.attribute(unsupported, model, x, target=0, region=box)
    smooth = cnnlens.attribute("smoothgrad", model, x, target=0, region=box, samples=4)
    assert float(smooth.abs().sum()) > 0
    assert count_hooks(module) == 0


def test_wrap_detects_a_dict_output(checkpoint: Path) -> None:
    module = torchvision.models.get_model(
        ARCH, weights=None, weights_backbone=None, num_classes=CLASSES
    )
    module.load_state_dict(torch.load(checkpoint, weights_only=True))
    module.eval()
    model = cnnlens.wrap(module, preprocessing={"input_size": SIZE}, labels=list("abcd"))
    assert model.head == "segmentation" and model.categories == ("a", "b", "c", "d")
    x = model.preprocessing(Image.fromarray(data.coffee()))
    ours = cnnlens.attribute("saliency", model, x, target="c", region=BOX)
    assert float(ours.abs().sum()) > 0 and count_hooks(module) == 0


def test_service_answers_with_a_region(tmp_path: Path, checkpoint: Path) -> None:
    config = tmp_path / "cnnlens.toml"
    config.write_text(
        f"""
default_model = "scenes"
warmup = false

[[models]]
name = "scenes"
arch = "torchvision:{ARCH}"
weights = "{checkpoint}"
sha256 = "{sha256_of_file(checkpoint)}"
num_classes = {CLASSES}
labels = "{_labels(tmp_path)}"
preprocessing = {{ input_size = {SIZE} }}
"""
    )
    app = create_app(load_settings(config, environ={}))
    buffer = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buffer, "PNG")  # 451 x 300
    files = {"image": ("cat.png", buffer.getvalue(), "image/png")}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(120), app.state.service.load_error
        response = client.post(
            "/v1/explain",
            files=files,
            data={"method": "grad_cam", "target": "sky", "region": "100,50,300,250"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        shares = [p["pixel_share"] for p in body["predictions"]]
        assert sum(shares) == pytest.approx(1.0, abs=1e-4) and min(shares) > 0
        assert {p["label"] for p in body["predictions"]} <= {"ground", "sky", "water", "wall"}
        explanation = body["explanations"][0]
        assert explanation["target"]["label"] == "sky"
        assert explanation["explained_box"] == [0, 0, 451, 300]
        for region in ["", "1,2,3", "5,5,5,9", "0,0,452,10", "a,b,c,d", "nan,0,1,1"]:
            if not region:
                continue
            answer = client.post(
                "/v1/explain", files=files, data={"target": "sky", "region": region}
            )
            assert answer.status_code == 422, (region, answer.text)
            assert answer.json()["error"]["code"] == "bad_region"
        refused = client.post(
            "/v1/explain",
            files=files,
            data={"method": "cam", "target": "sky", "region": "100,50,300,250"},
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "incompatible_model"
        from cnnlens.client import Client

        result = Client(http_client=client).explain(
            buffer.getvalue(), "saliency", target="sky", region=(100, 50, 300, 250), output="array"
        )
        assert result.predictions[0].pixel_share is not None
        assert result.explanations[0].explained_box == (0, 0, 451, 300)
        assert result.explanations[0].map is not None
        assert result.explanations[0].map.shape == (300, 451)
        for route, form in [
            ("/v1/adversarial", {"target": "sky"}),
            ("/v1/explain", {"target": "sky", "method": "score_cam"}),
        ]:
            answer = client.post(route, files=files, data=form)
            assert answer.status_code == 422, (route, answer.text)
            assert answer.json()["error"]["code"] == "incompatible_model"
        detail = client.get("/v1/models/scenes").json()
        assert detail["head"] == "segmentation" and detail["labels_count"] == CLASSES
        assert count_hooks(app.state.service.models["scenes"].module) == 0


def _labels(folder: Path) -> Path:
    path = folder / "labels.txt"
    path.write_text("ground\nsky\nwater\nwall\n")
    return path


def test_cli_passes_the_region(tmp_path: Path) -> None:
    from cnnlens.cli import main

    photo = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(photo)
    common = ["explain", str(photo), "--model", f"torchvision:{ARCH}", "--weights", "none"]
    common += ["--method", "saliency", "--target", "person", "--out", str(tmp_path), "-q"]
    assert main([*common, "--region", "100,50,300,250"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    (image,) = summary["images"]
    assert image["explanations"][0]["target"]["label"] == "person"
    assert all(p["pixel_share"] > 0 for p in image["predictions"])
    assert main([*common, "--region", "100,50,300"]) != 0


def test_region_score_and_shares_by_hand() -> None:
    from cnnlens.models import heads
    from cnnlens.models.regions import region_weights
    from cnnlens.targets import RegionTarget

    logits = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 5.0], [-1.0, 0.5]]]])  # (1, 2, 2, 2)
    region = torch.tensor([[[1.0, 0.0], [0.5, 1.0]]])
    scores = RegionTarget(torch.tensor([1]), weights=region).score(logits)
    assert float(scores[0]) == pytest.approx(0.0 * 1 + 5.0 * 0 + (-1.0) * 0.5 + 0.5 * 1)
    losses = RegionTarget(torch.tensor([0]), weights=region).loss(logits)
    assert float(losses[0]) == pytest.approx(-(1.0 + 1.5 + 4.0))
    assert heads.pixel_shares(logits).tolist() == [[0.75, 0.25]]  # class 1 wins one pixel
    assert heads.predicted_sets("segmentation", logits) == [{0, 1}]
    # A box covering pixels partly: x in [0.5, 2), y in [0, 1.25) over a 2 x 3 input.
    coverage = box_coverage((0.5, 0.0, 2.0, 1.25), (2, 3))
    torch.testing.assert_close(coverage, torch.tensor([[0.5, 1.0, 0.0], [0.125, 0.25, 0.0]]))
    # A 4 x 4 input box seen by 2 x 2 logits: each output pixel weighs the share it covers.
    coarse = region_weights((0, 0, 1, 4), torch.zeros(1, 3, 2, 2), torch.tensor([0]), (4, 4))
    torch.testing.assert_close(coarse, torch.tensor([[[0.5, 0.0], [0.5, 0.0]]]))
    with pytest.raises(RegionError, match="predicted at no pixel"):
        region_weights(None, torch.zeros(1, 2, 2, 2), torch.tensor([1]), (2, 2))  # all class 0
