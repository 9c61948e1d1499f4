"""The dataset view's part of an audit row, in one place: what each analyzed image brings
back from its forward (`ImageFeatures`, stored beside its row), and the finding columns every
row carries (`FEATURE_COLUMNS`: null until the audit's end computes them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from cnnlens.audit.records import AuditRecord

# An audit row: the typed record, or its stored JSON (both read by key).
Row: TypeAlias = "AuditRecord | Mapping[str, Any]"

# Every row of results.{jsonl,csv,parquet} and of the report's data carries these.
FEATURE_COLUMNS = (
    "x",  # map coordinates (float)
    "y",
    "cluster",  # HDBSCAN cluster (int), -1 for none
    "neighbors",  # the nearest images: [{name, distance}], distance = 1 - cosine
    "near_duplicate_of",  # the name of the closest near-duplicate, or null
    "outlier_score",  # mean cosine distance to the nearest images
    "label_issue",  # bool (labelled images), null without a label
    "label_issue_score",  # 1 - the label's quality score (higher: more suspect)
)
# Parquet types of the scalar ones (neighbors is JSON text, as the other nested fields).
COLUMN_TYPES = {
    "x": "float64",
    "y": "float64",
    "cluster": "int64",
    "near_duplicate_of": "string",
    "outlier_score": "float64",
    "label_issue": "bool_",
    "label_issue_score": "float64",
}


@dataclass
class ImageFeatures:
    """One analyzed image's share of the dataset view, as it travels to the store."""

    vector: np.ndarray  # (D,) float32
    phash: int  # 64-bit perceptual hash (unsigned)
    probabilities: np.ndarray | None = None  # (K,) float16, labelled single-label images
    maxima: dict[str, np.ndarray] = field(default_factory=dict)  # layer -> (C, 2) float32


def pending_columns() -> dict[str, Any]:
    """The finding columns of a row before the audit's end has computed them."""
    return dict.fromkeys(FEATURE_COLUMNS)


def neighbors_text(record: Row) -> str:
    """The neighbours as one CSV cell: `name:distance;...`, nearest first."""
    return ";".join(
        f"{entry['name']}:{entry['distance']:.4f}" for entry in record.get("neighbors") or []
    )
