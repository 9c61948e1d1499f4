"""A detector's detections matched against an image's labelled boxes, as detection
benchmarks do (PASCAL VOC, COCO): greedily by score at an IoU threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlens.audit.localization import Box

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Matching:
    """Which detection found which object: true positives, misses and false detections."""

    matched: list[tuple[int, int, float]]  # (detection, object, IoU)
    missed: list[int]  # objects no detection found
    false: list[int]  # detections that found no object

    @property
    def precision(self) -> float | None:
        """matched / detections; None without detections."""
        found = len(self.matched) + len(self.false)
        return len(self.matched) / found if found else None

    @property
    def recall(self) -> float | None:
        """matched / objects; None without objects."""
        objects = len(self.matched) + len(self.missed)
        return len(self.matched) / objects if objects else None


def box_iou(first: Sequence[Box], second: Sequence[Box]) -> np.ndarray:
    """(N, M) intersection over union of two lists of (x0, y0, x1, y1) boxes."""
    a = np.asarray(first, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(second, dtype=np.float64).reshape(-1, 4)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = width.clip(min=0) * height.clip(min=0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    ratio: np.ndarray = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return ratio


def match_detections(
    detections: Sequence[Box],
    detection_labels: Sequence[int],
    objects: Sequence[Box],
    object_labels: Sequence[int] | None,
    iou_threshold: float = MATCH_IOU,
) -> Matching:
    """Each detection, highest score first (`detections` come in that order), takes the
    unmatched object of its label (any label when `object_labels` is None) that it overlaps
    most, if IoU >= `iou_threshold`; it is a false detection otherwise. Objects left are
    missed."""
    ious = box_iou(detections, objects)  # (N, M)
    taken: set[int] = set()
    matched: list[tuple[int, int, float]] = []
    false: list[int] = []
    for row in range(len(detections)):
        best, best_iou = -1, iou_threshold
        for column in range(len(objects)):
            same = object_labels is None or object_labels[column] == detection_labels[row]
            if column in taken or not same or ious[row, column] < best_iou:
                continue
            best, best_iou = column, float(ious[row, column])
        if best < 0:
            false.append(row)
        else:
            taken.add(best)
            matched.append((row, best, best_iou))
    missed = [column for column in range(len(objects)) if column not in taken]
    return Matching(matched, missed, false)
