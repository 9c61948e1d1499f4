"""The audit store: jobs, their images and per-image results in SQLite (WAL), so that a killed
audit resumes where it stopped and a restarted service still lists its jobs."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnlens.audit.records import AuditItem, AuditRecord, ImageOutcome
from cnnlens.features import store as feature_tables

STORE_NAME = "audit.sqlite"
LEGACY_STORE_NAME = "audits.sqlite"  # the service's data dir used this name before
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    out_dir TEXT NOT NULL,
    signature TEXT NOT NULL,
    config TEXT NOT NULL,
    total INTEGER NOT NULL,
    message TEXT,
    run_started REAL,
    run_start_done INTEGER NOT NULL DEFAULT 0,
    finished REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    unmatched_labels TEXT
);
CREATE INDEX IF NOT EXISTS jobs_signature ON jobs (signature);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    label INTEGER,
    labels TEXT,
    boxes TEXT NOT NULL,
    mask_path TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    record TEXT,
    thumbnail BLOB,
    mean_map BLOB,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS items_flag_count
    ON items (job_id, COALESCE(json_array_length(record, '$.flags'), 0), idx);
CREATE TABLE IF NOT EXISTS overlays (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    method TEXT NOT NULL,
    thumbnail BLOB NOT NULL,
    PRIMARY KEY (job_id, idx, method)
);
"""
# How many flags a finished image has (the report's order); the same text as in the index above.
_FLAG_COUNT = "COALESCE(json_array_length(record, '$.flags'), 0)"


def store_path(folder: Path) -> Path:
    """The store file of an audit out dir or a service data dir: `audit.sqlite`, or the older
    `audits.sqlite` where only that one exists (so that earlier jobs still resume)."""
    legacy = folder / LEGACY_STORE_NAME
    current = folder / STORE_NAME
    return legacy if legacy.is_file() and not current.exists() else current


@dataclass
class JobInfo:
    id: str
    status: str
    created: float
    updated: float
    source: str
    out_dir: str
    signature: str
    config: dict[str, Any]
    total: int
    done: int
    errors: int
    message: str | None
    run_started: float | None
    run_start_done: int
    finished: float | None
    cancel_requested: bool
    owner: str | None = None  # a digest of the API key that submitted it (service jobs)
    # labels CSV rows whose file is not among the images (reported in the summary)
    unmatched_labels: list[str] = field(default_factory=list)

    @property
    def eta_s(self) -> float | None:
        """Remaining seconds at this run's pace; None before the first image of the run."""
        if self.status != "running" or self.run_started is None:
            return None
        finished_now = self.done - self.run_start_done
        if finished_now <= 0:
            return None
        rate = (time.time() - self.run_started) / finished_now
        return round(rate * (self.total - self.done), 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "finished": self.finished,
            "model": self.config.get("model"),
            "methods": self.config.get("methods"),
            "progress": {
                "done": self.done,
                "total": self.total,
                "errors": self.errors,
                "fraction": round(self.done / self.total, 4) if self.total else 1.0,
            },
            "eta_s": self.eta_s,
            "message": self.message,
        }


