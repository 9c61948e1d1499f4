"""Faster answers of POST /v1/explain: overlay_format, max_side with a reduced JPEG decode,
and the PNG encoder's zlib level, each checked on values."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.api.codecs import IMAGE_FORMATS, image_bytes, png_bytes
from cnnlens.api.forms import OVERLAY_FORMATS
from cnnlens.cli import main
from cnnlens.client import _protocol
from cnnlens.imageio import decode_image, fit_within
from cnnlens.models import LoadedModel
from cnnlens.service import Settings, create_app

MODEL = "efficientnet_lite0"


@pytest.fixture(scope="module")
def client(default_model: LoadedModel) -> Iterator[TestClient]:
    settings = Settings.model_validate({"limits": {"max_batch": 1}})
    app = create_app(settings, models={MODEL: default_model})
    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert app.state.service.wait_ready(120), app.state.service.load_error
        yield test_client


@pytest.fixture(scope="module")
def big_jpeg(chelsea: Image.Image) -> bytes:
    """chelsea() at 4x (1804 x 1200), JPEG quality 92: large enough for 1/4 DCT scaling."""
    buffer = io.BytesIO()
    chelsea.resize((1804, 1200), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _post(client: TestClient, data: bytes, **fields: str) -> Any:
    files = {"image": ("photo.jpg", data, "application/octet-stream")}
    return client.post("/v1/explain", files=files, data={"target": "281", **fields})


def _image(encoded: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    return image


def _pearson(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.corrcoef(first.ravel(), second.ravel())[0, 1])


def test_the_formats_the_form_takes_are_the_ones_the_encoder_knows() -> None:
    assert tuple(IMAGE_FORMATS) == OVERLAY_FORMATS == ("png", "jpeg", "webp")


@pytest.mark.parametrize(("overlay_format", "pillow_format"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_overlay_format_encodes_the_same_pixels_within_lossy_error(
    client: TestClient, chelsea: Image.Image, overlay_format: str, pillow_format: str
) -> None:
    photo = io.BytesIO()
    chelsea.save(photo, "PNG")
    default = _post(client, photo.getvalue())
    lossy = _post(client, photo.getvalue(), overlay_format=overlay_format)
    assert default.status_code == lossy.status_code == 200, lossy.text[:300]
    assert default.json()["overlay_format"] == "png"
    body = lossy.json()
    assert body["overlay_format"] == overlay_format
    (item,), (reference,) = body["explanations"], default.json()["explanations"]
    image, exact = _image(item["overlay_png"]), _image(reference["overlay_png"])
    assert image.format == pillow_format and exact.format == "PNG"
    assert image.size == exact.size == chelsea.size
    difference = np.abs(np.asarray(image, np.int16) - np.asarray(exact, np.int16))
    assert difference.mean() < 3.0, difference.mean()  # lossy, not another image
    heatmap = _image(item["heatmap_png"])  # the heatmap stays a palette PNG, whatever the overlay
    assert heatmap.format == "PNG" and heatmap.mode == "P"
    assert item["heatmap_png"] == reference["heatmap_png"]


def _encoded(picture: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "options", "answer", "pillow_format"),
    [
        ("JPEG", {"quality": 90}, "jpeg", "JPEG"),
        ("WEBP", {"quality": 80}, "webp", "WEBP"),
        ("WEBP", {"lossless": True}, "png", "PNG"),
        ("PNG", {}, "png", "PNG"),
        ("BMP", {}, "png", "PNG"),
        ("TIFF", {}, "png", "PNG"),
    ],
)
def test_the_overlay_format_follows_the_uploads_by_default(
    client: TestClient,
    chelsea: Image.Image,
    fmt: str,
    options: dict[str, Any],
    answer: str,
    pillow_format: str,
) -> None:
    """A lossy upload is answered in its own lossy format (JPEG at quality 90), a lossless
    one in PNG; overlay_format still chooses; heatmaps stay palette PNGs."""
    upload = _encoded(chelsea, fmt, **options)
    response = _post(client, upload)
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert body["overlay_format"] == answer
    (item,) = body["explanations"]
    overlay = _image(item["overlay_png"])
    assert overlay.format == pillow_format and overlay.size == chelsea.size
    assert _image(item["heatmap_png"]).mode == "P"
    if answer == "jpeg":  # the quality-90 encoding of the PNG answer's pixels
        exact = _post(client, upload, overlay_format="png").json()["explanations"][0]
        pixels = np.asarray(_image(exact["overlay_png"]))
        assert base64.b64decode(item["overlay_png"]) == image_bytes(pixels, "jpeg")
    chosen = _post(client, upload, overlay_format="png").json()
    assert chosen["overlay_format"] == "png"
    assert _image(chosen["explanations"][0]["overlay_png"]).format == "PNG"


def test_accept_png_answers_png_for_a_jpeg_upload(client: TestClient, big_jpeg: bytes) -> None:
    response = client.post(
        "/v1/explain",
        files={"image": ("photo.jpg", big_jpeg, "image/jpeg")},
        data={"max_side": "300"},
        headers={"Accept": "image/png"},
    )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).format == "PNG"


def test_binary_overlay_has_the_formats_media_type(
    client: TestClient, chelsea: Image.Image
) -> None:
    photo = io.BytesIO()
    chelsea.save(photo, "PNG")
    response = client.post(
        "/v1/explain",
        files={"image": ("c.png", photo.getvalue(), "image/png")},
        data={"overlay_format": "JPG"},  # case and the common alias are accepted
        headers={"Accept": "image/png"},
    )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"overlay_format": "gif"}, "invalid_overlay_format"),
        ({"max_side": "0"}, "invalid_request"),
        ({"max_side": "lots"}, "invalid_request"),
    ],
)
def test_bad_render_options_are_422_json_errors(
    client: TestClient, big_jpeg: bytes, fields: dict[str, str], code: str
) -> None:
    response = _post(client, big_jpeg, **fields)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_max_side_gives_the_same_maps_at_a_smaller_size(
    client: TestClient, big_jpeg: bytes
) -> None:
    full = _post(client, big_jpeg, output="array,overlay")
    small = _post(client, big_jpeg, output="array,overlay", max_side="400")
    assert full.status_code == small.status_code == 200, small.text[:300]
    assert full.json()["image"] == {"width": 1804, "height": 1200}
    assert small.json()["image"] == {"width": 400, "height": 266}
    (item,) = small.json()["explanations"]
    assert (item["width"], item["height"]) == (400, 266)
    assert _image(item["overlay_png"]).size == (400, 266)
    array = np.frombuffer(base64.b64decode(item["array"]["data"]), np.float32).reshape(266, 400)
    (reference,) = full.json()["explanations"]
    big = np.frombuffer(base64.b64decode(reference["array"]["data"]), np.float32)
    shrunk = Image.fromarray(big.reshape(1200, 1804)).resize((400, 266), Image.Resampling.BOX)
    # the model saw the 1/4-scale DCT decode instead of the full one: the same map within noise
    assert _pearson(array, np.asarray(shrunk)) >= 0.99
    assert small.json()["predictions"][0]["index"] == full.json()["predictions"][0]["index"]


def test_draft_decode_gives_the_model_nearly_the_same_input(
    default_model: LoadedModel, big_jpeg: bytes
) -> None:
    drafted = decode_image(big_jpeg, draft=224)
    assert drafted.size == (451, 300)  # 1/4 scale: the smallest keeping both sides >= 224
    x_full = default_model.preprocessing(decode_image(big_jpeg))
    x_draft = default_model.preprocessing(drafted)
    assert x_draft.shape == x_full.shape == (1, 3, 224, 224)
    difference = (x_draft - x_full).abs()
    assert float(difference.mean()) < 0.02 and float(difference.max()) < 0.5  # normalized units
    with torch.no_grad():
        p_full = torch.softmax(default_model.module(x_full), 1)
        p_draft = torch.softmax(default_model.module(x_draft), 1)
    assert int(p_full.argmax()) == int(p_draft.argmax())
    assert float((p_full - p_draft).abs().sum()) < 0.1


def test_fit_within_keeps_the_aspect_and_never_enlarges(chelsea: Image.Image) -> None:
    assert fit_within(chelsea, 200).size == (200, 133)  # 451 x 300 -> 200 x 133.04
    assert fit_within(chelsea.transpose(Image.Transpose.ROTATE_90), 150).size == (100, 150)
    assert fit_within(chelsea, 1000) is chelsea


def _zlib_level(png: bytes) -> int:
    """FLEVEL of the first IDAT's zlib header (0 fastest .. 3 maximum compression)."""
    position = 8
    while True:
        length = int.from_bytes(png[position : position + 4], "big")
        if png[position + 4 : position + 8] == b"IDAT":
            return png[position + 9] >> 6
        position += 12 + length


