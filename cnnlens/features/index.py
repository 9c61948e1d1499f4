"""The neighbour index of an audit's feature vectors (faiss): exact cosine similarity (inner
product of L2-normalized vectors) up to `index_exact_max` vectors, IVF beyond, with its
recall@10 against exact search measured on a seeded sample of queries. Ids are the audit's
image indices, so a search answers with the images themselves."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INDEX_FILE = "features.faiss"
RECALL_QUERIES = 1000  # queries that measure an IVF index's recall@10
RECALL_K = 10
_IVF_TRAIN_PER_LIST = 40  # training vectors per IVF list (faiss warns under 39)
_IVF_PROBE_SHARE = 1 / 16  # lists probed per query, as a share of the lists


@dataclass
class IndexInfo:
    """What summary.json says about the index."""

    kind: str  # "exact" or "ivf"
    vectors: int
    dimensions: int
    lists: int | None = None  # IVF: lists and lists probed per query
    probe: int | None = None
    recall_at_10: float | None = None  # IVF: against exact search; exact: 1.0

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if value is not None}


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, C-contiguous; all-zero rows stay zero)."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = rows / np.maximum(norms, 1e-12)
    return unit


class NeighbourIndex:
    """A faiss index over unit vectors, with image indices as ids."""

    def __init__(self, index: Any) -> None:
        self.index = index

    @classmethod
    def build(
        cls,
        pages: Iterable[tuple[np.ndarray, np.ndarray]],
        count: int,
        dimensions: int,
        exact_max: int,
        sample: np.ndarray | None = None,
        seed: int = 0,
    ) -> NeighbourIndex:
        """From (ids, unit vectors) pages of `count` vectors in all. Past `exact_max`, an IVF
        index of about 4 sqrt(count) lists, trained on `sample` (unit vectors), probing a
        sixteenth of them per query."""
        import faiss

        if count <= exact_max:
            flat = faiss.IndexFlatIP(dimensions)
            # room for every vector at once: adding page by page would grow the buffer by
            # reallocation, briefly holding the old and the new one (100 000 x 1280: a peak
            # of 742 MB instead of 551); a resize keeps its capacity when shrunk back
            flat.codes.resize(count * dimensions * 4)
            flat.codes.resize(0)
            index = faiss.IndexIDMap(flat)
        else:
            if sample is None:
                raise ValueError("an IVF index needs a training sample")
            lists = max(1, min(int(4 * math.sqrt(count)), len(sample) // _IVF_TRAIN_PER_LIST))
            quantizer = faiss.IndexFlatIP(dimensions)
            inner = faiss.IndexIVFFlat(quantizer, dimensions, lists, faiss.METRIC_INNER_PRODUCT)
            inner.cp.seed = seed
            inner.train(np.ascontiguousarray(sample, np.float32))
            inner.nprobe = max(1, round(lists * _IVF_PROBE_SHARE))
            index = faiss.IndexIDMap(inner)
        for ids, vectors in pages:
            index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids.astype(np.int64))
        return cls(index)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def exact(self) -> bool:
        import faiss

        return isinstance(faiss.downcast_index(self.index.index), faiss.IndexFlat)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, cosine similarities), each (len(vectors), k), nearest first; -1 ids where
        fewer than k vectors exist."""
        k = max(1, min(k, self.count))
        similarities, ids = self.index.search(normalized(vectors), k)
        return ids, similarities

    def info(self, recall: float | None = None) -> IndexInfo:
        """The index as summary.json reports it (an IVF index with its measured recall)."""
        import faiss

        inner: Any = faiss.downcast_index(self.index.index)
        dimensions = int(self.index.d)
        if isinstance(inner, faiss.IndexFlat):
            return IndexInfo("exact", self.count, dimensions, recall_at_10=1.0)
        return IndexInfo("ivf", self.count, dimensions, int(inner.nlist), int(inner.nprobe), recall)

    def save(self, path: Path) -> None:
        import faiss

        temporary = path.with_name(f".{path.name}.tmp")
        faiss.write_index(self.index, str(temporary))
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> NeighbourIndex:
        import faiss

        return cls(faiss.read_index(str(path)))


def exact_search(
    queries: np.ndarray, pages: Iterable[tuple[np.ndarray, np.ndarray]], k: int
) -> np.ndarray:
    """(len(queries), k) ids of each query's k most similar vectors, by brute force over
    (ids, unit vectors) pages: one page in memory at a time."""
    queries = normalized(queries)
    best_ids = np.full((len(queries), 0), -1, np.int64)
    best = np.zeros((len(queries), 0), np.float32)
    for ids, vectors in pages:
        similarities = queries @ np.ascontiguousarray(vectors, np.float32).T  # (Q, P)
        joined = np.concatenate([best, similarities], axis=1)
        joined_ids = np.concatenate([best_ids, np.broadcast_to(ids, similarities.shape)], axis=1)
        order = np.argsort(-joined, axis=1, kind="stable")[:, :k]
        best = np.take_along_axis(joined, order, axis=1)
        best_ids = np.take_along_axis(joined_ids, order, axis=1)
    return best_ids


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's true neighbours (ids, -1 for none) found."""
    shares = [
        len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist())) / max(1, int((b >= 0).sum()))
        for a, b in zip(found, truth, strict=True)
    ]
    return float(np.mean(shares)) if shares else 1.0
