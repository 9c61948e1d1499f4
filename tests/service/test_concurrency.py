"""Concurrent requests: dynamic batches form, and nobody sees anybody else's hooks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from cnnlens.models import LoadedModel
from cnnlens.models.hooks import count_hooks
from tests.service.conftest import MODEL, decode_array, encode, upload

CLIENTS = 16


@pytest.fixture(scope="module")
def small_images(chelsea: Image.Image, coffee: Image.Image) -> list[bytes]:
    """Four different small photos (the batch mixes images, so rows must not get mixed up)."""
    return [
        encode(chelsea.resize((96, 64)), "PNG"),
        encode(coffee.resize((80, 80)), "PNG"),
        encode(chelsea.crop((100, 0, 400, 300)).resize((72, 72)), "PNG"),
        encode(coffee.crop((0, 0, 300, 400)).resize((60, 80)), "PNG"),
    ]


def _map(client: TestClient, image: bytes, data: dict[str, Any]) -> np.ndarray:
    response = client.post("/v1/explain", files=upload(image), data={**data, "output": "array"})
    assert response.status_code == 200, response.text
    (item,) = response.json()["explanations"]
    return decode_array(item["array"])


def _batch_histogram(client: TestClient) -> dict[str, float]:
    """cnnlens_batch_size for the model: count, sum and the le=1 bucket."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name != "cnnlens_batch_size":
            continue
        for sample in family.samples:
            if sample.labels.get("model") != MODEL:
                continue
            if sample.name.endswith("_count"):
                values["count"] = sample.value
            elif sample.name.endswith("_sum"):
                values["sum"] = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == 1.0:
                values["single"] = sample.value
    return values


def _assert_same_map(served: np.ndarray, reference: np.ndarray) -> None:
    assert served.shape == reference.shape
    scale = float(np.abs(reference).max())
    np.testing.assert_allclose(served, reference, rtol=1e-3, atol=1e-4 * scale)


def test_concurrent_requests_are_batched_and_equal_single_requests(
    client: TestClient, small_images: list[bytes]
) -> None:
    form = {"method": "grad_cam"}
    alone = [_map(client, image, form) for image in small_images]
    before = _batch_histogram(client)

    def one(request: int) -> np.ndarray:
        return _map(client, small_images[request % len(small_images)], form)

    with ThreadPoolExecutor(CLIENTS) as pool:
        together = list(pool.map(one, range(CLIENTS)))
    after = _batch_histogram(client)

    batches = after["count"] - before["count"]
    requests = after["sum"] - before["sum"]
    single_batches = after["single"] - before["single"]
    assert requests == CLIENTS  # every request ran in exactly one batch
    assert batches < CLIENTS  # so some batch held more than one request
    assert single_batches < batches
    for request, served in enumerate(together):
        _assert_same_map(served, alone[request % len(alone)])


# Different layers (one batch key each) and different ReLU rules at once.
MIXED_FORMS: list[dict[str, Any]] = [
    {"method": "grad_cam", "layer": "conv_head"},
    {"method": "grad_cam", "layer": "blocks.5"},
    {"method": "grad_cam", "layer": "blocks.3"},
    {"method": "guided_backprop"},
    {"method": "deconvnet"},
    {"method": "saliency"},
]


def test_concurrent_layers_and_rules_never_see_each_others_hooks(
    client: TestClient, default_model: LoadedModel, small_images: list[bytes]
) -> None:
    image = small_images[0]
    alone = [_map(client, image, form) for form in MIXED_FORMS]
    # Different layers give different maps, so a mix-up could not pass unnoticed.
    assert not np.allclose(alone[0], alone[2], rtol=0.05)

    def one(request: int) -> np.ndarray:
        return _map(client, image, MIXED_FORMS[request % len(MIXED_FORMS)])

    with ThreadPoolExecutor(CLIENTS) as pool:
        together = list(pool.map(one, range(3 * len(MIXED_FORMS))))
    for request, served in enumerate(together):
        _assert_same_map(served, alone[request % len(MIXED_FORMS)])
    assert count_hooks(default_model.module) == 0


def _maps_by_target(client: TestClient, image: bytes, targets: list[str]) -> dict[int, np.ndarray]:
    response = client.post(
        "/v1/explain",
        files=upload(image),
        data={"method": "saliency", "target": targets, "output": "array"},
    )
    assert response.status_code == 200, response.text
    return {e["target"]["index"]: decode_array(e["array"]) for e in response.json()["explanations"]}


def test_batched_requests_with_several_targets_get_their_own_rows(
    client: TestClient, small_images: list[bytes]
) -> None:
    """Rows are image x target: a batch of requests with 2, 1 and 3 targets splits back right."""
    target_sets = [["285", "967"], ["281"], ["1", "285", "500"]]
    requests = [(image, targets) for image in small_images[:2] for targets in target_sets]
    alone = [_maps_by_target(client, image, targets) for image, targets in requests]

    def one(index: int) -> dict[int, np.ndarray]:
        image, targets = requests[index % len(requests)]
        return _maps_by_target(client, image, targets)

    with ThreadPoolExecutor(CLIENTS) as pool:
        together = list(pool.map(one, range(len(requests))))
    for index, served in enumerate(together):
        expected = alone[index % len(requests)]
        assert list(served) == list(expected)
        for target, served_map in served.items():
            _assert_same_map(served_map, expected[target])


def test_seeded_methods_give_the_same_map_whatever_runs_beside_them(
    client: TestClient, small_images: list[bytes]
) -> None:
    """SmoothGrad draws its noise per batch: its requests run alone, so a seed reproduces."""
    form = {"method": "smoothgrad", "params": '{"smoothgrad": {"samples": 2, "seed": 5}}'}
    alone = [_map(client, image, form) for image in small_images[:2]]

    def one(request: int) -> np.ndarray:
        return _map(client, small_images[request % 2], form)

    with ThreadPoolExecutor(CLIENTS) as pool:
        together = list(pool.map(one, range(6)))
    # Equal up to float32 reduction order (the worker's thread count follows its load: up to
    # 8e-4 of the map's range here); another seed's noise moves the map far more than that.
    other_seed = _map(client, small_images[0], {**form, "params": form["params"].replace("5", "6")})
    scale = np.abs(alone[0]).max()
    assert np.abs(other_seed - alone[0]).max() > 2e-2 * scale
    for request, served in enumerate(together):
        expected = alone[request % 2]
        np.testing.assert_allclose(served, expected, rtol=0, atol=5e-3 * np.abs(expected).max())
