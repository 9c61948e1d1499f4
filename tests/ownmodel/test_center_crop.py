"""`resize = "shorter-side + center-crop"`: torchvision's Resize + CenterCrop, and maps placed
back over the whole image with the cropped-away border NaN (not explained)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data
from torch import nn
from torchvision import transforms

import cnnlens
from cnnlens.api.codecs import decode_array
from cnnlens.api.models import ArrayPayload
from cnnlens.audit.analyze import AuditAnalyzer
from cnnlens.audit.config import AuditConfig
from cnnlens.audit.inputs import Annotations, build_items
from cnnlens.compare import compare
from cnnlens.errors import InvalidParamsError
from cnnlens.models import Preprocessing
from cnnlens.models.preprocess import CENTER_CROP
from cnnlens.models.regions import RegionError
from cnnlens.service import create_app
from cnnlens.service.settings import load_settings
from tests.ownmodel.conftest import small_cnn

SIZE = 64
CAT = Image.fromarray(data.chelsea())  # 451 x 300
CROP = {"input_size": SIZE, "resize": "center-crop"}


def _small_cnn() -> nn.Sequential:
    return small_cnn(outputs=3, seed=7).eval()


def test_spellings_store_one_value_and_the_default_resize_size() -> None:
    for spelling in ("shorter-side + center-crop", "center-crop", "Center_Crop"):
        prep = Preprocessing.from_mapping({"resize": spelling})
        assert prep.resize == CENTER_CROP
        assert prep.resize_size == 256  # 224 / 0.875, as torchvision
    assert Preprocessing.from_mapping(CROP).resize_size == 73  # round(64 / 0.875)
    assert Preprocessing().resize == "whole" and Preprocessing().resize_size is None
    for bad in ({"resize": "stretch"}, {"resize": "whole", "resize_size": 300}):
        with pytest.raises(InvalidParamsError):
            Preprocessing.from_mapping(bad)
    with pytest.raises(InvalidParamsError, match="smaller than the input"):
        Preprocessing.from_mapping({**CROP, "resize_size": 50})


def test_input_equals_torchvision_resize_and_center_crop() -> None:
    prep = Preprocessing.from_mapping(CROP)
    reference = transforms.Compose(
        [
            transforms.Resize(73),
            transforms.CenterCrop(SIZE),
            transforms.ToTensor(),
            transforms.Normalize(prep.mean, prep.std),
        ]
    )(CAT).unsqueeze(0)
    torch.testing.assert_close(prep(CAT), reference, rtol=0, atol=1e-5)


def test_a_pixel_inside_the_crop_maps_where_expected() -> None:
    framing = Preprocessing.from_mapping(CROP).framing(CAT.width, CAT.height)
    # Resize(73) of 451 x 300 is 109 x 73; the 64 crop starts at (22, 4) of it.
    assert (framing.resized_width, framing.resized_height) == (109, 73)
    assert (framing.left, framing.top) == (22, 4)
    x0, y0, x1, y1 = framing.explained_box
    assert (x0, y0, x1, y1) == (91, 16, 356, 279)  # 22 * 451/109 = 91.0, 86 * 451/109 = 355.8
    raw = torch.zeros(1, SIZE, SIZE)
    raw[0, 40:44, 10:14] = 1.0  # input pixels 10..13 x 40..43
    placed = framing.place(raw)
    assert placed.shape == (CAT.height, CAT.width)
    scale = CAT.width / 109  # original pixels per resized pixel (both axes, up to rounding)
    peak_y, peak_x = np.unravel_index(np.nanargmax(placed), placed.shape)
    assert abs(peak_x - (22 + 12) * scale) <= 3 * scale
    assert abs(peak_y - (4 + 42) * CAT.height / 73) <= 3 * scale
    border = np.ones(placed.shape, dtype=bool)
    border[y0:y1, x0:x1] = False
    assert np.isnan(placed[border]).all() and np.isfinite(placed[~border]).all()
    inside = framing.box_to_input((32 * scale, 16, 356, 300))
    assert inside[0] == pytest.approx(10, abs=1e-6) and inside[1:] == pytest.approx((0, 64, 64))
    with pytest.raises(RegionError, match="outside the explained part"):
        framing.box_to_input((0, 0, 80, 300))


def test_explain_returns_maps_over_the_whole_image_with_a_grey_border() -> None:
    model = cnnlens.wrap(_small_cnn(), preprocessing=CROP, labels=["a", "b", "c"])
    result = cnnlens.explain(model, CAT, methods=["grad_cam", "guided_backprop"])
    x0, y0, x1, y1 = result[0].explained_box or (0, 0, 0, 0)
    assert (x0, y0, x1, y1) == (91, 16, 356, 279)
    x = model.preprocessing(CAT)
    raw = cnnlens.attribute("grad_cam", model, x)[0, 0]
    cam = result[0].map
    assert cam.shape == (300, 451) and np.isnan(cam[:, :x0]).all() and np.isnan(cam[:y0]).all()
    inner = cam[y0:y1, x0:x1]
    assert np.isfinite(inner).all()
    assert np.nanmax(cam) == pytest.approx(float(raw.max()), rel=0.05)
    assert result[1].map.shape == (3, 300, 451) and np.isnan(result[1].map[:, 5, 5]).all()
    for explanation in result:
        heat = np.asarray(Image.open(io.BytesIO(explanation.heatmap_png())))
        assert tuple(heat[5, 5]) == (128, 128, 128)  # the band: neutral grey
        assert tuple(heat[150, 200]) != (128, 128, 128)
        over = np.asarray(Image.open(io.BytesIO(explanation.overlay_png()))).astype(int)
        expected = np.asarray(CAT).astype(int)[5, 5] * 0.5 + 128 * 0.5
        assert np.abs(over[5, 5] - expected).max() <= 1


def test_audit_on_a_center_crop_model_ignores_the_border(tmp_path: Path) -> None:
    model = cnnlens.wrap(_small_cnn(), preprocessing=CROP, labels=["a", "b", "c"])
    CAT.save(tmp_path / "cat.png")
    items = build_items(
        [("cat.png", tmp_path / "cat.png")],
        Annotations(labels={"cat.png": "a"}, boxes={"cat.png": [(120, 40, 300, 260)]}),
        model.categories,
        3,
    )
    (outcome,) = AuditAnalyzer(model, AuditConfig(methods=("grad_cam", "saliency")))(items)
    for name in ("grad_cam", "saliency"):
        record = outcome.record["maps"][name]
        assert record["degenerate"] is False
        assert record["pointing_hit"] is not None
        assert 0 < record["box_energy"] <= 1
    comparison = compare(model, [CAT], methods=["saliency", "grad_cam"])
    agreement = comparison.images[0].agreement[0]
    assert np.isfinite(agreement.spearman)
    tile = np.asarray(comparison.images[0].image, dtype=float)  # under the maps: the crop
    crop = CAT.crop((91, 16, 356, 279)).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    whole = CAT.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    assert np.abs(tile - np.asarray(crop, dtype=float)).mean() < 1
    assert np.abs(tile - np.asarray(whole, dtype=float)).mean() > 10


def test_service_configuration_and_details(tmp_path: Path) -> None:
    config = tmp_path / "cnnlens.toml"
    config.write_text(
        """
