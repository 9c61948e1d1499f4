"""The dataset view's tables in the audit store: each analyzed image's vector, perceptual
hash, probabilities and channel maxima, saved in the transaction of its row (so a resumed
audit has them for every finished image), read back a page at a time."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlens.features.duplicates import as_signed

if TYPE_CHECKING:
    from cnnlens.audit.records import ImageOutcome
    from cnnlens.audit.store import AuditStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    vector BLOB NOT NULL,
    phash INTEGER NOT NULL,
    probabilities BLOB,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS channel_maxima (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    layer TEXT NOT NULL,
    maxima BLOB NOT NULL,
    PRIMARY KEY (job_id, layer, idx)
);
CREATE TABLE IF NOT EXISTS exemplar_layers (
    job_id TEXT NOT NULL,
    layer TEXT NOT NULL,
    geometry TEXT NOT NULL,
    PRIMARY KEY (job_id, layer)
);
"""
TABLES = ("features", "channel_maxima", "exemplar_layers")
PAGE = 2048


def save(db: sqlite3.Connection, job_id: str, outcome: ImageOutcome) -> None:
    """One image's features, inside the transaction that records its row."""
    found = outcome.features
    if found is None:
        return
    probabilities = None if found.probabilities is None else found.probabilities.tobytes()
    db.execute(
        "INSERT OR REPLACE INTO features (job_id, idx, vector, phash, probabilities)"
        " VALUES (?, ?, ?, ?, ?)",
        (
            job_id, outcome.index, np.asarray(found.vector, np.float32).tobytes(),
            as_signed(found.phash), probabilities,
        ),
    )  # fmt: skip
    db.executemany(
        "INSERT OR REPLACE INTO channel_maxima (job_id, idx, layer, maxima) VALUES (?, ?, ?, ?)",
        [
            (job_id, outcome.index, layer, np.asarray(maxima, np.float32).tobytes())
            for layer, maxima in found.maxima.items()
        ],
    )