class AuditStore:
    """One SQLite file; safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._connection = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._connection.row_factory = sqlite3.Row
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._connection.executescript(_SCHEMA)
            self._connection.executescript(feature_tables.SCHEMA)
            columns = {row[1] for row in self._connection.execute("PRAGMA table_info(items)")}
            if "labels" not in columns:  # a store written before multi-label audits
                self._connection.execute("ALTER TABLE items ADD COLUMN labels TEXT")
            jobs_columns = {row[1] for row in self._connection.execute("PRAGMA table_info(jobs)")}
            if "owner" not in jobs_columns:  # a store written before jobs had owners
                self._connection.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
            if "unmatched_labels" not in jobs_columns:  # written before they were reported
                self._connection.execute("ALTER TABLE jobs ADD COLUMN unmatched_labels TEXT")
            if "features" not in jobs_columns:  # the dataset view's summary (JSON)
                self._connection.execute("ALTER TABLE jobs ADD COLUMN features TEXT")

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._connection:
            yield self._connection

    def _rows(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        with self._lock:
            return self._connection.execute(sql, params).fetchall()

    def _pages(self, sql: str, params: Sequence[Any], page: int) -> Iterator[list[sqlite3.Row]]:
        """`sql`'s rows a page at a time (flat memory); `sql` selects `idx` and ends with
        `idx > ? ... ORDER BY idx LIMIT ?`, whose two values this fills in."""
        last = -1
        while rows := self._rows(sql, (*params, last, page)):
            yield rows
            last = rows[-1]["idx"]

    def create_job(
        self,
        job_id: str,
        *,
        source: str,
        out_dir: str,
        signature: str,
        config: dict[str, Any],
        items: Sequence[AuditItem],
        unmatched_labels: Sequence[str] = (),
    ) -> None:
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, created, updated, status, source, out_dir, signature,"
                " config, total, unmatched_labels) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (
                    job_id, now, now, source, out_dir, signature, json.dumps(config), len(items),
                    json.dumps(list(unmatched_labels)),
                ),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO items (job_id, idx, name, path, label, labels, boxes, mask_path)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        job_id,
                        it.index,
                        it.name,
                        _stored_path(it.path),
                        it.label,
                        json.dumps(list(it.labels)),
                        json.dumps(it.boxes),
                        _stored_path(it.mask_path),
                    )
                    for it in items
                ],
            )

    def job(self, job_id: str) -> JobInfo | None:
        with self._lock:
            row = self._connection.execute(_JOB_QUERY + " WHERE j.id = ?", (job_id,)).fetchone()
        return _job_info(row) if row else None

    def jobs(self) -> list[JobInfo]:
        with self._lock:
            rows = self._connection.execute(_JOB_QUERY + " ORDER BY j.created DESC").fetchall()
        return [_job_info(row) for row in rows]

    def jobs_page(
        self, limit: int, after: tuple[float, str] | None = None, owner: str | None = None
    ) -> list[JobInfo]:
        """Up to `limit` jobs, newest first, after the (created, id) of the last one seen;
        only those of `owner` when given."""
        where, values = ["1 = 1"], []
        if after is not None:
            where.append("(j.created, j.id) < (?, ?)")
            values += list(after)
        if owner is not None:
            where.append("j.owner = ?")
            values.append(owner)
        query = f" WHERE {' AND '.join(where)} ORDER BY j.created DESC, j.id DESC LIMIT ?"
        with self._lock:
            rows = self._connection.execute(_JOB_QUERY + query, (*values, limit)).fetchall()
        return [_job_info(row) for row in rows]

    def set_owner(self, job_id: str, owner: str | None) -> None:
        """Who submitted the job (a digest of its API key), for listings scoped to them."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET owner = ? WHERE id = ?", (owner, job_id))

    def find_job(self, signature: str) -> JobInfo | None:
        """The newest job with this signature (same source and config)."""
        with self._lock:
            row = self._connection.execute(
                _JOB_QUERY + " WHERE j.signature = ? ORDER BY j.created DESC LIMIT 1",
                (signature,),
            ).fetchone()
        return _job_info(row) if row else None

    def delete_job(self, job_id: str) -> None:
        """Remove a job's rows; the write-ahead log is folded back into the file and cut to
        nothing, so that the disk space a deletion frees shows (the file's free pages are
        reused by the jobs that come after)."""
        with self._transaction() as db:
            for table in feature_tables.TABLES:
                db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM overlays WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM items WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        with self._lock:
            self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def set_status(self, job_id: str, status: str, message: str | None = None) -> None:
        now = time.time()
        finished = now if status in FINISHED else None
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = ?, message = ?, updated = ?, finished = ? WHERE id = ?",
                (status, message, now, finished, job_id),
            )

    def start_run(self, job_id: str) -> None:
        """Mark the job running and remember where this run began (for the ETA)."""
        with self._transaction() as db:
            done = db.execute(
                "SELECT COUNT(*) FROM items WHERE job_id = ? AND status != 'pending'", (job_id,)
            ).fetchone()[0]
            now = time.time()
            db.execute(
                "UPDATE jobs SET status = 'running', message = NULL, updated = ?, finished = NULL,"
                " run_started = ?, run_start_done = ? WHERE id = ?",
                (now, now, done, job_id),
            )

    def request_cancel(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            row = self._connection.execute(
                "SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return bool(row and row[0])

    def pending_items(self, job_id: str) -> list[AuditItem]:
        return [_item(row) for row in self._rows(_PENDING + " ORDER BY idx", (job_id,))]

    def iter_pending(self, job_id: str, page: int = 512) -> Iterator[AuditItem]:
        """The pending images in input order, read a page at a time (flat memory)."""
        sql = _PENDING + " AND idx > ? ORDER BY idx LIMIT ?"
        for rows in self._pages(sql, (job_id,), page):
            yield from (_item(row) for row in rows)

    def save_outcomes(self, job_id: str, outcomes: Sequence[ImageOutcome]) -> int:
        """One transaction per batch: a killed run loses at most the batch in flight. Only
        pending images are recorded, so that every image is recorded exactly once even when a
        cluster delivers a retried batch twice; returns how many were recorded."""
        recorded = 0
        with self._transaction() as db:
            for outcome in outcomes:
                status = "error" if outcome.record.status == "error" else "done"
                cursor = db.execute(
                    "UPDATE items SET status = ?, record = ?, thumbnail = ?, mean_map = ?"
                    " WHERE job_id = ? AND idx = ? AND status = 'pending'",
                    (
                        status, json.dumps(outcome.record.to_json()), outcome.thumbnail,
                        outcome.mean_map,
                        job_id, outcome.index,
                    ),
                )  # fmt: skip
                if cursor.rowcount == 0:
                    continue
                recorded += 1
                feature_tables.save(db, job_id, outcome)
                db.executemany(
                    "INSERT OR REPLACE INTO overlays (job_id, idx, method, thumbnail)"
                    " VALUES (?, ?, ?, ?)",
                    [
                        (job_id, outcome.index, method, data)
                        for method, data in outcome.overlay_thumbnails.items()
                    ],
                )
            db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (time.time(), job_id))
        return recorded

    def records(self, job_id: str) -> list[AuditRecord]:
        """Finished images' records, in input order."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT record FROM items WHERE job_id = ? AND record IS NOT NULL ORDER BY idx",
                (job_id,),
            ).fetchall()
        return [_record(row[0]) for row in rows]

    def iter_records(
        self, job_id: str, page: int = 500, *, with_maps: bool = False
    ) -> Iterator[tuple[AuditRecord, bytes | None]]:
        """Finished images' records in input order, a page at a time (flat memory), each with
        its class-mean map where `with_maps`, else None."""
        column = "mean_map" if with_maps else "NULL"
        sql = (
            f"SELECT idx, record, {column} FROM items WHERE job_id = ? AND record IS NOT NULL"
            " AND idx > ? ORDER BY idx LIMIT ?"
        )
        for rows in self._pages(sql, (job_id,), page):
            yield from ((_record(row[1]), row[2]) for row in rows)

    def iter_report_rows(
        self, job_id: str, embedded: int, page: int = 500
    ) -> Iterator[tuple[AuditRecord, bytes | None, dict[str, bytes]]]:
        """Finished records, most flags first then input order, a page at a time; the first
        `embedded` come with their thumbnail and overlay thumbnails, the others without."""
        counts = self._rows(
            f"SELECT DISTINCT {_FLAG_COUNT} FROM items WHERE job_id = ?"
            " AND record IS NOT NULL ORDER BY 1 DESC",
            (job_id,),
        )
        sql = (
            f"SELECT idx, record FROM items WHERE job_id = ? AND {_FLAG_COUNT} = ?"
            " AND idx > ? AND record IS NOT NULL ORDER BY idx LIMIT ?"
        )
        position = 0
        for (count,) in counts:  # a few values: each is read by index, in input order
            for rows in self._pages(sql, (job_id, count), page):
                wanted = [row[0] for row in rows[: max(0, embedded - position)]]
                thumbnails, overlays = self._thumbnails_of(job_id, wanted)
                for row in rows:
                    yield _record(row[1]), thumbnails.get(row[0]), overlays.get(row[0], {})
                position += len(rows)

    def _thumbnails_of(
        self, job_id: str, indices: Sequence[int]
    ) -> tuple[dict[int, bytes], dict[int, dict[str, bytes]]]:
        if not indices:
            return {}, {}
        among = f" AND idx IN ({','.join('?' * len(indices))})"
        with self._lock:  # both from the same state of the store
            return (
                self._blobs("thumbnail", job_id, among, indices),
                self._overlays(job_id, among, indices),
            )

    def record(self, job_id: str, index: int) -> AuditRecord | None:
        """One finished image's record, or None."""
        with self._lock:
            row = self._connection.execute(
                "SELECT record FROM items WHERE job_id = ? AND idx = ? AND record IS NOT NULL",
                (job_id, index),
            ).fetchone()
        return _record(row[0]) if row else None

    def thumbnails(self, job_id: str) -> dict[int, bytes]:
        return self._blobs("thumbnail", job_id)

    def thumbnail(self, job_id: str, index: int) -> bytes | None:
        """One image's thumbnail (JPEG), or None."""
        return self._blobs("thumbnail", job_id, " AND idx = ?", (index,)).get(index)

    def overlay_thumbnails(self, job_id: str) -> dict[int, dict[str, bytes]]:
        return self._overlays(job_id)

    def mean_maps(self, job_id: str) -> dict[int, bytes]:
        return self._blobs("mean_map", job_id)

    def _blobs(
        self, column: str, job_id: str, among: str = "", indices: Sequence[int] = ()
    ) -> dict[int, bytes]:
        """index -> `column` of the job's images that have one (`among`: a filter on idx)."""
        sql = f"SELECT idx, {column} FROM items WHERE job_id = ? AND {column} IS NOT NULL"
        return {row[0]: row[1] for row in self._rows(sql + among, (job_id, *indices))}

    def _overlays(
        self, job_id: str, among: str = "", indices: Sequence[int] = ()
    ) -> dict[int, dict[str, bytes]]:
        """index -> method -> overlay thumbnail (`among`: a filter on idx)."""
        found: dict[int, dict[str, bytes]] = {}
        sql = "SELECT idx, method, thumbnail FROM overlays WHERE job_id = ?" + among
        for index, method, data in self._rows(sql, (job_id, *indices)):
            found.setdefault(index, {})[method] = data
        return found


_PENDING = (
    "SELECT idx, name, path, label, labels, boxes, mask_path FROM items"
    " WHERE job_id = ? AND status = 'pending'"
)
_JOB_QUERY = """
SELECT j.*,
    (SELECT COUNT(*) FROM items i WHERE i.job_id = j.id AND i.status != 'pending') AS done,
    (SELECT COUNT(*) FROM items i WHERE i.job_id = j.id AND i.status = 'error') AS errors
FROM jobs j"""


def _record(text: str) -> AuditRecord:
    return AuditRecord.model_validate_json(text)


def _item(row: sqlite3.Row) -> AuditItem:
    boxes = [tuple(box) for box in json.loads(row["boxes"])]
    labels = tuple(json.loads(row["labels"] or "[]"))
    return AuditItem(
        row["idx"],
        row["name"],
        _loaded_path(row["path"]) or "",
        row["label"],
        boxes,
        _loaded_path(row["mask_path"]),
        labels,
    )


def _stored_path(path: str | None) -> str | bytes | None:
    """A path as SQLite can hold it: a file name that is not UTF-8 goes in as its bytes."""
    if path is None:
        return None
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _loaded_path(value: str | bytes | None) -> str | None:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _job_info(row: sqlite3.Row) -> JobInfo:
    columns = {column.name: row[column.name] for column in fields(JobInfo)}
    columns["config"] = json.loads(columns["config"])
    columns["cancel_requested"] = bool(columns["cancel_requested"])
    columns["unmatched_labels"] = json.loads(columns["unmatched_labels"] or "[]")
    return JobInfo(**columns)