default_model = "crop"
warmup = false

[[models]]
name = "crop"
arch = "torchvision:resnet18"
weights = "none"
num_classes = 3

[models.preprocessing]
input_size = 64
resize = "shorter-side + center-crop"
"""
    )
    app = create_app(load_settings(config, environ={}))
    buffer = io.BytesIO()
    CAT.save(buffer, "PNG")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(120), app.state.service.load_error
        detail = client.get("/v1/models/crop").json()
        assert detail["preprocessing"]["resize"] == CENTER_CROP
        assert detail["preprocessing"]["resize_size"] == 73
        response = client.post(
            "/v1/explain",
            files={"image": ("cat.png", buffer.getvalue(), "image/png")},
            data={"method": "saliency", "output": "array"},
        )
        assert response.status_code == 200, response.text
        explanation = response.json()["explanations"][0]
        assert explanation["explained_box"] == [91, 16, 356, 279]
        array = decode_array(ArrayPayload.model_validate(explanation["array"]))
        assert array is not None and array.shape == (300, 451)
        assert np.isnan(array[:, :91]).all() and np.isfinite(array[16:279, 91:356]).all()


def test_environment_entry_sets_the_preprocessing() -> None:
    settings = load_settings(
        None,
        environ={
            "CNNLENS_MODELS": "crop=none;arch=torchvision:resnet18;"
            "input_size=64;resize=center-crop",
            "CNNLENS_DEFAULT_MODEL": "crop",
        },
    )
    entry = settings.models[0]
    assert entry.preprocessing == {"input_size": 64, "resize": "center-crop"}
    model = entry.load(None)
    assert model.preprocessing.resize == CENTER_CROP and model.input_size == (SIZE, SIZE)


def test_adversarial_perturbs_only_what_the_model_sees() -> None:
    from cnnlens.methods.adversarial_image import adversarial_image

    model = cnnlens.wrap(_small_cnn(), preprocessing=CROP, labels=["a", "b", "c"])
    small = CAT.resize((150, 100))  # crop box (30, 5, 118, 94): quick attack
    x0, y0, x1, y1 = model.preprocessing.framing(150, 100).explained_box
    result = adversarial_image(model, small, {"attack": "fgsm", "epsilon": 4})
    change = np.abs(result.perturbation).max(axis=2)  # (H, W) levels moved
    outside = np.ones(change.shape, dtype=bool)
    outside[y0 - 2 : y1 + 2, x0 - 2 : x1 + 2] = False  # resampling reaches a pixel or two
    assert change[outside].max() == 0  # the border is never seen, so never moved
    assert change[y0:y1, x0:x1].max() > 0
    assert result.target.label == cnnlens.explain(model, small, ["saliency"]).predictions[0].label
