"""A REST service configured with detectors answers detections with their boxes and maps for
a box=, and so do the client and the CLI."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cnnlens.client import Client
from cnnlens.service.settings import load_settings
from tests.client.conftest import wait_ready
from tests.detection.conftest import BLUE_BOX, RED_AND_BLUE, RED_BOX
from tests.detection.detectors import square_image
from tests.pinned import PINNED_ENVIRONMENT, pinned_app, pinned_settings
from tests.service.conftest import assert_error, decode_array

SCALE = 2  # uploads are twice the detector's input: boxes come back in the upload's pixels


def _png(scale: int = SCALE) -> bytes:
    picture = square_image(RED_AND_BLUE)
    picture = picture.resize((picture.width * scale, picture.height * scale))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def _scaled(box: tuple[float, ...]) -> list[float]:
    return [v * SCALE for v in box]


@pytest.fixture(scope="module")
def service(squares_module: object) -> Iterator[TestClient]:
    settings = pinned_settings(
        {"default_model": "squares", "warmup": True, "models": [{"name": "squares"}]}
    )
    with TestClient(pinned_app(settings, squares_module)) as client:  # type: ignore[arg-type]
        assert client.app.state.service.wait_ready(120), client.app.state.service.load_error
        yield client


@pytest.fixture(scope="module")
def squares_module() -> object:
    import cnnlens
    from tests.detection.detectors import LABELS, PREPROCESSING, SquareDetector

    return cnnlens.wrap(
        SquareDetector().eval(), labels=LABELS, preprocessing=PREPROCESSING, name="squares"
    )


def test_explain_answers_each_detection_with_its_box_by_default(service: TestClient) -> None:
    response = service.post(
        "/v1/explain",
        files={"image": ("squares.png", _png(), "image/png")},
        data={"method": "grad_cam,occlusion", "output": "array,overlay"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(p["label"], p["box"]) for p in body["predictions"]] == [
        ("red", _scaled(RED_BOX)),
        ("blue", _scaled(BLUE_BOX)),
    ]
    explained = [(e["method"], e["target"]["label"]) for e in body["explanations"]]
    assert explained == [
        ("grad_cam", "red"), ("grad_cam", "blue"), ("occlusion", "red"), ("occlusion", "blue")
    ]  # fmt: skip
    for explanation in body["explanations"]:
        heat = np.abs(decode_array(explanation["array"]))
        x0, y0, x1, y1 = (int(v) for v in explanation["target"]["box"])
        assert heat.shape == (256, 256)
        assert heat[y0:y1, x0:x1].sum() > 0.5 * heat.sum()


def test_box_chooses_the_detection_explained(service: TestClient) -> None:
    near_blue = ",".join(str(v + 4) for v in _scaled(BLUE_BOX))  # IoU about 0.8
    response = service.post(
        "/v1/explain",
        files={"image": ("squares.png", _png(), "image/png")},
        data={"method": "saliency", "box": near_blue, "output": "array"},
    )
    assert response.status_code == 200, response.text
    (explanation,) = response.json()["explanations"]
    assert explanation["target"]["label"] == "blue"
    assert explanation["target"]["box"] == _scaled(BLUE_BOX)  # the detection matched
    heat = decode_array(explanation["array"])
    x0, y0, x1, y1 = (int(v) for v in _scaled(BLUE_BOX))
    assert heat[y0:y1, x0:x1].sum() >= 0.95 * heat.sum()  # (resizing spills a little)
    # A label that the box's detection does not have: nothing to explain, said so.
    wrong = service.post(
        "/v1/explain",
        files={"image": ("squares.png", _png(), "image/png")},
        data={"method": "saliency", "box": near_blue, "target": "red"},
    )
    assert "no detection labelled 'red'" in assert_error(wrong, 422, "no_detection")["message"]
    for data, code in (
        ({"box": "1,2,3"}, "bad_region"),
        ({"box": "0,0,600,600"}, "bad_region"),
        ({"region": "0,0,20,20"}, "bad_region"),
        ({"method": "score_cam"}, "incompatible_model"),
    ):
        answer = service.post(
            "/v1/explain", files={"image": ("s.png", _png(), "image/png")}, data=data
        )
        assert_error(answer, 422, code)


def test_compare_works_per_box(service: TestClient) -> None:
    response = service.post(
        "/v1/compare",
        files={"image": ("squares.png", _png(), "image/png")},
        data={
            "method": "saliency,grad_cam",
            "box": ",".join(str(v) for v in _scaled(RED_BOX)),
            "scores": "deletion,insertion",
            "steps": "4",
        },
    )
    assert response.status_code == 200, response.text
    (image,) = response.json()["images"]
    assert image["target"]["label"] == "red" and image["target"]["box"] == _scaled(RED_BOX)
    assert image["region"] == _scaled(RED_BOX)
    curve = image["curves"]["saliency"]["deletion"]
    assert curve[0] == pytest.approx(2.0, abs=0.01)  # IoU 1 + score 0.9975
    assert curve[-1] == 0.0  # everything deleted: the detection is lost


def test_model_detail_says_detection(service: TestClient) -> None:
    detail = service.get("/v1/models/squares").json()
    assert detail["head"] == "detection" and detail["score_threshold"] == 0.5
    assert detail["default_layer"] == "backbone"


def test_the_client_passes_box(squares_module: object) -> None:
    settings = pinned_settings(
        {"default_model": "squares", "warmup": False, "models": [{"name": "squares"}]}
    )
    with Client.for_app(pinned_app(settings, squares_module)) as client:  # type: ignore[arg-type]
        wait_ready(client)
        result = client.explain(_png(), "grad_cam", box=_scaled(RED_BOX), output="array")
        (explanation,) = result.explanations
        assert explanation.target is not None and explanation.target.box == _scaled(RED_BOX)
        assert [p.label for p in result.predictions] == ["red", "blue"]
        overlay = client.explain_overlay(_png(), "grad_cam", box=_scaled(BLUE_BOX))
        assert overlay.size == (256, 256)


def test_a_configured_torchvision_detector_answers_boxes_and_maps(tmp_path: Path) -> None:
    """[[models]] takes load_model's keys: a seeded Faster R-CNN that keeps every detection."""
    config = tmp_path / "cnnlens.toml"
    config.write_text(
        """
default_model = "detector"
warmup = true

[[models]]
name = "detector"
arch = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
weights = "none"
score_threshold = 0.0
"""
    )
    settings = load_settings(config, environ=PINNED_ENVIRONMENT)
    assert settings.models[0].score_threshold == 0.0
    app = pinned_app(settings)
    with TestClient(app) as client:
        assert app.state.service.wait_ready(300), app.state.service.load_error
        model = app.state.service.models["detector"]
        # Random weights score below torchvision's own box_score_thresh (0.05): keep them.
        model.module.roi_heads.score_thresh = 0.0
        upload = {"image": ("s.png", _png(), "image/png")}
        first = client.post(
            "/v1/explain", files=upload, data={"method": "saliency", "box": "0,0,8,8"}
        )
        assert_error(first, 422, "no_detection")
        probe = client.post(
            "/v1/explain", files=upload, data={"method": "saliency", "target": "999"}
        )
        assert_error(probe, 422, "bad_target")
        found = client.post(
            "/v1/explain",
            files=upload,
            data={"method": "grad_cam", "output": "array", "params": json.dumps({})},
        )
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["predictions"] and all(len(p["box"]) == 4 for p in body["predictions"])
        box = body["predictions"][0]["box"]
        chosen = client.post(
            "/v1/explain",
            files=upload,
            data={"method": "grad_cam", "box": ",".join(map(str, box)), "output": "array"},
        )
        assert chosen.status_code == 200, chosen.text
        (explanation,) = chosen.json()["explanations"]
        assert explanation["target"]["box"] == box
        heat = decode_array(explanation["array"])
        assert heat.shape == (256, 256) and np.isfinite(heat).all() and np.ptp(heat) > 0


