"""Comparisons on a segmentation model: the target is a class over a region, the curves follow
the class's mean per-pixel probability over that region (fixed from the clean image)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data
from torch import nn

import cnnlens
from cnnlens.cli import main
from cnnlens.compare import CompareOptions, compare
from cnnlens.compare.faithfulness import importance_ranks
from cnnlens.errors import IncompatibleModelError
from cnnlens.models import count_hooks
from cnnlens.models.regions import RegionError, box_coverage
from tests.ownmodel.segmenters import wrapped_segmenter
from tests.pinned import pinned_app, pinned_settings

SIZE = 24  # the model's input; the photo is twice as large, so image boxes halve
IMAGE_BOX = (8, 12, 32, 40)
INPUT_BOX = (4.0, 6.0, 16.0, 20.0)
SKY = 1
CURVES_AND_RANDOMIZATION = ["deletion", "insertion", "randomization"]
OPTIONS = CompareOptions(steps=4, stages=2, baseline="mean", scores=CURVES_AND_RANDOMIZATION)
FORM = {
    "steps": "4",
    "stages": "2",
    "baseline": "mean",
    "scores": ",".join(CURVES_AND_RANDOMIZATION),
}


@pytest.fixture(scope="module")
def model() -> cnnlens.LoadedModel:
    return wrapped_segmenter(SIZE)


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return Image.fromarray(data.chelsea()).resize((2 * SIZE, 2 * SIZE))


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def _region_probability(module: nn.Module, inputs: torch.Tensor, mask: torch.Tensor) -> float:
    """The sky's softmax probability per pixel, averaged over the mask's weights, by hand."""
    with torch.no_grad():
        sky = module(inputs).softmax(dim=1)[:, SKY]  # (B, H, W)
    return float((sky * mask).sum() / mask.sum())


def test_curves_follow_the_region_probability(
    model: cnnlens.LoadedModel, picture: Image.Image
) -> None:
    result = compare(
        model, picture, ["saliency", "grad_cam"], target="sky", region=IMAGE_BOX, options=OPTIONS
    )
    (item,) = result.images
    x = model.preprocessing(picture)  # (1, 3, SIZE, SIZE)
    for method in ("saliency", "grad_cam"):  # the maps are the region's, as attribute gives
        expected = cnnlens.attribute(method, model, x, target=SKY, region=INPUT_BOX)[0]
        np.testing.assert_allclose(item.maps[method], expected.numpy(), rtol=1e-4, atol=1e-7)
    mask = box_coverage(INPUT_BOX, (SIZE, SIZE))
    clean = _region_probability(model.module, x, mask)
    blank = _region_probability(model.module, torch.zeros_like(x), mask)  # "mean" = 0
    assert abs(clean - blank) > 1e-3  # the curve has somewhere to go
    assert item.target.index == SKY and item.target.probability == pytest.approx(clean, abs=1e-6)
    with torch.no_grad():
        predicted = model.module(x).argmax(dim=1)
    assert item.target.pixel_share == pytest.approx(float((predicted == SKY).float().mean()))
    curves = item.curves["saliency"]
    assert curves.fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curves.deletion is not None and curves.insertion is not None
    assert curves.deletion[0] == pytest.approx(clean, abs=1e-6)
    assert curves.deletion[-1] == pytest.approx(blank, abs=1e-6)
    assert curves.insertion[0] == pytest.approx(blank, abs=1e-6)
    assert curves.insertion[-1] == pytest.approx(clean, abs=1e-6)
    # Halfway: the saliency's top half of the pixels set to the baseline, measured by hand.
    ranks = importance_ranks(item.maps["saliency"], seed=0)
    halfway = torch.where(ranks < SIZE * SIZE // 2, torch.zeros_like(x), x)
    assert curves.deletion[2] == pytest.approx(
        _region_probability(model.module, halfway, mask), abs=1e-6
    )
    assert item.scores["saliency"]["deletion"] == pytest.approx(
        float(np.trapezoid(curves.deletion, curves.fractions)), abs=1e-6
    )
    assert item.randomization is not None and item.randomization.stages == ["4", "2"]
    for values in item.randomization.similarity.values():
        assert all(-1 <= v <= 1 for v in values)
    body = result.to_json()["images"][0]
    assert body["region"] == list(IMAGE_BOX)
    shares = [p["pixel_share"] for p in body["predictions"]]
    assert sum(shares) == pytest.approx(1.0, abs=1e-5) and min(shares) > 0
    assert count_hooks(model.module) == 0


def test_default_region_is_the_pixels_predicted_as_the_target(
    model: cnnlens.LoadedModel, picture: Image.Image
) -> None:
    exact = picture.resize((SIZE, SIZE))  # image pixels = input pixels
    with torch.no_grad():
        predicted = model.module(model.preprocessing(exact)).argmax(dim=1)[0]
    target = int(predicted.flatten().mode().values)
    mask = (predicted == target).numpy()
    assert 0 < mask.mean() < 1
    default = compare(model, exact, ["saliency"], target=target, options=OPTIONS).images[0]
    given = compare(model, exact, ["saliency"], target=target, region=mask, options=OPTIONS)
    assert default.region is None and given.images[0].region is None
    for name, value in default.scores["saliency"].items():
        assert given.images[0].scores["saliency"][name] == pytest.approx(value, abs=1e-6), name
    # The randomized models predict other pixels: the clean region stays the one measured.
    assert default.randomization is not None and len(default.randomization.stages) == 2


def test_what_cannot_apply_is_refused(model: cnnlens.LoadedModel, picture: Image.Image) -> None:
    with pytest.raises(IncompatibleModelError, match="linear head"):
        compare(model, picture, ["cam"], target="sky", region=IMAGE_BOX, options=OPTIONS)
    with pytest.raises(RegionError, match="outside"):
        compare(model, picture, ["saliency"], target="sky", region=(0, 0, 49, 10))
    classifier = cnnlens.wrap(
        nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)).eval(),
        preprocessing={"input_size": SIZE},
    )
    with pytest.raises(RegionError, match="segmentation models only"):
        compare(classifier, picture, ["saliency"], region=IMAGE_BOX)
    assert count_hooks(model.module) == 0


@pytest.fixture(scope="module")
def served(model: cnnlens.LoadedModel) -> Iterator[TestClient]:
    settings = pinned_settings(
        {"warmup": False, "default_model": "scenes", "models": [{"name": "scenes"}]}
    )
    app = pinned_app(settings, model)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(60), app.state.service.load_error
        yield client


def test_route_and_client_take_the_region(
    served: TestClient, model: cnnlens.LoadedModel, picture: Image.Image
) -> None:
    from cnnlens.client import Client

    files = {"image": ("cat.png", _png(picture), "image/png")}
    form = {"method": "saliency,grad_cam", "target": "sky", "region": "8,12,32,40", **FORM}
    response = served.post("/v1/compare", files=files, data=form)
    assert response.status_code == 200, response.text[:400]
    (remote,) = response.json()["images"]
    local = compare(
        model, picture, ["saliency", "grad_cam"], target="sky", region=IMAGE_BOX, options=OPTIONS
    ).to_json()["images"][0]
    assert remote["region"] == list(IMAGE_BOX)
    assert remote["target"]["pixel_share"] == pytest.approx(local["target"]["pixel_share"])
    for method in ("saliency", "grad_cam"):
        for score, value in local["scores"][method].items():
            assert remote["scores"][method][score] == pytest.approx(value, abs=1e-5)
    answer = Client(http_client=served).compare(
        _png(picture), ["saliency"], target="sky", region=IMAGE_BOX, scores="deletion",
        steps=4, options={"baseline": "mean"},
    )  # fmt: skip
    assert answer.data["images"][0]["scores"]["saliency"]["deletion"] == pytest.approx(
        local["scores"]["saliency"]["deletion"], abs=1e-5
    )


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"region": "0,0,49,10"}, "bad_region"),
        ({"region": "1,2,3"}, "bad_region"),
        ({"region": "5,5,5,9"}, "bad_region"),
        ({"method": "cam", "region": "8,12,32,40"}, "incompatible_model"),
    ],
)
def test_route_refuses_what_cannot_apply(
    served: TestClient, picture: Image.Image, fields: dict[str, str], code: str
) -> None:
    files = {"image": ("cat.png", _png(picture), "image/png")}
    response = served.post("/v1/compare", files=files, data={"target": "sky", **FORM, **fields})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_cli_sends_the_region(
    model: cnnlens.LoadedModel, picture: Image.Image, tmp_path: Path
) -> None:
    from tests.client.live_server import live_server

    photo = tmp_path / "cat.png"
    picture.save(photo)
    settings = pinned_settings(
        {"warmup": False, "default_model": "scenes", "models": [{"name": "scenes"}]}
    )
    common = ["compare", str(photo), "--model", "scenes", "--method", "saliency", "-q"]
    common += ["--target", "sky", "--scores", "deletion", "--steps", "4", "--baseline", "mean"]
    with live_server(pinned_app(settings, model)) as url:
        out = tmp_path / "out"
        assert main([*common, "--region", "8,12,32,40", "--server", url, "--out", str(out)]) == 0
        assert main([*common, "--region", "0,0,49,10", "--server", url, "--out", str(out)]) == 2
        assert main([*common, "--region", "8,12,32", "--server", url, "--out", str(out)]) == 2
    (item,) = json.loads((out / "compare.json").read_text())["images"]
    local = compare(
        model, picture, ["saliency"], target="sky", region=IMAGE_BOX, options=OPTIONS
    ).images[0]
    assert item["region"] == list(IMAGE_BOX)
    assert item["scores"]["saliency"]["deletion"] == pytest.approx(
        local.scores["saliency"]["deletion"], abs=1e-5
    )


def test_the_other_scores_follow_the_region_too(
    model: cnnlens.LoadedModel, picture: Image.Image
) -> None:
    """infidelity, sensitivity_max and road measure the region's probability, as the curves."""
    from cnnlens.compare.road import road_score
    from cnnlens.compare.robustness import infidelity_score

    options = CompareOptions(
        scores=["infidelity", "sensitivity_max", "road", "sparseness"], n_perturb_samples=3,
        road_percentiles=[25, 75], seed=1,
    )  # fmt: skip
    (item,) = compare(
        model, picture, ["saliency"], target="sky", region=IMAGE_BOX, options=options
    ).images
    scores = item.scores["saliency"]
    assert all(np.isfinite(scores[name]) for name in options.scores)
    assert scores["sensitivity_max"] > 0
    x = model.preprocessing(picture)
    weights = box_coverage(INPUT_BOX, (SIZE, SIZE))  # the logits have the input's size here
    saliency = torch.from_numpy(item.maps["saliency"])[None]
    infidelity = infidelity_score(
        model.module, x, saliency, SKY, 3, options.infidelity_noise, 1, "segmentation", weights
    )
    assert scores["infidelity"] == pytest.approx(infidelity, rel=1e-5)
    road = road_score(model.module, x, saliency[0], SKY, [25, 75], 1, "segmentation", weights)
    assert scores["road"] == pytest.approx(road, abs=1e-6)
    assert count_hooks(model.module) == 0
