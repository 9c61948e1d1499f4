"""Clusters of an audit's images: HDBSCAN (scikit-learn) on the PCA-reduced vectors, and
what each cluster holds (size, accuracy, top labels), worst accuracy first: the kinds of
images the model fails on as a group.

sklearn's HDBSCAN builds its tree in O(n^2) (about 15 s for 20 000 points in 50 dimensions
on 2 cores, 110 s for 100 000 in 10), so past CLUSTER_FIT_MAX points it clusters a seeded
sample (its minimum cluster size from the sample's count) and every other point takes the
cluster of its nearest sampled point (faiss, exact).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnlens.features.columns import Row

NOISE = -1  # HDBSCAN's label for points in no cluster
CLUSTER_FIT_MAX = 10_000
MIN_CLUSTER_SIZE = 5
MAX_MIN_SAMPLES = 10  # larger min_samples cost time and only thin the clusters' edges
TOP_LABELS = 3


def min_cluster_size(count: int) -> int:
    """5 images, or one in 200 on large audits (a group worth a look)."""
    return max(MIN_CLUSTER_SIZE, round(count / 200))


def cluster(reduced: np.ndarray, seed: int) -> np.ndarray:
    """(N,) int cluster per row of `reduced` (N, d); NOISE (-1) for points in none."""
    from sklearn.cluster import HDBSCAN

    count = len(reduced)
    fitted = np.arange(count)
    if count > CLUSTER_FIT_MAX:
        rng = np.random.default_rng(seed)
        fitted = np.sort(rng.choice(count, CLUSTER_FIT_MAX, replace=False))
    size = min_cluster_size(len(fitted))
    if len(fitted) < 2 * size:
        return np.full(count, NOISE, np.int64)
    model = HDBSCAN(min_cluster_size=size, min_samples=min(size, MAX_MIN_SAMPLES), copy=True)
    labels = np.full(count, NOISE, np.int64)
    labels[fitted] = model.fit_predict(reduced[fitted])
    if len(fitted) < count:
        import faiss

        rest = np.setdiff1d(np.arange(count), fitted)
        index = faiss.IndexFlatL2(reduced.shape[1])
        index.add(np.ascontiguousarray(reduced[fitted], np.float32))
        _, nearest = index.search(np.ascontiguousarray(reduced[rest], np.float32), 1)
        labels[rest] = labels[fitted[nearest[:, 0]]]
    return labels


class ClusterSummary:
    """Per cluster: images, labelled and correct images, label (or prediction) counts;
    added one record at a time."""

    def __init__(self) -> None:
        self.clusters: dict[int, dict[str, Any]] = {}

    def add(self, record: Row, cluster_id: int | None) -> None:
        if cluster_id is None or cluster_id == NOISE:
            return
        entry = self.clusters.setdefault(
            cluster_id, {"n": 0, "labelled": 0, "correct": 0, "labels": Counter()}
        )
        entry["n"] += 1
        correct = record.get("correct")
        if correct is not None:
            entry["labelled"] += 1
            entry["correct"] += int(bool(correct))
        name = record.get("label_name") or record.get("predicted_name")
        if name is not None:
            entry["labels"][str(name)] += 1

    def result(self) -> list[dict[str, Any]]:
        """JSON-ready clusters, worst accuracy first (unlabelled ones last), larger first."""
        found = [
            {
                "cluster": cluster_id,
                "size": entry["n"],
                "labelled": entry["labelled"],
                "accuracy": entry["correct"] / entry["labelled"] if entry["labelled"] else None,
                "top_labels": [
                    {"name": name, "count": n}
                    for name, n in _most_common(entry["labels"], TOP_LABELS)
                ],
            }
            for cluster_id, entry in self.clusters.items()
        ]
        return sorted(
            found,
            key=lambda c: (c["accuracy"] is None, c["accuracy"] or 0.0, -c["size"], c["cluster"]),
        )


def _most_common(counts: Counter[str], limit: int) -> Sequence[tuple[str, int]]:
    """Most frequent first; ties by name (a stable summary)."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