def test_the_cli_passes_box(squares_module: object, tmp_path: Path) -> None:
    from cnnlens.cli import main
    from tests.client.live_server import live_server

    image = tmp_path / "squares.png"
    image.write_bytes(_png())
    settings = pinned_settings(
        {"default_model": "squares", "warmup": False, "models": [{"name": "squares"}]}
    )
    with live_server(pinned_app(settings, squares_module)) as url:  # type: ignore[arg-type]
        box = ",".join(f"{v:g}" for v in _scaled(BLUE_BOX))
        out = tmp_path / "out"
        code = main(["explain", str(image), "--box", box, "--server", url, "--out", str(out), "-q"])
        assert code == 0
        summary = json.loads((out / "summary.json").read_text())
        (explanation,) = summary["images"][0]["explanations"]
        assert explanation["target"]["label"] == "blue"
        assert explanation["target"]["box"] == _scaled(BLUE_BOX)
        assert (out / explanation["overlay"]).is_file()
        # Both detections by default, one file each.
        every = tmp_path / "every"
        assert main(["explain", str(image), "--server", url, "--out", str(every), "-q"]) == 0
        files = [
            e["overlay"]
            for e in json.loads((every / "summary.json").read_text())["images"][0]["explanations"]
        ]
        assert len(set(files)) == 2
