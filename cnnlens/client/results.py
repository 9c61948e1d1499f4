"""Typed results of the client: maps as numpy arrays, PNGs as PIL images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from cnnlens.api import codecs
from cnnlens.api.models import ArrayPayload, parse
from cnnlens.api.png import png_bytes


def decode_array(payload: Mapping[str, Any] | None) -> np.ndarray | None:
    """`{"dtype", "shape", "data"}` (data: base64 of little-endian bytes) -> numpy array."""
    return codecs.decode_array(parse(ArrayPayload, payload)) if payload else None


_png_bytes = codecs.png_payload
decode_png = codecs.decode_png


@dataclass(frozen=True)
class ClassScore:
    """A class with the model's probability for it."""

    index: int
    label: str
    probability: float
    pixel_share: float | None = None  # segmentation models: the fraction of pixels

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ClassScore | None:
        if not data:
            return None
        share = data.get("pixel_share")
        return cls(
            int(data["index"]),
            str(data.get("label", data["index"])),
            _float(data),
            None if share is None else float(share),
        )


def _float(data: Mapping[str, Any], key: str = "probability") -> float:
    value = data.get(key)
    return float(value) if value is not None else float("nan")


def _scores(items: Any) -> list[ClassScore]:
    return [score for item in items or [] if (score := ClassScore.from_json(item)) is not None]


@dataclass
class ExplanationResult:
    """One method's map for one target, at the uploaded image's size."""

    method: str
    target: ClassScore | None
    layer: str | None
    width: int
    height: int
    # (H, W) or (3, H, W) raw float values, when output has array (not in the repr)
    map: np.ndarray | None = field(default=None, repr=False)
    overlay: Image.Image | None = field(default=None, repr=False)
    heatmap: Image.Image | None = field(default=None, repr=False)
    overlay_png: bytes | None = field(default=None, repr=False)
    heatmap_png: bytes | None = field(default=None, repr=False)
    elapsed_ms: float = 0.0
    explained_box: tuple[int, ...] | None = None  # (x0, y0, x1, y1); outside it map is NaN

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExplanationResult:
        return cls(
            method=str(data["method"]),
            target=ClassScore.from_json(data.get("target")),
            layer=data.get("layer"),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            map=decode_array(data.get("array")),
            overlay=decode_png(data.get("overlay_png")),
            heatmap=decode_png(data.get("heatmap_png")),
            overlay_png=_png_bytes(data.get("overlay_png")),
            heatmap_png=_png_bytes(data.get("heatmap_png")),
            elapsed_ms=float(data.get("elapsed_ms", 0.0)),
            explained_box=tuple(box) if (box := data.get("explained_box")) else None,
        )


