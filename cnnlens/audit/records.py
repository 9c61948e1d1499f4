"""What an audit's store holds, torch-free: one image to look at (AuditItem), one image's
result (ImageOutcome), the flag names and the error row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnlens.audit.localization import Box

if TYPE_CHECKING:
    from cnnlens.features.columns import ImageFeatures

MEAN_MAP_SIDE = 56  # class-mean maps are averaged on this grid of the model's input

FLAG_ERROR = "error"
FLAG_MISCLASSIFIED = "misclassified"
FLAG_LOW_CONFIDENCE = "low_confidence"
FLAG_OFF_OBJECT = "off_object"
FLAG_FRAGILE = "fragile"
FLAG_DEGENERATE = "degenerate_map"
FLAGS = (
    FLAG_ERROR, FLAG_MISCLASSIFIED, FLAG_LOW_CONFIDENCE, FLAG_OFF_OBJECT, FLAG_FRAGILE,
    FLAG_DEGENERATE,
)  # fmt: skip


@dataclass
class AuditItem:
    """One image of an audit, in a fixed order."""

    index: int
    name: str  # relative to the source, posix separators: the key for labels and boxes
    path: str  # a local path or a URI (s3://, gs://, ...) where the bytes live
    label: int | None = None
    boxes: list[Box] = field(default_factory=list)
    mask_path: str | None = None
    labels: tuple[int, ...] = ()  # every label given ("a;b" in the CSV); label is the first
    data: bytes | None = None  # the image's bytes, where they travel with the item (a cluster)
    mask_data: bytes | None = None


@dataclass
class ImageOutcome:
    """One image's result: `record` is JSON-ready; the rest are encoded images."""

    index: int
    record: dict[str, Any]
    thumbnail: bytes | None = None  # JPEG
    overlay_thumbnails: dict[str, bytes] = field(default_factory=dict)  # method -> JPEG
    overlay_pngs: dict[str, bytes] = field(default_factory=dict)  # method -> PNG
    mean_map: bytes | None = None  # float16 (MEAN_MAP_SIDE, MEAN_MAP_SIDE), first method
    features: ImageFeatures | None = None  # the dataset view's vector, hash, maxima


def error_outcome(item: AuditItem, message: str) -> ImageOutcome:
    """An image that could not be read: an error row; the audit goes on."""
    return ImageOutcome(
        item.index,
        {
            "index": item.index,
            "name": item.name,
            "status": "error",
            "error": message,
            "label": item.label,
            "flags": [FLAG_ERROR],
            "maps": {},
            "predictions": [],
        },
    )
