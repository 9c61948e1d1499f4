"""Everything a client can get wrong: a 4xx with the error shape, and the service fine after."""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.models import LoadedModel
from cnnlens.models.hooks import count_hooks
from tests.service.conftest import MAX_UPLOAD_BYTES, assert_error, encode, upload


def _truncated_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = encode(Image.fromarray(noise), "JPEG")
    return whole[: len(whole) // 2]


TRUNCATED_JPEG = _truncated_jpeg()
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height RGB pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def gif_claiming(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b";"


@dataclass
class Case:
    route: str
    status: int
    code: str | None
    data: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = b"small"  # "small": the suite's valid 96x64 PNG; None: no file part
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None  # a raw body instead of a multipart form


CASES: dict[str, Case] = {
    "zero bytes": Case("/v1/explain", 400, "empty_image", image=b""),
    "plain text": Case("/v1/explain", 415, "unsupported_media_type", image=b"hello, world\n"),
    "html named .jpg": Case("/v1/explain", 415, "unsupported_media_type", image=b"<html></html>"),
    "pdf": Case("/v1/explain", 415, "unsupported_media_type", image=PDF),
    "truncated jpeg": Case("/v1/explain", 400, "corrupt_image", image=TRUNCATED_JPEG),
    "png magic, garbage after": Case(
        "/v1/explain", 400, "corrupt_image", image=b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    ),
    "pixel bomb png (side)": Case(
        "/v1/explain", 413, "image_too_large", image=png_claiming(60_000, 60_000)
    ),
    "pixel bomb png (area)": Case(
        "/v1/explain", 413, "image_too_large", image=png_claiming(6_000, 6_000)
    ),
    "pixel bomb gif": Case("/v1/explain", 413, "image_too_large", image=gif_claiming(65535, 65535)),
    "oversized upload": Case(
        "/v1/explain", 413, "payload_too_large", image=b"\xff\xd8\xff" + b"\x00" * MAX_UPLOAD_BYTES
    ),
    "body over the request limit": Case(
        "/v1/explain", 413, "payload_too_large", image=b"\x00" * (MAX_UPLOAD_BYTES + 300_000)
    ),
    "no image part": Case("/v1/explain", 422, "invalid_request", image=None),
    "image as a text field": Case(
        "/v1/explain", 422, "invalid_request", image=None, data={"image": "not a file"}
    ),
    "json body": Case(
        "/v1/explain",
        422,
        "invalid_request",
        image=None,
        content=b'{"image": "x"}',
        headers={"content-type": "application/json"},
    ),
    "multipart without boundary": Case(
        "/v1/explain",
        400,
        "bad_request",
        image=None,
        content=b"abc",
        headers={"content-type": "multipart/form-data"},
    ),
    "unknown method": Case("/v1/explain", 422, "unknown_method", data={"method": "telepathy"}),
    "unknown layer": Case("/v1/explain", 422, "unknown_layer", data={"layer": "blocks.99"}),
    "unknown model": Case("/v1/explain", 404, "unknown_model", data={"model": "resnet9000"}),
    "model named by a path": Case(
        "/v1/explain", 404, "unknown_model", data={"model": "/etc/passwd"}
    ),
    "target out of range": Case("/v1/explain", 422, "bad_target", data={"target": "1000"}),
    "negative target": Case("/v1/explain", 422, "bad_target", data={"target": "-1"}),
    "unknown target label": Case("/v1/explain", 422, "bad_target", data={"target": "unicorn"}),
    "target that int() refuses": Case("/v1/explain", 422, "bad_target", data={"target": "²"}),
    "too many targets": Case(
        "/v1/explain", 422, "bad_target", data={"target": [str(i) for i in range(17)]}
    ),
    "malformed params json": Case(
        "/v1/explain", 422, "invalid_params", data={"params": '{"grad_cam": {'}
    ),
    "params not an object": Case("/v1/explain", 422, "invalid_params", data={"params": "[1, 2]"}),
    "deeply nested params": Case(
        "/v1/explain", 422, "invalid_params", data={"params": "[" * 50_000 + "]" * 50_000}
    ),
    "params for an unknown method": Case(
        "/v1/explain", 422, "unknown_method", data={"params": '{"nope": {}}'}
    ),
    "unknown param field": Case(
        "/v1/explain", 422, "invalid_params", data={"params": '{"grad_cam": {"alpha": 1}}'}
    ),
    "wrong param type": Case(
        "/v1/explain",
        422,
        "invalid_params",
        data={"method": "saliency", "params": '{"saliency": {"mode": 3}}'},
    ),
    # Occlusion's window stride: 0 would never advance (422 either as a bad param or, where
    # occlusion is not installed, as an unknown method; never a hang or a 500).
    "stride 0": Case(
        "/v1/explain",
        422,
        None,
        data={"method": "occlusion", "params": '{"occlusion": {"stride": 0}}'},
    ),
    "zero steps": Case(
        "/v1/activation-max", 422, "invalid_params", image=None, data={"params": '{"steps": 0}'}
    ),
    "NaN param": Case(
        "/v1/adversarial", 422, "invalid_params", data={"params": '{"epsilon": NaN}'}
    ),
    "Infinity param": Case(
        "/v1/activation-max",
        422,
        "invalid_params",
        image=None,
        data={"target": "1", "params": '{"l2": Infinity}'},
    ),
    "float overflowing to inf": Case(
        "/v1/adversarial", 422, "invalid_params", data={"params": '{"epsilon": 1e999}'}
    ),
    "64-bit overflowing seed": Case(
        "/v1/adversarial",
        422,
        "invalid_params",
        data={"params": '{"seed": 100000000000000000000000, "random_start": true}'},
    ),
    "epsilon over 255": Case(
        "/v1/adversarial", 422, "invalid_params", data={"params": '{"epsilon": 300}'}
    ),
    "adversarial target out of range": Case(
        "/v1/adversarial", 422, "bad_target", data={"params": '{"adversarial_target": 5000}'}
    ),
    "two targets on a one-target route": Case(
        "/v1/adversarial", 422, "bad_target", data={"target": ["1", "2"]}
    ),
    "unknown output": Case("/v1/explain", 422, "invalid_output", data={"output": "gif"}),
    "png for two methods": Case(
        "/v1/explain",
        406,
        "not_acceptable",
        data={"method": "saliency,grad_cam"},
        headers={"accept": "image/png"},
    ),
    "grad_cam at a flat layer": Case(
        "/v1/explain", 422, "incompatible_model", data={"layer": "classifier"}
    ),
    "cam away from the head": Case(
        "/v1/explain", 422, "incompatible_model", data={"method": "cam", "layer": "conv_stem"}
    ),
    "activation max without an objective": Case(
        "/v1/activation-max", 422, "invalid_params", image=None
    ),
    "channel of a flat layer": Case(
        "/v1/activation-max",
        422,
        "incompatible_model",
        image=None,
        data={"layer": "classifier", "params": '{"channel": 3}'},
    ),
    "channel out of range": Case(
        "/v1/activation-max",
        422,
        "invalid_params",
        image=None,
        data={"params": '{"channel": 5000, "steps": 1}'},
    ),
    "filters of a non-conv": Case(
        "/v1/filters", 422, "invalid_params", image=None, data={"params": '{"conv": "bn1"}'}
    ),
    "feature maps of a flat layer": Case(
        "/v1/feature-maps", 422, "incompatible_model", data={"layer": "classifier"}
    ),
    "bad Content-Length": Case("/v1/explain", 400, "bad_request", headers={"content-length": "x"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_clear_4xx(client: TestClient, small_png: bytes, name: str) -> None:
    case = CASES[name]
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.content is not None:
        kwargs["content"] = case.content
    else:
        kwargs["data"] = case.data
        if case.image is not None:
            kwargs["files"] = upload(small_png if case.image == b"small" else case.image)
    error = assert_error(client.post(case.route, **kwargs), case.status, case.code)
    if name == "stride 0":
        assert error["code"] in ("invalid_params", "unknown_method")
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/explain", 405, "method_not_allowed"),
        ("GET", "/v1/nowhere", 404, "not_found"),
        ("GET", "/v1/models/no-such-model", 404, "unknown_model"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ],
)
def test_wrong_routes_use_the_error_shape(
    client: TestClient, method: str, path: str, status: int, code: str
) -> None:
    assert_error(client.request(method, path), status, code)


def test_service_still_answers_after_the_bad_inputs(
    client: TestClient, default_model: LoadedModel, small_png: bytes
) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    response = client.post("/v1/explain", files=upload(small_png))
    assert response.status_code == 200
    assert response.json()["image"] == {"width": 96, "height": 64}
    assert count_hooks(default_model.module) == 0
    assert json.loads(client.get("/readyz").text)["ready"] is True


@pytest.mark.parametrize(
    ("route", "field", "values"),
    [
        ("/v1/explain", "model", ["efficientnet_lite0", "efficientnet_lite0"]),
        ("/v1/explain", "layer", ["conv_stem", "blocks.6"]),
        ("/v1/explain", "params", ["{}", '{"occlusion": {"window": 1}}']),
        ("/v1/explain", "output", ["heatmap", "array"]),
        ("/v1/compare", "steps", ["4", "8"]),
        ("/v1/feature-maps", "params", ["{}", "{}"]),
        ("/v1/adversarial", "model", ["efficientnet_lite0", "efficientnet_lite0"]),
    ],
)
def test_a_single_valued_field_given_twice_is_refused(
    client: TestClient, small_png: bytes, route: str, field: str, values: list[str]
) -> None:
    error = assert_error(
        client.post(route, data={field: values}, files=upload(small_png)), 422, "duplicate_field"
    )
    assert repr(field) in error["message"] and "2 times" in error["message"]


@pytest.mark.parametrize("route", ["/v1/explain", "/v1/feature-maps", "/v1/adversarial"])
def test_two_image_parts_are_refused_not_one_silently_dropped(
    client: TestClient, small_png: bytes, chelsea_jpeg: bytes, route: str
) -> None:
    files = [
        ("image", ("a.png", small_png, "image/png")),
        ("image", ("b.jpg", chelsea_jpeg, "image/jpeg")),
    ]
    error = assert_error(client.post(route, files=files), 422, "duplicate_field")
    assert "'image'" in error["message"]


def test_compare_takes_several_images_and_repeated_methods(
    client: TestClient, small_png: bytes
) -> None:
    files = [
        ("image", ("a.png", small_png, "image/png")),
        ("image", ("b.png", small_png, "image/png")),
    ]
    data = {"method": ["saliency", "grad_cam"], "scores": "none"}
    answer = client.post("/v1/compare", files=files, data=data)
    assert answer.status_code == 200, answer.text[:300]
    assert len(answer.json()["images"]) == 2


@pytest.mark.parametrize("target", ["２８５", "-0", "+3", " 3", "3 ", "٣", "- 3"])
def test_class_indices_are_ascii_digits_only(
    client: TestClient, small_png: bytes, target: str
) -> None:
    error = assert_error(
        client.post("/v1/explain", data={"target": target}, files=upload(small_png)),
        422,
        "bad_target",
    )
    assert repr(target) in error["message"]


def test_an_ascii_class_index_and_a_label_are_accepted(
    client: TestClient, small_png: bytes
) -> None:
    for target in ("285", "Egyptian cat"):
        answer = client.post("/v1/explain", data={"target": target}, files=upload(small_png))
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["explanations"][0]["target"]["index"] == 285


def test_a_field_given_twice_in_a_urlencoded_form_is_refused_too(client: TestClient) -> None:
    answer = client.post(
        "/v1/filters",
        content=b"model=efficientnet_lite0&model=efficientnet_lite0",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert "'model'" in assert_error(answer, 422, "duplicate_field")["message"]
