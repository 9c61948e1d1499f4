"""One app for the whole service suite: the session's default model, served in-process."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.models import LoadedModel
from cnnlens.service import Settings
from tests.conftest import SCHEMATHESIS_HOST
from tests.pinned import pinned_app, pinned_settings

MODEL = "efficientnet_lite0"
MAX_UPLOAD_BYTES = 2_000_000


def service_settings(**limits: Any) -> Settings:
    base = {"max_upload_bytes": MAX_UPLOAD_BYTES, "max_batch": 8, "max_batch_delay_ms": 20}
    # test_schemathesis's in-process client names the host "testserver"
    return pinned_settings({"limits": {**base, **limits}, "allowed_hosts": [SCHEMATHESIS_HOST]})


@pytest.fixture(scope="session")
def service_app(default_model: LoadedModel) -> FastAPI:
    return pinned_app(service_settings(), default_model)


@pytest.fixture(scope="session")
def client(service_app: FastAPI) -> Iterator[TestClient]:
    # Server errors come back as responses (a 500 must fail an assertion, not raise).
    with TestClient(service_app, raise_server_exceptions=False) as test_client:
        assert service_app.state.service.wait_ready(120), service_app.state.service.load_error
        yield test_client


def encode(image: Image.Image, image_format: str = "JPEG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def chelsea_jpeg(chelsea: Image.Image) -> bytes:
    return encode(chelsea, quality=95)


@pytest.fixture(scope="session")
def coffee_jpeg(coffee: Image.Image) -> bytes:
    return encode(coffee, quality=95)


@pytest.fixture(scope="session")
def small_png(chelsea: Image.Image) -> bytes:
    """A 96x64 chelsea: cheap to decode and render."""
    return encode(chelsea.resize((96, 64)), "PNG")


def upload(data: bytes, name: str = "image.jpg") -> dict[str, tuple[str, bytes, str]]:
    return {"image": (name, data, "application/octet-stream")}


def decode_png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def decode_overlay(b64: str, overlay_format: str) -> Image.Image:
    """An overlay in its answer's overlay_format (by default the upload's: JPEG for a JPEG)."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[overlay_format]
    return image


def decode_array(payload: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(payload["dtype"]).newbyteorder("<")
    return np.frombuffer(base64.b64decode(payload["data"]), dtype=dtype).reshape(payload["shape"])


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The API's error shape: {"error": {"code", "message"}} with a non-empty message."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"].strip()
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])
