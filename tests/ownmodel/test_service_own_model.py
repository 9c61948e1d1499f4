"""The service configured with a user's own model answers with that model's labels."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cnnlens.models.weights import sha256_of_file
from cnnlens.service.settings import SettingsError, load_settings
from tests.ownmodel.conftest import COLOURS, SIZE, colour_images
from tests.pinned import PINNED_ENVIRONMENT, pinned_app


def _config(tmp_path: Path, weights: Path, labels: Path) -> Path:
    config = tmp_path / "cnnlens.toml"
    config.write_text(
        f"""
default_model = "colours"
warmup = false

[[models]]
name = "colours"
arch = "torchvision:resnet18"
weights = "{weights}"
sha256 = "{sha256_of_file(weights)}"
num_classes = 5
labels = "{labels}"
head = "softmax"
preprocessing = {{ input_size = [{SIZE}, {SIZE}] }}
"""
    )
    return config


def test_configured_own_model_explains_with_its_labels(
    tmp_path: Path, colour_checkpoint: tuple[Path, Path]
) -> None:
    weights, labels = colour_checkpoint
    settings = load_settings(_config(tmp_path, weights, labels), environ=PINNED_ENVIRONMENT)
    entry = settings.models[0]
    assert entry.name == "colours" and entry.architecture == "torchvision:resnet18"
    app = pinned_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(120), app.state.service.load_error
        model = app.state.service.models["colours"]
        assert model.describe()["labels_count"] == 5
        for seed, (name, rgb) in enumerate(COLOURS.items()):
            buffer = io.BytesIO()
            colour_images(rgb, 1, 200 + seed)[0].save(buffer, "PNG")
            response = client.post(
                "/v1/explain",
                files={"image": ("c.png", buffer.getvalue(), "application/octet-stream")},
                data={"model": "colours", "method": "grad_cam", "output": "array"},
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model"] == "colours"
            assert body["predictions"][0]["label"] == name
            assert {p["label"] for p in body["predictions"]} <= set(COLOURS)
            assert body["was_training"] is False
        detail = client.get("/v1/models/colours").json()
        assert (detail["labels_count"], detail["head"], detail["was_training"]) == (
            5,
            "softmax",
            False,
        )
        assert detail["preprocessing"]["input_size"] == [SIZE, SIZE]
        assert detail["preprocessing"]["resize"] == "whole"
        assert detail["preprocessing"]["channels"] == 3


def test_environment_entry_options() -> None:
    settings = load_settings(
        None,
        environ={
            "CNNLENS_MODELS": "plants=none;arch=timm:resnet18;num_classes=12;head=sigmoid",
            "CNNLENS_DEFAULT_MODEL": "plants",
        },
    )
    entry = settings.models[0]
    assert (entry.name, entry.arch, entry.num_classes, entry.head) == (
        "plants",
        "timm:resnet18",
        12,
        "sigmoid",
    )
    with pytest.raises(SettingsError, match="CNNLENS_MODELS option"):
        load_settings(None, environ={"CNNLENS_MODELS": "plants;bogus=1"})
