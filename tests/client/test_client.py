"""Client against the real app in-process: typed results with the right values, typed errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlens.client import Client, CnnlensAPIError, CnnlensConnectionError
from cnnlens.explain import explain
from cnnlens.models import LoadedModel
from tests.client.conftest import make_app, wait_ready
from tests.conftest import EGYPTIAN_CAT

TABBY = 281


@pytest.fixture(scope="module")
def chelsea_explained(client: Client, chelsea: Image.Image):  # type: ignore[no-untyped-def]
    return client.explain(chelsea, ["grad_cam", "saliency"])


def test_explain_predicts_egyptian_cat_with_maps_at_the_image_size(
    chelsea_explained, chelsea: Image.Image
) -> None:
    result = chelsea_explained
    assert result.model == "efficientnet_lite0"
    assert (result.width, result.height) == chelsea.size == (451, 300)
    assert [p.index for p in result.predictions][0] == EGYPTIAN_CAT
    assert result.predictions[0].label == "Egyptian cat"
    assert len(result.predictions) == 5
    probabilities = [p.probability for p in result.predictions]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert [e.method for e in result.explanations] == ["grad_cam", "saliency"]
    for item in result.explanations:
        assert item.target is not None and item.target.index == EGYPTIAN_CAT
        assert isinstance(item.map, np.ndarray) and item.map.dtype == np.float32
        assert item.map.shape[-2:] == (300, 451)
        assert np.isfinite(item.map).all() and float(item.map.std()) > 0
        assert isinstance(item.overlay, Image.Image) and item.overlay.size == (451, 300)
        assert isinstance(item.heatmap, Image.Image) and item.heatmap.size == (451, 300)
    grad_cam = result.by_method("grad_cam")[0]
    assert grad_cam.layer == "bn2"
    assert grad_cam.map.min() >= 0  # ReLU of the weighted channels


def test_remote_maps_equal_the_library_maps(
    chelsea_explained, default_model: LoadedModel, chelsea: Image.Image
) -> None:
    """The PNG upload is lossless: the service computes exactly what explain() computes."""
    local = explain(default_model, chelsea, ["grad_cam", "saliency"])
    for remote_item, local_item in zip(chelsea_explained.explanations, local, strict=True):
        assert remote_item.method == local_item.method
        np.testing.assert_allclose(remote_item.map, local_item.map, rtol=1e-4, atol=1e-6)


def test_target_by_label_and_index(client: Client, chelsea_png: Path) -> None:
    result = client.explain(chelsea_png, "grad_cam", target=["tabby", EGYPTIAN_CAT])
    assert [e.target.index for e in result.explanations if e.target] == [TABBY, EGYPTIAN_CAT]
    tabby, cat = (e.map for e in result.explanations)
    assert tabby is not None and cat is not None
    assert not np.allclose(tabby, cat)  # a different class weighs the channels differently


def test_output_without_array_and_overlay_png(client: Client, chelsea: Image.Image) -> None:
    result = client.explain(chelsea, "grad_cam", output="overlay")
    item = result.explanations[0]
    assert item.map is None and item.heatmap is None and item.overlay is not None
    picture = client.explain_overlay(chelsea)
    assert picture.format == "PNG" and picture.size == (451, 300)
    assert np.array_equal(np.asarray(picture.convert("RGB")), np.asarray(item.overlay))


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"methods": "no_such_method"}, 422, "unknown_method"),
        ({"layer": "no_such_layer"}, 422, "unknown_layer"),
        ({"model": "no_such_model"}, 404, "unknown_model"),
        ({"target": 5000}, 422, "bad_target"),
        ({"params": {"saliency": {"bogus": 1}}, "methods": "saliency"}, 422, "invalid_params"),
    ],
)
def test_errors_raise_typed_exceptions(
    client: Client, chelsea: Image.Image, kwargs: dict, status: int, code: str
) -> None:
    with pytest.raises(CnnlensAPIError) as caught:
        client.explain(chelsea, **kwargs)
    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.message and caught.value.is_client_error


def test_undecodable_image_is_a_typed_error(client: Client) -> None:
    with pytest.raises(CnnlensAPIError) as caught:
        client.explain(b"this is not an image", filename="notes.txt")
    assert caught.value.status == 415 and caught.value.code == "unsupported_media_type"


def test_models_and_model_detail(client: Client) -> None:
    (summary,) = client.models()
    assert summary.name == "efficientnet_lite0" and summary.default
    assert summary.input_size == [224, 224] and summary.num_classes == 1000
    info = client.model("efficientnet_lite0")
    assert info.default_layer == "bn2" == summary.default_layer
    assert info.categories[EGYPTIAN_CAT] == "Egyptian cat" and len(info.categories) == 1000
    names = [layer.name for layer in info.layers]
    assert "conv_stem" in names and "bn2" in names
    stem = info.layers[names.index("conv_stem")]
    assert stem.output_shape == [32, 112, 112] and stem.receptive_field == 3


def test_methods_list_their_routes_and_schemas(client: Client) -> None:
    methods = {m.name: m for m in client.methods()}
    assert {"saliency", "grad_cam", "adversarial", "feature_maps", "filters"} <= set(methods)
    assert methods["grad_cam"].route == "/v1/explain" and methods["grad_cam"].uses_layer
    assert methods["filters"].route == "/v1/filters"
    assert "epsilon" in methods["adversarial"].params_schema["properties"]


def test_filters_of_the_stem(client: Client) -> None:
    result = client.filters(layer="conv_stem")
    assert result.layer == "conv_stem" and result.shape == [32, 3, 3, 3]
    assert result.channels == list(range(32))
    assert isinstance(result.tiles, Image.Image) and result.tiles.width > 0


def test_feature_maps_strongest_channels(client: Client, chelsea: Image.Image) -> None:
    result = client.feature_maps(chelsea)
    assert result.layer == "bn2" and result.shape == [1280, 7, 7]
    means = [c.mean for c in result.top_channels]
    assert means == sorted(means, reverse=True) and len(means) > 0
    assert all(c.max >= c.mean for c in result.top_channels)
    assert isinstance(result.grid, Image.Image)


def test_adversarial_flips_the_class_within_the_budget(
    client: Client, chelsea: Image.Image
) -> None:
    result = client.adversarial(chelsea, params={"attack": "pgd", "epsilon": 4, "steps": 3})
    assert result.original.index == EGYPTIAN_CAT == result.target.index
    assert result.linf <= 4.0 + 1e-3
    assert result.success == (result.adversarial.index != EGYPTIAN_CAT)
    assert isinstance(result.image, Image.Image) and result.image.size == chelsea.size
    assert result.output_size == "image" and result.epsilon_levels == 4


def test_activation_max_raises_the_class_score(client: Client) -> None:
    result = client.activation_max(target=EGYPTIAN_CAT, params={"steps": 4})
    assert result.target is not None and result.target.index == EGYPTIAN_CAT
    assert np.isfinite(result.score)
    assert isinstance(result.image, Image.Image) and result.image.size == (224, 224)


def test_api_key_is_sent_and_checked(default_model: LoadedModel, chelsea: Image.Image) -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    app = make_app(default_model, api_key_sha256=[digest])
    with Client.for_app(app) as anonymous:
        wait_ready(anonymous)
        with pytest.raises(CnnlensAPIError) as caught:
            anonymous.models()
        assert caught.value.status == 401 and caught.value.code == "unauthorized"
    with Client.for_app(app, api_key="s3cret") as keyed:
        wait_ready(keyed)
        assert [m.name for m in keyed.models()] == ["efficientnet_lite0"]


def test_unreachable_server_is_a_connection_error() -> None:
    with (
        Client("http://127.0.0.1:9", timeout=2) as nowhere,
        pytest.raises(CnnlensConnectionError) as caught,
    ):
        nowhere.models()
    assert caught.value.status == 0 and caught.value.code == "connection_error"


def test_compare_agreement_and_deletion_scores(
    client: Client, chelsea: Image.Image, coffee: Image.Image
) -> None:
    result = client.compare([chelsea, coffee], ["saliency", "grad_cam"], scores="deletion", steps=4)
    assert result.model == "efficientnet_lite0" and result.methods == ["saliency", "grad_cam"]
    cat, espresso = result.images
    assert cat.target is not None and cat.target.index == EGYPTIAN_CAT
    assert espresso.predictions[0].label == "espresso"
    assert (cat.width, cat.height) == (451, 300) and cat.layer == "bn2"
    for image in result.images:
        (pair,) = image.agreement
        assert pair.methods == ("saliency", "grad_cam")
        assert pair.spearman is not None and -1 <= pair.spearman <= 1
        assert pair.top_k_iou is not None and 0 <= pair.top_k_iou <= 1
        for method in ("saliency", "grad_cam"):
            auc = image.scores[method]["deletion"]
            assert auc is not None and 0 <= auc <= 1
    assert result.summary["grad_cam"]["deletion"]["n"] == 2
    # Two rows of [photo, saliency, grad_cam]: 224 px tiles at the photos' 3:2 aspect, 6 px gaps.
    assert isinstance(result.grid, Image.Image)
    assert result.grid.size == (3 * 224 + 2 * 6, 2 * (18 + round(224 * 300 / 451)) + 6)


def test_compare_agreement_only(client: Client, chelsea: Image.Image) -> None:
    result = client.compare(chelsea, "saliency,guided_backprop", scores=[])
    (image,) = result.images
    assert image.scores == {"saliency": {}, "guided_backprop": {}}
    assert image.agreement[0].methods == ("saliency", "guided_backprop")


def test_both_clients_expose_every_endpoint_with_its_one_signature() -> None:
    import inspect

    from cnnlens.client import AsyncClient, Client
    from cnnlens.client import _protocol as protocol

    for endpoint in protocol.ENDPOINTS:
        expected = protocol.method_signature(endpoint)
        for client_class in (Client, AsyncClient):
            method = getattr(client_class, endpoint.__name__)
            assert inspect.signature(method) == expected, (client_class, endpoint.__name__)
            assert method.__doc__ == endpoint.__doc__
        assert inspect.iscoroutinefunction(getattr(AsyncClient, endpoint.__name__))
