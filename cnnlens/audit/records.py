"""What an audit's store holds, torch-free: one image to look at (AuditItem), one image's
result (ImageOutcome) and its row (AuditRecord), the flag names and the error row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cnnlens.audit.localization import Box
from cnnlens.features.columns import FEATURE_COLUMNS, ImageFeatures

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


# Columns that optional analyses set on rows (the dataset view's findings): exports write
# them after the fixed columns, empty where a row has none. Each is an extra field of
# AuditRecord (see there).
OPTIONAL_COLUMNS: tuple[str, ...] = FEATURE_COLUMNS


class _Row(BaseModel):
    """A part of a row; also read by key (`row["confidence"]`, `row.get("label")`) as the
    JSON it is stored as: a field the row does not set is not there."""

    def __getitem__(self, key: str) -> Any:
        if key in self:
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in self.model_fields_set or key in (self.model_extra or {})
        )

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


class Prediction(_Row):
    """One of an image's top classes."""

    index: int
    label: str
    probability: float
    pixel_share: float | None = None  # segmentation models: the share of pixels predicted


class MapFindings(_Row):
    """What the audit found in one method's map of an image."""

    degenerate: bool = False  # constant or non-finite
    box_energy: float | None = None  # the share of the map's energy inside the object region
    pointing_hit: bool | None = None  # the map's maximum lies on the object


class AuditRecord(_Row):
    """One image's row: what the store keeps, the tables list and the report shows.

    An error row (an image that could not be read) sets only index, name, status, error,
    label, flags, maps and predictions; fields left unset are not stored (`to_json`).

    Further columns are extra fields: set them as attributes (`record.outlier_score = 0.8`)
    and they are stored with the row; name them in OPTIONAL_COLUMNS and the CSV and Parquet
    tables add them. The dataset view's findings go there (neighbors, near_duplicate_of,
    outlier_score, label_issue, label_issue_score, cluster, the map coordinates).
    """

    model_config = ConfigDict(extra="allow")

    index: int
    name: str
    status: Literal["ok", "error"] = "ok"
    error: str | None = None
    width: int | None = None
    height: int | None = None
    label: int | None = None
    label_name: str | None = None
    predicted: int | None = None
    predicted_name: str | None = None
    confidence: float | None = None
    correct: bool | None = None  # None: unlabelled
    predictions: list[Prediction] = Field(default_factory=list)  # best first
    layer: str | None = None
    has_region: bool = False  # an object region (boxes or a mask) was given
    maps: dict[str, MapFindings] = Field(default_factory=dict)  # by method
    fragility_tested: bool = False
    fragile_epsilon: float | None = None  # 0-255: the first rung that flips the saved image
    fragile_class: int | None = None
    fragile_class_name: str | None = None
    fragile_probability: float | None = None
    flags: list[str] = Field(default_factory=list)
    overlays: dict[str, str] = Field(default_factory=dict)  # method -> file, beside the report

    @property
    def extra_columns(self) -> dict[str, Any]:
        """The row's further columns (extra fields), by name."""
        return dict(self.model_extra or {})

    def to_json(self) -> dict[str, Any]:
        """The row as stored and sent: the fields it sets, JSON-ready."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def of(cls, row: AuditRecord | Mapping[str, Any]) -> AuditRecord:
        """A row, or its stored JSON read back."""
        return row if isinstance(row, AuditRecord) else cls.model_validate(row)


@dataclass
class ImageOutcome:
    """One image's result: its row and the encoded images."""

    index: int
    record: AuditRecord
    thumbnail: bytes | None = None  # JPEG
    overlay_thumbnails: dict[str, bytes] = field(default_factory=dict)  # method -> JPEG
    overlay_pngs: dict[str, bytes] = field(default_factory=dict)  # method -> PNG
    mean_map: bytes | None = None  # float16 (MEAN_MAP_SIDE, MEAN_MAP_SIDE), first method
    features: ImageFeatures | None = None  # the dataset view's vector, hash, maxima

    def __post_init__(self) -> None:
        self.record = AuditRecord.of(self.record)  # a row's JSON is read as the row


def error_outcome(item: AuditItem, message: str) -> ImageOutcome:
    """An image that could not be read: an error row; the audit goes on."""
    record = AuditRecord(
        index=item.index,
        name=item.name,
        status="error",
        error=message,
        label=item.label,
        flags=[FLAG_ERROR],
        maps={},
        predictions=[],
    )
    return ImageOutcome(item.index, record)