def test_png_is_written_at_zlib_level_1_and_decodes_to_the_same_pixels(
    chelsea: Image.Image,
) -> None:
    encoded = png_bytes(chelsea)
    assert _zlib_level(encoded) == 0  # zlib levels 0-1 are FLEVEL 0 ("fastest")
    default = io.BytesIO()
    chelsea.save(default, "PNG")  # Pillow's default, level 6
    assert _zlib_level(default.getvalue()) == 2
    assert len(default.getvalue()) < len(encoded) < 1.5 * len(default.getvalue())
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encoded))), np.asarray(chelsea))
    assert image_bytes(chelsea, "png") == encoded


def test_client_sends_the_render_fields_only_when_asked() -> None:
    image = b"\xff\xd8\xff"
    default = _protocol.explain(image)
    assert default.data is not None and set(default.data) == {"method", "output"}
    call = _protocol.explain(image, overlay_format="webp", max_side=512)
    assert call.data is not None
    assert call.data["overlay_format"] == "webp" and call.data["max_side"] == "512"


def test_cli_writes_jpeg_overlays(chelsea_png: Path, tmp_path: Path) -> None:
    code = main(
        ["explain", str(chelsea_png), "-m", "grad_cam", "--overlay-format", "jpeg",
         "--out", str(tmp_path), "--quiet"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    (entry,) = summary["images"][0]["explanations"]
    overlay = Image.open(tmp_path / entry["overlay"])
    assert entry["overlay"].endswith("_overlay.jpg") and overlay.format == "JPEG"
    assert overlay.size == (451, 300)


def test_cli_writes_overlays_in_the_images_own_format(chelsea: Image.Image, tmp_path: Path) -> None:
    photo = tmp_path / "cat.jpg"
    chelsea.save(photo, "JPEG", quality=90)
    out = tmp_path / "out"
    assert main(["explain", str(photo), "-m", "grad_cam", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (entry,) = summary["images"][0]["explanations"]
    assert entry["overlay"].endswith("_overlay.jpg") and entry["heatmap"].endswith("_heatmap.png")
    assert Image.open(out / entry["overlay"]).format == "JPEG"
    assert Image.open(out / entry["heatmap"]).format == "PNG"
