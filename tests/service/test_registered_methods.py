"""A method is one file: a toy method of each kind, once registered, is on every front — GET
/v1/methods (with the kind the page's method list reads), its REST route (in the OpenAPI
schema and answering), a client call and the CLI."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.cli import main
from cnnlens.client import Client
from cnnlens.methods.base import Method, MethodContext, MethodOutput, register, unregister
from cnnlens.models import LoadedModel
from tests.pinned import pinned_app
from tests.service.conftest import MODEL, encode, service_settings

APP_JS = Path(__file__).parents[2] / "cnnlens" / "service" / "web" / "app.js"
WEIGHTS = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)  # a known "filter"


class ToyMap(Method):
    name, title, paper = "toy_map", "Toy map", ""
    kind = "standalone"

    def compute(self, context: MethodContext, params: Any) -> MethodOutput:
        return MethodOutput(context.x.mean(dim=1, keepdim=True))


class ToyImage(Method):
    name, title, paper = "toy_image", "Toy image", ""
    kind, produces, uses_image, uses_target = "standalone", "image", False, False

    def compute(self, context: MethodContext, params: Any) -> MethodOutput:
        return MethodOutput(torch.zeros_like(context.x))  # the normalized mean colour


class ToyActivation(Method):
    name, title, paper = "toy_activation", "Toy activation", ""
    kind, produces, uses_layer, uses_target = "standalone", "activations", True, False

    def compute(self, context: MethodContext, params: Any) -> MethodOutput:
        return MethodOutput(context.x[:, :2])  # two "channels" at input size


class ToyWeights(Method):
    name, title, paper = "toy_weights", "Toy weights", ""
    kind, produces, uses_image, uses_target = "standalone", "weights", False, False

    def compute(self, context: MethodContext, params: Any) -> MethodOutput:
        return MethodOutput(WEIGHTS.expand(context.x.shape[0], -1, -1, -1))


TOYS = {"map": ToyMap, "image": ToyImage, "activation": ToyActivation, "weights": ToyWeights}


@pytest.fixture(scope="module")
def served(default_model: LoadedModel) -> Iterator[tuple[TestClient, Client]]:
    """An app created while the toys are registered; they are unregistered afterwards."""
    for toy in TOYS.values():
        register(toy)
    try:
        app = pinned_app(service_settings(), default_model)
        with TestClient(app, raise_server_exceptions=False) as http:
            assert app.state.service.wait_ready(120), app.state.service.load_error
            yield http, Client(http_client=http)  # type: ignore[arg-type]
    finally:
        for toy in TOYS.values():
            unregister(toy.name)


def _page_kinds() -> list[str]:
    """The kinds the page's method list accepts from GET /v1/methods (app.js methodKind)."""
    found = re.search(r"if \((\[[^\]]*\])\.includes\(method\.kind\)\)", APP_JS.read_text())
    assert found, "app.js no longer reads method.kind"
    return list(json.loads(found.group(1)))


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize("kind", list(TOYS))
def test_a_registered_method_is_on_every_front(
    kind: str,
    served: tuple[TestClient, Client],
    chelsea: Image.Image,
    default_model: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http, client = served
    toy = TOYS[kind]
    route = "/v1/explain" if kind == "map" else "/v1/" + toy.name.replace("_", "-")

    # GET /v1/methods, with the kind the page sorts it by
    listed = {m["name"]: m for m in http.get("/v1/methods").json()["methods"]}[toy.name]
    assert listed["kind"] == kind and kind in _page_kinds()
    assert listed["route"] == route and listed["execution"] == "standalone"
    assert {m.name: m.kind for m in client.methods()}[toy.name] == kind

    # the REST route, in the OpenAPI schema and answering
    schema = http.get("/openapi.json").json()
    assert "post" in schema["paths"][route]
    image = encode(chelsea.resize((96, 64)), "PNG")
    h, w = default_model.input_size
    if kind == "map":
        result = client.explain(image, toy.name, output=["array"])
        (explanation,) = result.explanations
        assert explanation.method == toy.name and explanation.map is not None
        assert explanation.map.shape == (64, 96)
    else:
        (form,) = schema["paths"][route]["post"]["requestBody"]["content"].values()
        fields = set(schema["components"]["schemas"][form["schema"]["$ref"].split("/")[-1]][
            "properties"
        ])  # fmt: skip
        assert ("image" in fields) == toy.uses_image and ("layer" in fields) == toy.uses_layer
        answer = client.run_method(toy.name, image if toy.uses_image else None)
        assert answer.method == toy.name and answer.model == MODEL
        expected = {"image": [3, h, w], "activation": [2, h, w], "weights": [1, 3, 3]}[kind]
        assert answer.shape == expected
        assert answer.image is not None and answer.image.size == (expected[-1], expected[-2])
        if kind == "image":  # zeros in normalized space: the normalization's mean colour
            mean = default_model.preprocessing.mean
            pixel = answer.image.convert("RGB").getpixel((0, 0))
            assert pixel == pytest.approx([round(255 * m) for m in mean], abs=1)
        files = {"image": ("i.png", image, "image/png")} if toy.uses_image else None
        raw = http.post(route, files=files, data={"model": MODEL}, headers={"Accept": "image/png"})
        assert raw.status_code == 200 and _png(raw.content).size == answer.image.size

    # the CLI, locally (the served model stands in for the one it would load)
    monkeypatch.setattr("cnnlens.models.load_model", lambda *args, **kwargs: default_model)
    path = tmp_path / "chelsea.png"
    path.write_bytes(image)
    out = tmp_path / "out"
    if kind == "map":
        assert main(["explain", str(path), "--method", toy.name, "--out", str(out), "-q"]) == 0
        assert any(toy.name in p.name for p in out.iterdir())
    else:
        argv = ["visualize", toy.name, *([str(path)] if toy.uses_image else [])]
        assert main([*argv, "--out", str(out.with_suffix(".png"))]) == 0
        assert _png(out.with_suffix(".png").read_bytes()).size == answer.image.size


def test_an_unregistered_method_has_no_route(default_model: LoadedModel) -> None:
    register(ToyWeights)
    unregister(ToyWeights.name)
    app = pinned_app(service_settings(), default_model)
    paths = app.openapi()["paths"]
    assert "/v1/filters" in paths and "/v1/toy-weights" not in paths
