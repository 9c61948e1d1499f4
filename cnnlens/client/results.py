"""The client's results: the bodies of `cnnlens.api` themselves, parsed with extra="ignore" (a
newer server's additions never break an older client), with conveniences as lazy properties:
maps as numpy arrays, images as PIL images.

Each result type is its body's model (`ExplainResult` is an `api.ExplainResponse`); a route
answers the body its `cnnlens.api` model names, and `result_type(body)` is the type this
client parses it as.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cnnlens.api import codecs
from cnnlens.api import models as api
from cnnlens.api.models import ChannelScore as ChannelScore
from cnnlens.api.models import ClassScore as ClassScore
from cnnlens.api.models import LayerBody
from cnnlens.api.png import png_bytes

M = TypeVar("M", bound=BaseModel)

LayerSummary = LayerBody  # a layer of GET /v1/models/{name}
_RESULT_TYPES: dict[type[BaseModel], type[BaseModel]] = {}  # api body -> client result


def result_type(body: type[M]) -> type[M]:
    """The type this client parses `body` as: its result type, or the body itself."""
    return _RESULT_TYPES.get(body, body)  # type: ignore[return-value]


def parse(body: type[M], data: Any) -> M:
    """A received `body` as its result type, ignoring fields this version does not know."""
    return api.parse(result_type(body), data)


class _Result(BaseModel):
    """A client result: registered as the type its api body (its first base from
    `cnnlens.api.models`) is parsed as."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def data(self) -> dict[str, Any]:
        """The body as sent, JSON-ready (less any field this client does not know)."""
        return self.model_dump(mode="json", by_alias=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Short reprs: base64 payloads, long lists and nested bodies abbreviated."""
        for name, value in super().__repr_args__():
            yield name, _Brief(_BRIEF.repr(value))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        body = next((base for base in cls.__mro__[1:] if base.__module__ == api.__name__), None)
        if body is not None:
            _RESULT_TYPES[body] = cls


class _BriefRepr(reprlib.Repr):
    """reprlib's abbreviations, with an array payload shown as its dtype and shape and an
    encoded image as its length."""

    def repr_str(self, text: str, level: int) -> str:
        return f"<{len(text)} chars>" if len(text) > 200 else super().repr_str(text, level)

    def repr_ArrayPayload(self, payload: api.ArrayPayload, level: int) -> str:  # noqa: N802
        return f"<array {payload.dtype} {tuple(payload.shape)}>"


_BRIEF = _BriefRepr()
_BRIEF.maxstring, _BRIEF.maxlist, _BRIEF.maxdict, _BRIEF.maxother = 60, 6, 8, 200


class _Brief:
    """A value whose repr is the given text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _picture(encoded: str | None) -> Image.Image | None:
    return codecs.decode_png(encoded)


def _decoded(field: str, doc: str) -> cached_property[Image.Image | None]:
    """A lazy property: the picture in the base64 image `field`, decoded once."""

    def picture(self: BaseModel) -> Image.Image | None:
        return _picture(getattr(self, field))

    picture.__doc__ = doc
    return cached_property(picture)


class _Sized:
    """`width` and `height` of the upload, the body's `image` (`upload` where `image` is the
    result's picture)."""

    _size: ClassVar[str] = "image"

    @property
    def width(self) -> int:
        return int(getattr(self, self._size).width)

    @property
    def height(self) -> int:
        return int(getattr(self, self._size).height)


class _Picture(_Result):
    """A result whose `image` is the picture it answers with, decoded from the base64 field
    the subclass names as the `image` field's validation alias."""

    @field_validator("image", mode="before", check_fields=False)
    @classmethod
    def _decode(cls, value: str | None) -> Image.Image | None:
        return _picture(value)


class ExplanationResult(_Result, api.ExplanationBody):
    """One method's map for one target, at the uploaded image's size."""

    explained_box: tuple[int, ...] | None = None  # type: ignore[assignment]  # x0, y0, x1, y1

    @cached_property
    def map(self) -> np.ndarray | None:
        """(H, W) or (3, H, W) raw float values, when the output had "array"; NaN outside
        `explained_box`."""
        return codecs.decode_array(self.array)

    @cached_property
    def overlay_bytes(self) -> bytes | None:
        """The overlay file's bytes (PNG, or the answer's overlay_format)."""
        return codecs.png_payload(self.overlay_png)

    @cached_property
    def heatmap_bytes(self) -> bytes | None:
        return codecs.png_payload(self.heatmap_png)

    @cached_property
    def overlay(self) -> Image.Image | None:
        return codecs.decode_image(self.overlay_bytes)

    @cached_property
    def heatmap(self) -> Image.Image | None:
        return codecs.decode_image(self.heatmap_bytes)


class ExplainResult(_Sized, _Result, api.ExplainResponse):
    """The answer of POST /v1/explain."""

    explanations: list[ExplanationResult]  # type: ignore[assignment]

    def by_method(self, method: str) -> list[ExplanationResult]:
        return [e for e in self.explanations if e.method == method]


class Agreement(_Result, api.AgreementBody):
    """How much two methods' maps agree on one image."""

    methods: tuple[str, str]  # type: ignore[assignment]


class ImageComparison(_Result, api.ImageCompareBody):
    """One image of POST /v1/compare: its target, predictions, agreement and scores."""

    agreement: list[Agreement]  # type: ignore[assignment]


class Stat(_Result, api.StatBody):
    """Mean, std and count of a score; also read as a mapping (`stat["n"]`)."""

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


class CompareResult(_Result, api.CompareResponse):
    """POST /v1/compare: the maps side by side, their agreement and faithfulness scores."""

    images: list[ImageComparison]  # type: ignore[assignment]
    summary: dict[str, dict[str, Stat]]  # type: ignore[assignment]

    grid = _decoded("grid_png", "A row per image, a column per method.")

    def __getitem__(self, key: str) -> Any:
        """A field of the answer as sent (e.g. `result["options"]`)."""
        return self.data[key]

    def _repr_png_(self) -> bytes | None:
        """A notebook shows the grid (`_repr_html_` adds the score tables)."""
        return None if self.grid is None else png_bytes(self.grid)

    def _repr_html_(self) -> str:
        from cnnlens.display import comparison_html

        pairs = [
            (" · ".join(a.methods), a.spearman, a.top_k_iou)
            for a in (self.images[0].agreement if len(self.images) == 1 else [])
        ]
        title = f"Comparison on {self.model}: {len(self.images)} images x {', '.join(self.methods)}"
        return comparison_html(self.grid, list(self.summary), self.summary, pairs, title)


class AdversarialResult(_Sized, _Picture, api.AdversarialResponse):
    """POST /v1/adversarial: the adversarial image, its perturbation and the class change.

    `image` is the adversarial image itself (decoded from `adversarial_png`); the upload's
    size, the body's `image`, is `upload`.
    """

    _size: ClassVar[str] = "upload"
    upload: api.ImageSize = Field(validation_alias="image", serialization_alias="image")
    image: Image.Image = Field(validation_alias="adversarial_png", exclude=True, repr=False)  # type: ignore[assignment]

    perturbation = _decoded("perturbation_png", "The perturbation, amplified for display.")


class ActivationMaxResult(_Result, api.ActivationMaxResponse):
    """POST /v1/activation-max: an image maximizing a class logit or a layer's channel."""

    image = _decoded("image_png", "The image found, at the model's input size.")


class FeatureMapsResult(_Sized, _Result, api.FeatureMapsResponse):
    """POST /v1/feature-maps: a layer's strongest channels for one image; `shape`: the
    layer's output (C, h, w)."""

    grid = _decoded("grid_png", "The top channels' maps side by side.")


class FiltersResult(_Result, api.FiltersResponse):
    """POST /v1/filters: a conv layer's filters as tiles; `shape`: the weight tensor's."""

    tiles = _decoded("tiles_png", "One tile per filter.")


class MethodResult(_Picture, api.MethodResponse):
    """The answer of a method's own route when the method has no result type of its own.

    `image` is the result as a picture (decoded from `image_png`); the upload's size, the
    body's `image`, is `upload`.
    """

    upload: api.ImageSize | None = Field(
        None, validation_alias="image", serialization_alias="image"
    )
    image: Image.Image = Field(validation_alias="image_png", exclude=True, repr=False)  # type: ignore[assignment]


class ModelSummary(_Result, api.ModelSummary):
    """One entry of GET /v1/models."""


class ModelInfo(_Result, api.ModelDetail):
    """GET /v1/models/{name}: layers, default layer, compatibility and class names."""


class MethodInfo(_Result, api.MethodInfo):
    """One entry of GET /v1/methods, with the JSON schema of its params."""

    @property
    def params_schema(self) -> dict[str, Any]:
        return self.params


@dataclass
class Health:
    """GET /healthz and /readyz together."""

    alive: bool
    ready: bool
    data: dict[str, Any] = field(default_factory=dict)
