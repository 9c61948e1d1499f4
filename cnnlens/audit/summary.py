"""The audit's summary: accuracy, per-class accuracy, confusion pairs, most confident
mistakes, flag counts and class-mean maps, each accumulated one record at a time (so that an
audit of any size is summarized in flat memory)."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from cnnlens.audit.records import FLAGS, MEAN_MAP_SIDE, AuditRecord

HISTOGRAM_BINS = 10
UNMATCHED_SHOWN = 20  # label rows without an image named in the summary (all are counted)


class SummaryBuilder:
    """The summary of the records added so far; memory bounded by the classes, not images."""

    def __init__(self, mistakes: int = 10, unmatched_labels: Sequence[str] = ()) -> None:
        self.mistakes = mistakes
        self.unmatched_labels = list(unmatched_labels)  # labels rows that name no image
        self.images = self.analyzed = self.labelled = self.correct = self.flagged = 0
        self.confidence_sum = 0.0
        self.per_class: dict[int, dict[str, Any]] = {}
        self.pairs: Counter[tuple[int | None, str | None, int | None, str | None]] = Counter()
        self.wrong: list[tuple[float, int, dict[str, Any]]] = []  # a min-heap of the top ones
        self.flag_counts = dict.fromkeys(FLAGS, 0)
        # What the report's charts and columns need, also gathered in the same pass.
        self.histogram = {kind: [0] * HISTOGRAM_BINS for kind in ("correct", "wrong", "none")}
        self.has_labels = self.has_regions = self.has_fragility = False
        # A detector's matched, missed and false detections over every image.
        self.detections: Counter[str] = Counter()
        self.has_detections = False

    def add(self, row: AuditRecord | Mapping[str, Any]) -> None:
        record = AuditRecord.of(row)
        self.images += 1
        self.flagged += bool(record.flags)
        for flag in record.flags:
            if flag in self.flag_counts:
                self.flag_counts[flag] += 1
        self.has_labels |= record.label is not None
        self.has_regions |= record.has_region
        self.has_fragility |= record.fragility_tested
        if record.status != "ok":
            return
        self.analyzed += 1
        if record.detection is not None:
            self.has_detections = True
            for count in ("objects", "matched", "missed", "false"):
                self.detections[count] += int(getattr(record.detection, count))
        confidence = float(record.confidence or 0.0)
        self.confidence_sum += confidence
        correct = record.correct
        kind = "none" if correct is None else "correct" if correct else "wrong"
        self.histogram[kind][min(HISTOGRAM_BINS - 1, max(0, int(confidence * HISTOGRAM_BINS)))] += 1
        if correct is None or record.label is None:
            return
        self.labelled += 1
        self.correct += int(correct)
        entry = self.per_class.setdefault(
            record.label,
            {"label": record.label, "name": record.label_name, "n": 0, "correct": 0},
        )
        entry["n"] += 1
        entry["correct"] += int(correct)
        if not correct:
            self._mistake(record, confidence)

    def _mistake(self, record: AuditRecord, confidence: float) -> None:
        key = (record.label, record.label_name, record.predicted, record.predicted_name)
        self.pairs[key] += 1
        mistake = {
            "index": record.index,
            "name": record.name,
            "label_name": record.label_name,
            "predicted_name": record.predicted_name,
            "confidence": confidence,
        }
        # Ties keep input order, as a stable sort by confidence would: earlier index wins.
        candidate = (confidence, -record.index, mistake)
        if len(self.wrong) < self.mistakes:
            heapq.heappush(self.wrong, candidate)
        elif self.mistakes and candidate[:2] > self.wrong[0][:2]:
            heapq.heapreplace(self.wrong, candidate)

    def result(self) -> dict[str, Any]:
        """JSON-ready summary of the records added."""
        per_class = [
            {**entry, "accuracy": entry["correct"] / entry["n"]}
            for entry in self.per_class.values()
        ]
        wrong = sorted(self.wrong, key=lambda item: (-item[0], -item[1]))
        return {
            "images": self.images,
            "analyzed": self.analyzed,
            "errors": self.images - self.analyzed,
            "labelled": self.labelled,
            "accuracy": self.correct / self.labelled if self.labelled else None,
            "per_class": sorted(per_class, key=lambda e: (e["accuracy"], -e["n"])),
            "confusion_pairs": [
                {"label": t, "label_name": tn, "predicted": p, "predicted_name": pn, "count": n}
                for (t, tn, p, pn), n in self.pairs.most_common()
            ],
            "confident_mistakes": [mistake for _, _, mistake in wrong],
            "flagged": self.flagged,
            "flag_counts": dict(self.flag_counts),
            "mean_confidence": self.confidence_sum / self.analyzed if self.analyzed else None,
            "labels_without_image": {
                "count": len(self.unmatched_labels),
                "names": self.unmatched_labels[:UNMATCHED_SHOWN],
            },
            **({"detection": self._detection()} if self.has_detections else {}),
        }

    def _detection(self) -> dict[str, Any]:
        """A detector's totals at IoU 0.5: precision = matched / detections, recall = matched /
        labelled objects (None without any)."""
        counts = self.detections
        found = counts["matched"] + counts["false"]
        return {
            "objects": counts["objects"],
            "detections": found,
            "matched": counts["matched"],
            "missed": counts["missed"],
            "false": counts["false"],
            "precision": counts["matched"] / found if found else None,
            "recall": counts["matched"] / counts["objects"] if counts["objects"] else None,
        }


def summarize(
    records: Iterable[AuditRecord | Mapping[str, Any]],
    mistakes: int = 10,
    unmatched_labels: Sequence[str] = (),
) -> dict[str, Any]:
    """JSON-ready summary of the finished records."""
    builder = SummaryBuilder(mistakes, unmatched_labels)
    for record in records:
        builder.add(record)
    return builder.result()


class ClassMeans:
    """Running sums of the images' normalized maps per predicted class."""

    def __init__(self) -> None:
        self.sums: dict[int, np.ndarray] = {}
        self.counts: Counter[int] = Counter()
        self.names: dict[int, str] = {}

    def add(self, row: AuditRecord | Mapping[str, Any], data: bytes | None) -> None:
        record = AuditRecord.of(row)
        if record.status != "ok" or data is None or record.predicted is None:
            return
        array = np.frombuffer(data, dtype=np.float16).astype(np.float64)
        predicted = record.predicted
        total = self.sums.get(predicted)
        if total is None:
            self.sums[predicted] = array.reshape(MEAN_MAP_SIDE, MEAN_MAP_SIDE).copy()
        else:
            total += array.reshape(MEAN_MAP_SIDE, MEAN_MAP_SIDE)
        self.counts[predicted] += 1
        self.names[predicted] = str(record.predicted_name)

    def result(self, limit: int = 12) -> list[dict[str, Any]]:
        """Per predicted class (most frequent first, ties in first-seen order): the mean map,
        (MEAN_MAP_SIDE, MEAN_MAP_SIDE) float32 on the model's input grid."""
        ordered = sorted(self.counts.items(), key=lambda item: -item[1])[:limit]
        return [
            {
                "class": index,
                "name": self.names[index],
                "n": n,
                "map": (self.sums[index] / n).astype(np.float32),
            }
            for index, n in ordered
        ]


def class_mean_maps(
    records: Iterable[AuditRecord | Mapping[str, Any]], maps: Mapping[int, bytes], limit: int = 12
) -> list[dict[str, Any]]:
    """Per predicted class (most frequent first): the mean of the images' normalized maps,
    (MEAN_MAP_SIDE, MEAN_MAP_SIDE) on the model's input grid."""
    means = ClassMeans()
    for row in records:
        record = AuditRecord.of(row)
        means.add(record, maps.get(record.index))
    return means.result(limit)
