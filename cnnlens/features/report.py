"""What the audit report shows of the dataset view: the finding columns of its table, their
filters, each row's data for the page (map coordinates, cluster, neighbours...) and the
summary's clusters. Values only: the report's own helpers render them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from cnnlens.features.columns import FEATURE_COLUMNS, Row

FINDING_HEADERS: list[tuple[str, str | None]] = [
    ("cluster", "num"),
    ("outlier", "num"),
    ("near-duplicate of", "text"),
    ("label issue", "num"),
]
Cell = tuple[str, Any, str | None]  # (escaped content, sort value, css class)


def finding_cells(record: Row) -> list[Cell]:
    """The finding columns of one row: cluster, outlier score, near-duplicate, label issue
    (its score; flagged ones marked)."""
    cluster = record.get("cluster")
    outlier = record.get("outlier_score")
    duplicate = record.get("near_duplicate_of")
    issue, score = record.get("label_issue"), record.get("label_issue_score")
    return [
        ("" if cluster is None or cluster < 0 else str(cluster), "" if cluster is None else cluster,
         None),
        ("" if outlier is None else f"{outlier:.3f}", "" if outlier is None else outlier, None),
        (escape(str(duplicate or "")), duplicate or "", "bad" if duplicate else None),
        ("" if score is None else ("issue " if issue else "") + f"{score:.2f}",
         "" if score is None else score, "bad" if issue else None),
    ]  # fmt: skip


def finding_tags(record: Row) -> str:
    """Words the report's filter matches: near_duplicate, label_issue, cluster:N."""
    tags = []
    if record.get("near_duplicate_of"):
        tags.append("near_duplicate")
    if record.get("label_issue"):
        tags.append("label_issue")
    if record.get("cluster") is not None:
        tags.append(f"cluster:{record['cluster']}")
    return " ".join(tags)


def finding_options(features: Mapping[str, Any] | None) -> str:
    """The filter's dataset-view choices (values prefixed g:)."""
    if not features:
        return ""
    choices = [("g:near_duplicate", "near-duplicates"), ("g:label_issue", "label issues")]
    for entry in features.get("clusters") or []:
        accuracy = entry.get("accuracy")
        shown = "" if accuracy is None else f", {accuracy:.0%} right"
        choices.append(
            (
                f"g:cluster:{entry['cluster']}",
                f"cluster {entry['cluster']} ({entry['size']}{shown})",
            )
        )
    return "<optgroup label='dataset'>" + "".join(
        f"<option value='{escape(value)}'>{escape(text)}</option>" for value, text in choices
    ) + "</optgroup>"  # fmt: skip


def row_data(record: Row) -> dict[str, Any]:
    """One row's data for the page's map and detail views."""
    keys = ("index", "name", "label_name", "predicted_name", "confidence", "correct", "flags")
    return {key: record.get(key) for key in (*keys, *FEATURE_COLUMNS)}


def summary_cards(features: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, value) cards: the map, the index, near-duplicates, label issues."""
    duplicates = features.get("near_duplicates") or {}
    issues = features.get("label_issues")
    index = features.get("index") or {}
    map_info = features.get("map") or {}
    trust = map_info.get("trustworthiness")
    recall = index.get("recall_at_10")
    shown_map = str(map_info.get("method", "-"))
    if trust is not None:
        shown_map += f" (trust {trust:.2f})"
    shown_index = str(index.get("kind", "-"))
    if recall is not None:
        shown_index += f", recall@10 {recall:.2f}"
    groups = f"{duplicates.get('images', 0)} in {duplicates.get('groups', 0)} groups"
    cards = [
        ("feature layer", str(features.get("layer", "-"))),
        ("map", shown_map),
        ("index", shown_index),
        ("near-duplicates", groups),
        ("label issues", "-" if issues is None else f"{issues['count']} of {issues['labelled']}"),
        ("clusters", str(len(features.get("clusters") or []))),
    ]
    return cards


def cluster_rows(features: Mapping[str, Any]) -> Sequence[Sequence[str]]:
    """The clusters, worst accuracy first: escaped cells."""
    rows = []
    for entry in features.get("clusters") or []:
        accuracy = entry.get("accuracy")
        labels = ", ".join(f"{item['name']} ({item['count']})" for item in entry["top_labels"])
        rows.append(
            [
                str(entry["cluster"]),
                str(entry["size"]),
                "-" if accuracy is None else f"{accuracy:.0%} of {entry['labelled']}",
                escape(labels),
            ]
        )
    return rows
