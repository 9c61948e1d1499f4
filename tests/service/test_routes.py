"""Every route with the real default model: values, not just status codes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens import render
from cnnlens.api import codecs
from cnnlens.explain import explain
from cnnlens.imageio import decode_image
from cnnlens.methods.base import method_names
from cnnlens.models import LoadedModel
from cnnlens.models.hooks import hook_session
from tests.conftest import EGYPTIAN_CAT, ESPRESSO
from tests.service.conftest import (
    MODEL,
    assert_error,
    decode_array,
    decode_overlay,
    decode_png,
    encode,
    upload,
)

# Chelsea's face (eyes, nose, muzzle) in the 451x300 photo; the right edge is background.
CAT_FACE = (slice(40, 270), slice(90, 360))  # (rows, columns)


def test_healthz_and_readyz(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "ready": True,
        "models": {MODEL: "ready"},
        "detail": None,
    }
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_openapi_lists_every_v1_route_and_docs_render(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/models",
        "/v1/models/{name}",
        "/v1/methods",
        "/v1/explain",
        "/v1/adversarial",
        "/v1/activation-max",
        "/v1/feature-maps",
        "/v1/filters",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    explain_form = paths["/v1/explain"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in explain_form
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_models_list(client: TestClient, default_model: LoadedModel) -> None:
    body = client.get("/v1/models").json()
    assert body["default"] == MODEL
    (summary,) = body["models"]
    assert summary["name"] == MODEL
    assert summary["default"] is True
    assert summary["input_size"] == [224, 224]
    assert summary["num_classes"] == 1000
    assert summary["default_layer"] == default_model.default_layer == "bn2"
    assert summary["weights_sha256"] == default_model.weights_sha256
    assert len(summary["weights_sha256"]) == 64


def test_model_detail_layers_shapes_receptive_fields(
    client: TestClient, default_model: LoadedModel
) -> None:
    detail = client.get(f"/v1/models/{MODEL}").json()
    layers = {layer["name"]: layer for layer in detail["layers"]}
    assert len(layers) == len(default_model.layers.layers)
    stem = layers["conv_stem"]
    assert stem["output_shape"] == [32, 112, 112]
    assert (stem["receptive_field"], stem["stride"]) == (3, 2)  # one 3x3 conv, stride 2
    assert layers["bn2"]["output_shape"] == [1280, 7, 7]
    assert layers["bn2"]["stride"] == 32
    assert layers["classifier"]["output_shape"] == [1000]
    # Receptive fields never shrink along the main path.
    assert layers["conv_head"]["receptive_field"] > layers["blocks.0.0.conv_dw"]["receptive_field"]
    compatibility = detail["compatibility"]
    assert compatibility["guided_methods"] is True  # ReLU6 only: guided backprop is faithful
    assert compatibility["unsupported_activations"] == []
    assert compatibility["gap_linear_head"] is True
    assert detail["categories"][EGYPTIAN_CAT] == "Egyptian cat"
    assert detail["categories"][ESPRESSO] == "espresso"
    assert detail["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert detail["preprocessing"]["input_size"] == [224, 224]


def test_unknown_model_detail_is_404(client: TestClient) -> None:
    assert_error(client.get("/v1/models/resnet9000"), 404, "unknown_model")


def test_methods_with_params_json_schema(client: TestClient) -> None:
    methods = {m["name"]: m for m in client.get("/v1/methods").json()["methods"]}
    assert set(methods) == set(method_names())
    for name in ("saliency", "grad_cam", "cam", "guided_backprop", "deconvnet", "adversarial"):
        assert name in methods
    assert methods["grad_cam"]["route"] == "/v1/explain"
    assert methods["grad_cam"]["uses_layer"] is True
    assert methods["adversarial"]["route"] == "/v1/adversarial"
    epsilon = methods["adversarial"]["params"]["properties"]["epsilon"]
    assert epsilon["maximum"] == 255
    assert methods["adversarial"]["params"]["additionalProperties"] is False
    assert methods["saliency"]["params"]["properties"]["mode"]["enum"] == [
        "gradient",
        "gradient_x_input",
    ]


def test_explain_grad_cam_on_chelsea(client: TestClient, chelsea_jpeg: bytes) -> None:
    response = client.post(
        "/v1/explain", files=upload(chelsea_jpeg), data={"output": "overlay,heatmap,array"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == MODEL
    assert body["image"] == {"width": 451, "height": 300}
    predictions = body["predictions"]
    assert len(predictions) == 5
    assert predictions[0]["index"] == EGYPTIAN_CAT
    assert predictions[0]["label"] == "Egyptian cat"
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0.5 < probabilities[0] <= 1.0
    (item,) = body["explanations"]
    assert item["method"] == "grad_cam"
    assert item["target"] == predictions[0]
    assert item["layer"] == "bn2"
    assert (item["width"], item["height"]) == (451, 300)
    assert decode_png(item["heatmap_png"]).size == (451, 300)
    assert body["overlay_format"] == "jpeg"  # like the upload
    assert decode_overlay(item["overlay_png"], "jpeg").size == (451, 300)
    assert 0 < item["elapsed_ms"] <= body["elapsed_ms"]
    heat = decode_array(item["array"])  # (300, 451)
    # The heatmap travels as a palette PNG; the client's decoder gives the array's colours
    # back in RGB.
    assert decode_png(item["heatmap_png"]).mode == "P"
    heatmap = codecs.decode_png(item["heatmap_png"])
    assert heatmap is not None and heatmap.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(heatmap), render.colorize(render.normalize_map(heat)))
    assert heat.shape == (300, 451)
    assert np.isfinite(heat).all()
    row, column = np.unravel_index(int(heat.argmax()), heat.shape)
    assert CAT_FACE[0].start <= row < CAT_FACE[0].stop
    assert CAT_FACE[1].start <= column < CAT_FACE[1].stop
    face = heat[CAT_FACE].mean()
    background = heat[:, 400:].mean()  # the blurred room right of the cat
    assert face > 3 * background


def test_explain_array_equals_the_library(
    client: TestClient, default_model: LoadedModel, chelsea_jpeg: bytes
) -> None:
    response = client.post(
        "/v1/explain",
        files=upload(chelsea_jpeg),
        data={"method": "saliency", "target": "281", "output": "array"},
    )
    (item,) = response.json()["explanations"]
    assert item["heatmap_png"] is None and item["overlay_png"] is None
    assert item["array"]["dtype"] == "float32"
    served = decode_array(item["array"])
    (local,) = explain(default_model, decode_image(chelsea_jpeg), ["saliency"], target=281)
    assert local.target is not None
    assert local.target.index == item["target"]["index"] == 281
    np.testing.assert_allclose(served, local.map, rtol=1e-4, atol=1e-6 * float(local.map.max()))


def test_explain_several_methods_and_targets(client: TestClient, chelsea_jpeg: bytes) -> None:
    response = client.post(
        "/v1/explain",
        files=upload(chelsea_jpeg),
        data={
            "method": ["saliency,grad_cam", "guided_backprop"],
            "target": [str(EGYPTIAN_CAT), "espresso"],
            "output": "heatmap",
        },
    )
    body = response.json()
    got = [(e["method"], e["target"]["index"]) for e in body["explanations"]]
    assert got == [
        (method, target)
        for method in ("saliency", "grad_cam", "guided_backprop")
        for target in (EGYPTIAN_CAT, ESPRESSO)
    ]
    cat_probability = body["predictions"][0]["probability"]
    for explanation in body["explanations"]:
        assert explanation["overlay_png"] is None
        assert decode_png(explanation["heatmap_png"]).size == (451, 300)
        if explanation["target"]["index"] == EGYPTIAN_CAT:
            assert explanation["target"]["probability"] == pytest.approx(cat_probability)
        else:
            assert explanation["target"]["probability"] < 0.01
    layers = {e["method"]: e["layer"] for e in body["explanations"]}
    assert layers == {"saliency": None, "grad_cam": "bn2", "guided_backprop": None}


def test_explain_coffee_is_espresso(client: TestClient, coffee_jpeg: bytes) -> None:
    body = client.post("/v1/explain", files=upload(coffee_jpeg), data={"layer": "conv_head"})
    top = body.json()
    assert top["predictions"][0]["index"] == ESPRESSO
    assert top["explanations"][0]["layer"] == "conv_head"
    assert top["image"] == {"width": 600, "height": 400}


def test_accept_png_returns_the_overlay_itself(client: TestClient, chelsea_jpeg: bytes) -> None:
    as_png = client.post("/v1/explain", files=upload(chelsea_jpeg), headers={"Accept": "image/png"})
    assert as_png.status_code == 200
    assert as_png.headers["content-type"] == "image/png"
    overlay = Image.open(io.BytesIO(as_png.content))
    assert overlay.format == "PNG"
    assert overlay.size == (451, 300)
    fields = {"output": "overlay", "overlay_format": "png"}
    as_json = client.post("/v1/explain", files=upload(chelsea_jpeg), data=fields)
    same = decode_png(as_json.json()["explanations"][0]["overlay_png"])
    assert np.array_equal(np.asarray(overlay), np.asarray(same))


def test_adversarial_flips_the_class_within_epsilon(client: TestClient, small_png: bytes) -> None:
    params = {"attack": "pgd", "epsilon": 6, "step_size": 2, "steps": 6}
    response = client.post(
        "/v1/adversarial", files=upload(small_png), data={"params": json.dumps(params)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"] == {"width": 96, "height": 64}
    assert body["original"]["index"] == body["target"]["index"]
    assert body["success"] == (body["adversarial"]["index"] != body["original"]["index"])
    assert body["success"]
    assert 0 < body["linf"] <= 6 + 1e-3
    assert body["output_size"] == "image" and body["output"] == {"width": 96, "height": 64}
    assert decode_png(body["adversarial_png"]).size == (96, 64)  # the upload's own size
    assert decode_png(body["perturbation_png"]).size == (96, 64)
    assert body["epsilon_levels"] == 6 and body["linf"] <= 6


def test_adversarial_epsilon_below_one_level_is_refused(
    client: TestClient, small_png: bytes
) -> None:
    response = client.post(
        "/v1/adversarial", files=upload(small_png), data={"params": '{"epsilon": 0.5}'}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_params" and "below one 8-bit level" in error["message"]


def test_activation_max_raises_the_class_logit(client: TestClient) -> None:
    def score(steps: int) -> float:
        params = {"steps": steps, "lr": 0.05, "seed": 3}
        response = client.post(
            "/v1/activation-max", data={"target": "espresso", "params": json.dumps(params)}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["target"]["index"] == ESPRESSO
        assert body["channel"] is None
        assert decode_png(body["image_png"]).size == (224, 224)
        return float(body["score"])

    assert score(12) > score(1) + 1.0


def test_feature_maps_match_the_layer_activations(
    client: TestClient, default_model: LoadedModel, chelsea_jpeg: bytes
) -> None:
    response = client.post(
        "/v1/feature-maps",
        files=upload(chelsea_jpeg),
        data={"layer": "conv_head", "params": json.dumps({"top_k": 4})},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["layer"] == "conv_head"
    assert body["shape"] == [1280, 7, 7]
    x = default_model.preprocessing(decode_image(chelsea_jpeg))
    with hook_session(default_model.module, layers=["conv_head"]) as session, torch.no_grad():
        session.forward(x, input_grad=False)
        activations = session.activations["conv_head"][0].detach()  # (C, h, w)
    means = activations.mean(dim=(1, 2))
    expected = means.topk(4).indices.tolist()
    assert [c["channel"] for c in body["top_channels"]] == expected
    for entry in body["top_channels"]:
        assert entry["mean"] == pytest.approx(float(means[entry["channel"]]), rel=1e-4)
        assert entry["max"] == pytest.approx(float(activations[entry["channel"]].max()), rel=1e-4)
    assert decode_png(body["grid_png"]).size[0] > 0


def test_filters_show_the_conv_weights(client: TestClient, default_model: LoadedModel) -> None:
    stem = client.post("/v1/filters").json()
    assert stem["layer"] == "conv_stem"
    conv_stem = default_model.module.get_submodule("conv_stem")
    assert isinstance(conv_stem, torch.nn.Conv2d)
    assert stem["shape"] == list(conv_stem.weight.shape) == [32, 3, 3, 3]
    assert stem["channels"] == list(range(32))
    head = client.post("/v1/filters", data={"params": json.dumps({"conv": "conv_head"})}).json()
    assert head["layer"] == "conv_head"
    assert head["shape"] == [1280, 320, 1, 1]
    assert head["channels"] == list(range(64))  # at most 64 tiles
    tiles = client.post("/v1/filters", headers={"Accept": "image/png"})
    assert tiles.headers["content-type"] == "image/png"
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(tiles.content))),
        np.asarray(decode_png(stem["tiles_png"])),
    )


def test_metrics_count_requests_by_route(client: TestClient, small_png: bytes) -> None:
    client.post("/v1/explain", files=upload(small_png))
    exposition = client.get("/metrics")
    assert exposition.status_code == 200
    assert exposition.headers["content-type"].startswith("text/plain")
    text = exposition.text
    assert 'cnnlens_requests_total{method="POST",route="/v1/explain",status="200"}' in text
    assert f'cnnlens_batch_size_count{{model="{MODEL}"}}' in text
    assert f'cnnlens_queue_depth{{model="{MODEL}"}} 0.0' in text


def test_exif_orientation_is_applied_before_explaining(
    client: TestClient, chelsea: Image.Image
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    stored = encode(chelsea.resize((96, 64)), "JPEG", exif=exif.tobytes())
    body = client.post("/v1/explain", files=upload(stored)).json()
    assert body["image"] == {"width": 64, "height": 96}
    item = body["explanations"][0]
    assert (item["width"], item["height"]) == (64, 96)
    assert decode_overlay(item["overlay_png"], body["overlay_format"]).size == (64, 96)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_image_mode_is_explained_as_rgb(
    client: TestClient, chelsea: Image.Image, mode: str
) -> None:
    image_format = "JPEG" if mode == "CMYK" else "PNG"
    data = encode(chelsea.resize((60, 40)).convert(mode), image_format)
    response = client.post("/v1/explain", files=upload(data), data={"output": "overlay"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"] == {"width": 60, "height": 40}
    overlay = decode_overlay(body["explanations"][0]["overlay_png"], body["overlay_format"])
    assert (overlay.mode, overlay.size) == ("RGB", (60, 40))
