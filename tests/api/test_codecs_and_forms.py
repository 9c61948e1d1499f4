"""Codecs round-trip exactly; the form helpers split, default and refuse as documented."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlens.api import codecs, forms
from cnnlens.api.models import ExplainResponse, parse
from cnnlens.errors import InvalidParamsError


@pytest.mark.parametrize("dtype", ["float32", ">f4", "float64", "uint8", "int16"])
def test_arrays_round_trip_in_native_order(dtype: str) -> None:
    array = (np.arange(24).reshape(2, 3, 4) * 1.5 - 7).astype(dtype)
    payload = codecs.encode_array(array)
    assert payload.shape == [2, 3, 4]
    back = codecs.decode_array(payload)
    assert back is not None and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_png_round_trip() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    decoded = codecs.decode_png(codecs.encode_png(Image.fromarray(pixels)))
    assert decoded is not None
    np.testing.assert_array_equal(np.asarray(decoded), pixels)
    assert codecs.decode_png(None) is None and codecs.png_payload("") is None


def test_split_list_and_outputs() -> None:
    assert forms.split_list(["a, b", "b", " ", "c,a"]) == ["a", "b", "c"]
    assert forms.split_list("x,,y") == ["x", "y"]
    assert forms.split_list(None) == []
    assert forms.parse_outputs(None) == forms.DEFAULT_OUTPUTS
    assert forms.parse_outputs("array, heatmap") == ("array", "heatmap")
    with pytest.raises(InvalidParamsError) as error:
        forms.parse_outputs("overlay,svg")
    assert error.value.code == "invalid_output"


@pytest.mark.parametrize(
    "text", ["[1]", "{", '{"a": NaN}', '{"a": 1e999}', '{"a": 9007199254740993}']
)
def test_json_object_refuses(text: str) -> None:
    with pytest.raises(InvalidParamsError):
        forms.json_object(text, "params")


def test_clients_ignore_fields_a_newer_server_adds() -> None:
    body = {
        "model": "m", "image": {"width": 4, "height": 3, "dpi": 72}, "predictions": [],
        "explanations": [], "elapsed_ms": 1.5, "trace_id": "abc",
    }  # fmt: skip
    parsed = parse(ExplainResponse, body)
    assert parsed.image.width == 4 and parsed.elapsed_ms == 1.5
    with pytest.raises(ValueError):
        ExplainResponse.model_validate(body)  # the service's own models stay strict