@dataclass
class _Answer:
    """What every method route answers with: the model that ran and the time it took."""

    model: str
    elapsed_ms: float = field(default=0.0, kw_only=True)

    @classmethod
    def _common(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor's arguments for the fields of this base, read from `data`."""
        return {
            "model": str(data.get("model", "")),
            "elapsed_ms": float(data.get("elapsed_ms", 0.0)),
        }


@dataclass
class _ImageAnswer(_Answer):
    """An answer about an uploaded image, with the image's size."""

    width: int
    height: int

    @classmethod
    def _common(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        image = data.get("image") or {}
        size = {"width": int(image.get("width", 0)), "height": int(image.get("height", 0))}
        return {**super()._common(data), **size}


@dataclass
class _LayerAnswer(_Answer):
    """An answer about one layer, with the shape of what it shows of it."""

    layer: str
    shape: list[int]

    @classmethod
    def _common(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        layer = {
            "layer": str(data.get("layer", "")),
            "shape": [int(n) for n in data.get("shape", [])],
        }
        return {**super()._common(data), **layer}


@dataclass
class ExplainResult(_ImageAnswer):
    """The answer of POST /v1/explain."""

    predictions: list[ClassScore]
    explanations: list[ExplanationResult]
    overlay_format: str = "png"  # of the overlay and heatmap images: png, jpeg or webp

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExplainResult:
        return cls(
            **cls._common(data),
            predictions=_scores(data.get("predictions")),
            explanations=[ExplanationResult.from_json(e) for e in data.get("explanations", [])],
            overlay_format=str(data.get("overlay_format", "png")),
        )

    def by_method(self, method: str) -> list[ExplanationResult]:
        return [e for e in self.explanations if e.method == method]


@dataclass(frozen=True)
class Agreement:
    """How much two methods' maps agree on one image."""

    methods: tuple[str, str]
    spearman: float | None  # rank correlation over all pixels
    top_k_iou: float | None  # IoU of the two maps' top-k% pixels


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class ImageComparison:
    """One image of POST /v1/compare: its target, predictions, agreement and scores."""

    name: str
    width: int
    height: int
    target: ClassScore | None
    predictions: list[ClassScore]
    layer: str | None
    agreement: list[Agreement]
    scores: dict[str, dict[str, float | None]]  # method -> deletion_auc, insertion_auc, ...
    data: dict[str, Any] = field(default_factory=dict, repr=False)  # curves, randomization

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageComparison:
        return cls(
            name=str(data.get("name", "")),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            target=ClassScore.from_json(data.get("target")),
            predictions=_scores(data.get("predictions")),
            layer=data.get("layer"),
            agreement=[
                Agreement(
                    (str(pair["methods"][0]), str(pair["methods"][1])),
                    _optional_float(pair.get("spearman")),
                    _optional_float(pair.get("top_k_iou")),
                )
                for pair in data.get("agreement", [])
            ],
            scores={
                method: {name: _optional_float(value) for name, value in values.items()}
                for method, values in (data.get("scores") or {}).items()
            },
            data=dict(data),
        )


@dataclass
class CompareResult(_Answer):
    """POST /v1/compare: the maps side by side, their agreement and faithfulness scores.

    `data` holds the whole answer (curves, randomization stages, summary) as sent.
    """

    methods: list[str]
    images: list[ImageComparison]
    summary: dict[str, dict[str, Any]]  # method -> score -> {mean, std, n}
    grid: Image.Image | None = field(repr=False)  # a row per image, a column per method
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompareResult:
        return cls(
            **cls._common(data),
            methods=[str(m) for m in data.get("methods", [])],
            images=[ImageComparison.from_json(item) for item in data.get("images", [])],
            summary=dict(data.get("summary") or {}),
            grid=decode_png(data.get("grid_png")),
            data={k: v for k, v in data.items() if k != "grid_png"},
        )

    def __getitem__(self, key: str) -> Any:
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


def _required_score(data: Mapping[str, Any], key: str) -> ClassScore:
    score = ClassScore.from_json(data.get(key))
    if score is None:
        raise ValueError(f"the answer has no {key!r}")
    return score


@dataclass
class AdversarialResult(_ImageAnswer):
    """POST /v1/adversarial: the adversarial image, its perturbation and the class change."""

    target: ClassScore  # the class explained / pushed away from
    original: ClassScore  # top-1 on the original image
    adversarial: ClassScore  # top-1 on the adversarial image
    adversarial_target: ClassScore | None  # a targeted attack's goal, with its new probability
    success: bool
    linf: float  # the largest pixel change, 0-255 units
    image: Image.Image | None = field(repr=False)  # at output_size (default the upload's)
    perturbation: Image.Image | None = field(repr=False)  # amplified for display
    output_size: str = "image"  # "image": the upload's size; "model": the model's input size
    epsilon_levels: int = 0  # whole 8-bit levels a pixel may move
    target_after: ClassScore | None = None  # the explained class on the returned image

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AdversarialResult:
        return cls(
            **cls._common(data),
            target=_required_score(data, "target"),
            original=_required_score(data, "original"),
            adversarial=_required_score(data, "adversarial"),
            adversarial_target=ClassScore.from_json(data.get("adversarial_target")),
            success=bool(data.get("success")),
            linf=float(data.get("linf", 0.0)),
            image=decode_png(data.get("adversarial_png")),
            perturbation=decode_png(data.get("perturbation_png")),
            output_size=str(data.get("output_size", "image")),
            epsilon_levels=int(data.get("epsilon_levels", 0)),
            target_after=ClassScore.from_json(data.get("target_after")),
        )


@dataclass
class ActivationMaxResult(_Answer):
    """POST /v1/activation-max: an image maximizing a class logit or a layer's channel."""

    target: ClassScore | None  # None when a channel was maximized
    layer: str | None
    channel: int | None
    score: float  # the objective on the returned image
    top1: ClassScore  # what the model predicts for the returned image
    image: Image.Image | None = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActivationMaxResult:
        channel = data.get("channel")
        return cls(
            **cls._common(data),
            target=ClassScore.from_json(data.get("target")),
            layer=data.get("layer"),
            channel=int(channel) if channel is not None else None,
            score=float(data.get("score", float("nan"))),
            top1=_required_score(data, "top1"),
            image=decode_png(data.get("image_png")),
        )


@dataclass(frozen=True)
class ChannelScore:
    channel: int
    mean: float
    max: float


@dataclass
class FeatureMapsResult(_LayerAnswer, _ImageAnswer):
    """POST /v1/feature-maps: a layer's strongest channels for one image; `shape`: the
    layer's output (C, h, w)."""

    top_channels: list[ChannelScore]
    grid: Image.Image | None = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureMapsResult:
        return cls(
            **cls._common(data),
            top_channels=[
                ChannelScore(int(c["channel"]), float(c["mean"]), float(c["max"]))
                for c in data.get("top_channels", [])
            ],
            grid=decode_png(data.get("grid_png")),
        )


@dataclass
class FiltersResult(_LayerAnswer):
    """POST /v1/filters: a conv layer's filters as tiles; `shape`: the weight tensor's."""

    channels: list[int]  # the output channels shown
    tiles: Image.Image | None = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FiltersResult:
        return cls(
            **cls._common(data),
            channels=[int(n) for n in data.get("channels", [])],
            tiles=decode_png(data.get("tiles_png")),
        )


@dataclass
class LayerSummary:
    name: str
    type: str
    output_shape: list[int] | None
    receptive_field: int | None
    stride: int | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LayerSummary:
        return cls(
            name=str(data["name"]),
            type=str(data.get("type", "")),
            output_shape=data.get("output_shape"),
            receptive_field=data.get("receptive_field"),
            stride=data.get("stride"),
        )


@dataclass
class ModelSummary:
    """One entry of GET /v1/models."""

    name: str
    default: bool = False
    input_size: list[int] | None = None  # [height, width]
    num_classes: int | None = None
    default_layer: str | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> ModelSummary:
        if isinstance(data, str):
            return cls(name=data, data={"name": data})
        size = data.get("input_size")
        classes = data.get("num_classes")
        return cls(
            name=str(data["name"]),
            default=bool(data.get("default", False)),
            input_size=[int(n) for n in size] if size else None,
            num_classes=int(classes) if classes is not None else None,
            default_layer=data.get("default_layer"),
            data=dict(data),
        )


@dataclass
class ModelInfo:
    """GET /v1/models/{name}: layers, default layer, compatibility and class names."""

    name: str
    default_layer: str | None
    layers: list[LayerSummary]
    categories: list[str]
    compatibility: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelInfo:
        return cls(
            name=str(data["name"]),
            default_layer=data.get("default_layer"),
            layers=[LayerSummary.from_json(layer) for layer in data.get("layers", [])],
            categories=[str(c) for c in data.get("categories", [])],
            compatibility=dict(data.get("compatibility") or {}),
            data=dict(data),
        )


@dataclass
class MethodInfo:
    """One entry of GET /v1/methods, with the JSON schema of its params."""

    name: str
    title: str
    params_schema: dict[str, Any]
    route: str = "/v1/explain"  # the route answering this method's results
    produces: str = "map"
    kind: str = "map"  # the view of its results: map, image, activation or weights
    uses_layer: bool = False
    uses_target: bool = True
    uses_image: bool = True
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MethodInfo:
        return cls(
            name=str(data["name"]),
            title=str(data.get("title", data["name"])),
            params_schema=dict(data.get("params") or {}),
            route=str(data.get("route", "/v1/explain")),
            produces=str(data.get("produces", "map")),
            kind=str(data.get("kind", "map")),
            uses_layer=bool(data.get("uses_layer", False)),
            uses_target=bool(data.get("uses_target", True)),
            uses_image=bool(data.get("uses_image", True)),
            data=dict(data),
        )


@dataclass
class MethodResult:
    """The answer of a method's own route when the method has no result type of its own."""

    method: str
    model: str
    layer: str
    target: ClassScore | None
    shape: list[int]
    image: Image.Image | None = field(default=None, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MethodResult:
        return cls(
            method=str(data["method"]),
            model=str(data["model"]),
            layer=str(data["layer"]),
            target=ClassScore.from_json(data.get("target")),
            shape=[int(n) for n in data.get("shape", [])],
            image=decode_png(data.get("image_png")),
            data=dict(data),
        )


@dataclass
class Health:
    """GET /healthz and /readyz."""

    alive: bool
    ready: bool
    data: dict[str, Any] = field(default_factory=dict)