class FeatureStore:
    """Reads and updates one audit store's feature tables (through its connection)."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def count(self, job_id: str) -> tuple[int, int]:
        """(vectors, dimensions) of the job's analyzed images."""
        rows = self.store._rows(
            "SELECT COUNT(*), MAX(length(vector)) FROM features WHERE job_id = ?", (job_id,)
        )
        count, length = rows[0][0], rows[0][1]
        return int(count), int(length or 0) // 4

    def iter_vectors(
        self, job_id: str, page: int = PAGE
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids (P,), vectors (P, D) float32) pages in image order."""
        sql = "SELECT idx, vector FROM features WHERE job_id = ? AND idx > ? ORDER BY idx LIMIT ?"
        for rows in self.store._pages(sql, (job_id,), page):
            ids = np.array([row[0] for row in rows], np.int64)
            yield ids, np.stack([np.frombuffer(row[1], np.float32) for row in rows])

    def vectors(self, job_id: str, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Some images' vectors, by index."""
        rows = self._among("SELECT idx, vector FROM features", job_id, ids)
        return {int(row[0]): np.frombuffer(row[1], np.float32) for row in rows}

    def names(self, job_id: str) -> dict[int, str]:
        """Every image's name, by index."""
        rows = self.store._rows("SELECT idx, name FROM items WHERE job_id = ?", (job_id,))
        return {int(row[0]): str(row[1]) for row in rows}

    def paths(self, job_id: str, ids: Sequence[int]) -> dict[int, str]:
        """Where some images' bytes live (a local path or a URI), by index."""
        rows = self._among("SELECT idx, path FROM items", job_id, ids)
        return {int(row[0]): str(row[1]) for row in rows}

    def _among(self, select: str, job_id: str, ids: Sequence[int]) -> list[Any]:
        """`select`'s rows of the job's images `ids`, 500 ids a query."""
        rows: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            where = f" WHERE job_id = ? AND idx IN ({','.join('?' * len(chunk))})"
            rows += self.store._rows(select + where, (job_id, *chunk))
        return rows

    def hashes(self, job_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, pHashes as uint64), image order."""
        rows = self.store._rows(
            "SELECT idx, phash FROM features WHERE job_id = ? ORDER BY idx", (job_id,)
        )
        ids = np.array([row[0] for row in rows], np.int64)
        hashes = np.array([row[1] for row in rows], np.int64).astype(np.uint64)
        return ids, hashes

    def iter_labels(self, job_id: str, page: int = PAGE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, labels) pages of the images `iter_probabilities` yields, without the blobs."""
        for rows in self.store._pages(_labelled("f.idx, i.label"), (job_id,), page):
            yield (
                np.array([row[0] for row in rows], np.int64),
                np.array([row[1] for row in rows], np.int64),
            )

    def iter_probabilities(
        self, job_id: str, page: int = PAGE
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(ids, labels, probabilities (P, K) float16) pages of the labelled images."""
        sql = _labelled("f.idx, i.label, f.probabilities")
        for rows in self.store._pages(sql, (job_id,), page):
            yield (
                np.array([row[0] for row in rows], np.int64),
                np.array([row[1] for row in rows], np.int64),
                np.stack([np.frombuffer(row[2], np.float16) for row in rows]),
            )

    def iter_maxima(
        self, job_id: str, layer: str, page: int = PAGE
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(ids, values (P, C), positions (P, C)) pages of one layer's channel maxima."""
        sql = (
            "SELECT idx, maxima FROM channel_maxima WHERE job_id = ? AND layer = ?"
            " AND idx > ? ORDER BY idx LIMIT ?"
        )
        for rows in self.store._pages(sql, (job_id, layer), page):
            maxima = np.stack([np.frombuffer(row[1], np.float32).reshape(-1, 2) for row in rows])
            ids = np.array([row[0] for row in rows], np.int64)
            yield ids, maxima[:, :, 0], maxima[:, :, 1].astype(np.int64)

    def set_geometry(self, job_id: str, layer: str, geometry: str) -> None:
        with self.store._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO exemplar_layers (job_id, layer, geometry) VALUES (?, ?, ?)",
                (job_id, layer, geometry),
            )

    def geometries(self, job_id: str) -> dict[str, str]:
        rows = self.store._rows(
            "SELECT layer, geometry FROM exemplar_layers WHERE job_id = ?", (job_id,)
        )
        return {row[0]: row[1] for row in rows}

    def update_records(self, job_id: str, columns: Mapping[int, Mapping[str, Any]]) -> None:
        """Merge finding columns into finished rows (one transaction)."""
        with self.store._transaction() as db:
            for index, values in columns.items():
                row = db.execute(
                    "SELECT record FROM items WHERE job_id = ? AND idx = ?", (job_id, index)
                ).fetchone()
                if row is None or row[0] is None:
                    continue
                record = {**json.loads(row[0]), **values}
                db.execute(
                    "UPDATE items SET record = ? WHERE job_id = ? AND idx = ?",
                    (json.dumps(record), job_id, index),
                )

    def set_summary(self, job_id: str, summary: Mapping[str, Any] | None) -> None:
        with self.store._transaction() as db:
            db.execute(
                "UPDATE jobs SET features = ? WHERE id = ?",
                (None if summary is None else json.dumps(summary), job_id),
            )

    def summary(self, job_id: str) -> dict[str, Any] | None:
        rows = self.store._rows("SELECT features FROM jobs WHERE id = ?", (job_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] else None


def _labelled(columns: str) -> str:
    """A page of the labelled images whose probabilities were kept (see AuditStore._pages)."""
    return (
        f"SELECT {columns} FROM features f JOIN items i ON i.job_id = f.job_id AND i.idx = f.idx"
        " WHERE f.job_id = ? AND f.probabilities IS NOT NULL AND i.label IS NOT NULL"
        " AND f.idx > ? ORDER BY f.idx LIMIT ?"
    )
