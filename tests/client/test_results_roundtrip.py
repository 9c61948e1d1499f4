"""The client parses the contract itself: every `cnnlens.api` model, as a body, comes back
through the client's result type unchanged, with unknown fields ignored."""

from __future__ import annotations

import base64
import inspect
import io
import types
import typing
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel

from cnnlens.api import codecs
from cnnlens.api import models as api
from cnnlens.client import results

PICTURE = Image.fromarray(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3))
PNG = base64.b64encode(codecs.image_bytes(PICTURE)).decode("ascii")
ARRAY = np.array([[0.5, -1.0, 2.0], [3.0, np.nan, 0.0]], dtype=np.float32)

API_MODELS = sorted(
    (
        model
        for _, model in inspect.getmembers(api, inspect.isclass)
        if issubclass(model, api.Schema) and model is not api.Schema
    ),
    key=lambda model: model.__name__,
)


def _example(annotation: Any, name: str) -> Any:
    """A valid JSON value of `annotation` (images and arrays that decode)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        chosen = next(arg for arg in args if arg is not type(None))
        return _example(chosen, name)
    if origin is list:
        return [_example(args[0], name), _example(args[0], name)]
    if origin is dict:
        return {"key": _example(args[1], name)}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation is api.ArrayPayload:
            return codecs.encode_array(ARRAY).model_dump()
        return _body(annotation)
    if annotation is str:
        return PNG if name.endswith("_png") else f"{name}-text"
    if annotation is bool:
        return True
    if annotation is int:
        return 3
    if annotation is float:
        return 0.25
    return {"anything": [1, "two"]}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {name: _example(field.annotation, name) for name, field in model.model_fields.items()}


def test_every_api_model_is_covered() -> None:
    names = {model.__name__ for model in API_MODELS}
    assert {"ExplainResponse", "CompareResponse", "AdversarialResponse", "ModelDetail"} <= names
    assert len(API_MODELS) >= 35


@pytest.mark.parametrize("model", API_MODELS, ids=lambda model: model.__name__)
def test_each_api_model_round_trips_through_the_client(model: type[BaseModel]) -> None:
    body = _body(model)
    sent = model.model_validate(body).model_dump(mode="json")  # the service's own check
    received = results.parse(model, {**sent, "a_newer_field": {"ignored": True}})
    assert isinstance(received, model)
    assert received.model_dump(mode="json", by_alias=True) == sent
    if isinstance(received, results._Result):
        assert received.data == sent


def test_result_types_are_the_api_bodies_with_conveniences() -> None:
    explain = results.parse(api.ExplainResponse, _body(api.ExplainResponse))
    assert type(explain) is results.ExplainResult
    item = explain.explanations[0]
    assert isinstance(item, results.ExplanationResult)
    np.testing.assert_array_equal(item.map, ARRAY)
    assert item.overlay is not None and item.overlay.size == (3, 2)
    assert np.array_equal(np.asarray(item.overlay), np.asarray(PICTURE))
    assert item.overlay_bytes == base64.b64decode(PNG)
    assert Image.open(io.BytesIO(item.overlay_bytes)).size == (3, 2)
    assert (explain.width, explain.height) == (3, 3)
    assert explain.by_method("method-text") == explain.explanations
    assert isinstance(explain.predictions[0], api.ClassScore)  # one ClassScore
    assert results.ClassScore is api.ClassScore

    adversarial = results.parse(api.AdversarialResponse, _body(api.AdversarialResponse))
    assert isinstance(adversarial.image, Image.Image) and adversarial.image.size == (3, 2)
    assert adversarial.upload == api.ImageSize(width=3, height=3)
    compare = results.parse(api.CompareResponse, _body(api.CompareResponse))
    assert compare.images[0].agreement[0].methods == ("methods-text", "methods-text")
    assert compare.summary["key"]["key"]["n"] == 3
    assert compare.grid is not None and compare["model"] == "model-text"
    for body, picture in (
        (api.FiltersResponse, "tiles"),
        (api.FeatureMapsResponse, "grid"),
        (api.ActivationMaxResponse, "image"),
        (api.MethodResponse, "image"),
    ):
        parsed = results.parse(body, _body(body))
        assert getattr(parsed, picture).size == (3, 2), body


def test_each_method_route_answers_its_api_body() -> None:
    assert api.method_route("activation_max") == "/v1/activation-max"
    assert results.result_type(api.method_response("filters")) is results.FiltersResult
    assert results.result_type(api.method_response("a_plugin")) is results.MethodResult
