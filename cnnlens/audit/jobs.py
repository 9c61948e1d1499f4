"""Audit jobs for the service: uploads become jobs in a SQLite store under the data dir, run
one at a time on a background thread (never on the event loop), resumable after a restart."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from cnnlens.audit.analyze import AuditAnalyzer, ImageOutcome
from cnnlens.audit.archive import ArchiveError, ArchiveLimits, QuotaExceededError, archive_kind
from cnnlens.audit.config import AuditConfig, check_methods, check_model
from cnnlens.audit.engine import execute, prepare_job
from cnnlens.audit.inputs import Annotations, read_boxes, read_labels
from cnnlens.audit.records import AuditItem
from cnnlens.audit.store import ACTIVE, STORE_NAME, AuditStore, JobInfo, store_path
from cnnlens.errors import CnnlensError
from cnnlens.features.capture import prepare_features
from cnnlens.models.loaded import LoadedModel

logger = logging.getLogger("cnnlens.audit")
T = TypeVar("T")
STORE_FILE = STORE_NAME  # one store name; store_path() still opens an older audits.sqlite


def directory_bytes(root: Path) -> int:
    """The bytes of the files under root."""
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            continue  # removed meanwhile
    return total


def disk_share_quota(root: Path, share: float) -> int:
    """A data directory's quota from a share of the free disk: what it holds now plus `share`
    of the space free on its filesystem now (the directory need not exist yet)."""
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    held = directory_bytes(root) if root.exists() else 0
    return max(1, held + int(share * free))


# How long DELETE waits for a job that has just finished to write its report and tables.
FINISHING_WAIT_S = 60.0


class ModelRunner(Protocol):
    """How jobs reach the service's models (through their worker threads)."""

    def loaded(self, name: str) -> LoadedModel: ...

    def run(self, name: str, work: Callable[[LoadedModel], T]) -> T: ...

    def wait_ready(self, timeout: float) -> bool: ...

    def stop(self) -> None:
        """Give up waiting for a model (the service is stopping): `run` raises Interrupted."""


class JobNotFoundError(CnnlensError):
    code = "not_found"
    status = 404


class JobFinishedError(CnnlensError):
    code = "already_finished"
    status = 409


class JobActiveError(CnnlensError):
    code = "job_active"
    status = 409


class Interrupted(Exception):
    """The service is stopping: leave the job queued so that the next start resumes it."""


class AuditJobs:
    """The service's audit jobs: submit, list, look up, cancel; a daemon thread runs them."""

    def __init__(
        self, root: Path, runner: ModelRunner, limits: ArchiveLimits | None = None,
        retention_s: float | None = None,
    ):  # fmt: skip
        self.root = root
        self.retention_s = retention_s  # finished jobs older than this are purged
        self.runner = runner
        self.limits = limits or ArchiveLimits()
        self.store = AuditStore(store_path(root))
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._closed = threading.Event()
        self._current: str | None = None  # the job the thread works on (outputs included)
        self._reservations = 0  # bytes the uploads being extracted may still write
        self._reservations_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="cnnlens-audits", daemon=True)
        self._thread.start()
        if retention_s is not None:
            self.purge_finished(retention_s)
        for job in reversed(self.store.jobs()):  # oldest first
            if job.status in ACTIVE:
                self._queue.put(job.id)  # a job the last run of the service left unfinished

    def close(self) -> None:
        self._closed.set()
        self.runner.stop()
        self._queue.put(None)
        self._thread.join(timeout=30)  # a batch in flight finishes first
        if not self._thread.is_alive():
            self.store.close()

    def submit(
        self,
        archive: bytes,
        filename: str,
        config: AuditConfig,
        labels: bytes | None = None,
        boxes: bytes | None = None,
        owner: str | None = None,
    ) -> JobInfo:
        """Store the upload, extract it safely, attach labels and boxes, queue the job (of
        `owner`, a digest of the submitting API key, where keys are on). Blocking (file work):
        call it from a worker thread."""
        check_methods(config)
        loaded = self.runner.loaded(config.model)
        check_model(config, loaded)
        if self.retention_s is not None:
            self.purge_finished(self.retention_s)
        with self._reserved(len(archive) + len(labels or b"") + len(boxes or b"")) as limits:
            job = self._extract(archive, filename, config, labels, boxes, owner, limits, loaded)
        self._queue.put(job.id)
        return self.job(job.id)

    def _extract(
        self, archive: bytes, filename: str, config: AuditConfig, labels: bytes | None,
        boxes: bytes | None, owner: str | None, limits: ArchiveLimits, loaded: LoadedModel,
    ) -> JobInfo:  # fmt: skip
        """The upload's files written under a new job folder and its rows in the store; on any
        failure, nothing of it is left."""
        job_id = uuid.uuid4().hex
        job_dir = self.root / job_id
        job_dir.mkdir(parents=True)
        try:
            # Never named after the client's file: only an archive may come in (a CSV list
            # would name files on this server).
            upload = job_dir / "upload.archive"
            upload.write_bytes(archive)
            if archive_kind(upload) is None:
                raise ArchiveError(f"{filename or 'the upload'} is not a zip or tar archive")
            annotations = Annotations()
            if labels:
                (job_dir / "labels.csv").write_bytes(labels)
                annotations.labels = read_labels(job_dir / "labels.csv")
            if boxes:
                (job_dir / "boxes.csv").write_bytes(boxes)
                annotations.boxes = read_boxes(job_dir / "boxes.csv")
            job = prepare_job(
                self.store, upload, job_dir, config, annotations, loaded.categories,
                resume=False, limits=limits, job_id=job_id,
            )  # fmt: skip
            self.store.set_owner(job.id, owner)
            prepare_features(self.store, job.id, loaded, config.features)
            upload.unlink()  # extracted: the archive itself is no longer needed
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        return job

    @contextmanager
    def _reserved(self, upload_bytes: int) -> Iterator[ArchiveLimits]:
        """The limits for one more job: its extraction may write no more than the job quota,
        nor what the data directory's quota has left (counted on the files really there, less
        what the uploads being extracted meanwhile may still write)."""
        total = self.limits.max_data_dir_bytes
        if total is None:
            yield self.limits
            return
        with self._reservations_lock:
            left = total - directory_bytes(self.root) - upload_bytes - self._reservations
            if left <= 0:
                raise QuotaExceededError(
                    "the audit data directory is full (its quota is "
                    f"{total} bytes); delete finished jobs"
                )
            reserved = upload_bytes + min(self.limits.max_total_bytes, left)
            self._reservations += reserved
        try:
            yield self.limits.model_copy(
                update={"max_total_bytes": min(self.limits.max_total_bytes, left)}
            )
        finally:
            with self._reservations_lock:
                self._reservations -= reserved

    def delete(self, job_id: str, owner: str | None = None, wait_s: float = 0.0) -> None:
        """Remove a finished job: its files and its rows (JobActiveError while it runs, or
        while it is still writing its report after `wait_s` seconds)."""
        job = self.job(job_id, owner)
        if job.status in ACTIVE:
            raise JobActiveError(f"audit job {job_id} is {job.status}; cancel it first")
        deadline = time.monotonic() + wait_s
        while job_id == self._current and time.monotonic() < deadline:
            time.sleep(0.02)  # a job marked finished writes its report and tables, then lets go
        if job_id == self._current:
            raise JobActiveError(f"audit job {job_id} is writing its report; try again shortly")
        self._remove(job_id)

    def discard(self, job_id: str, owner: str | None = None) -> tuple[JobInfo, bool]:
        """What DELETE does: cancel a queued or running job (the job, False: it stops after its
        batch in flight), or remove a finished, failed or cancelled one with its files and rows
        (the job as it was, True)."""
        job = self.job(job_id, owner)
        if job.status in ACTIVE:
            try:
                return self.cancel(job_id, owner), False
            except JobFinishedError:  # it finished meanwhile
                job = self.job(job_id, owner)
        self.delete(job_id, owner, wait_s=FINISHING_WAIT_S)
        return job, True

    def purge_finished(self, older_than_s: float) -> list[str]:
        """Remove the finished jobs that finished more than `older_than_s` seconds ago."""
        cutoff = time.time() - older_than_s
        purged = [
            job.id
            for job in self.store.jobs()
            if job.status not in ACTIVE
            and job.id != self._current
            and (job.finished or job.updated) < cutoff
        ]
        for job_id in purged:
            self._remove(job_id)
        return purged

    def _remove(self, job_id: str) -> None:
        self.store.delete_job(job_id)
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def job(self, job_id: str, owner: str | None = None) -> JobInfo:
        """The job; with `owner`, only theirs (another key's job is as unknown as a missing one)."""
        job = self.store.job(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFoundError(f"no audit job {job_id!r}")
        return job

    def jobs(self) -> list[JobInfo]:
        return self.store.jobs()

    def cancel(self, job_id: str, owner: str | None = None) -> JobInfo:
        job = self.job(job_id, owner)
        if job.status not in ACTIVE:
            raise JobFinishedError(f"audit job {job_id} is already {job.status}")
        self.store.request_cancel(job_id)
        if job.status == "queued":
            self.store.set_status(job_id, "cancelled", "cancelled before it started")
        return self.job(job_id)

    def wait(self, job_id: str, timeout: float) -> JobInfo:
        """For tests and scripts: poll until the job leaves queued/running."""
        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while job.status in ACTIVE and time.monotonic() < deadline:
            time.sleep(0.05)
            job = self.job(job_id)
        return job

    def _loop(self) -> None:
        while not self._closed.is_set():
            job_id = self._queue.get()
            if job_id is None:
                return
            self._current = job_id
            try:
                self._run(job_id)
            except Interrupted:
                logger.info("audit %s interrupted; it resumes when the service restarts", job_id)
            except CnnlensError as error:
                self.store.set_status(job_id, "failed", error.message)
            except Exception as error:  # a bug: record it, keep the thread alive
                logger.exception("audit %s failed", job_id)
                self.store.set_status(job_id, "failed", f"internal error: {type(error).__name__}")
            finally:
                self._current = None

    def _run(self, job_id: str) -> None:
        job = self.store.job(job_id)
        if job is None or job.status not in ACTIVE:
            return  # cancelled while queued
        config = AuditConfig.model_validate(job.config)
        while not self.runner.wait_ready(0.5):
            if self._closed.is_set():
                raise Interrupted
        analyzers: dict[int, AuditAnalyzer] = {}

        def process(items: Sequence[AuditItem]) -> list[ImageOutcome]:
            def work(loaded: LoadedModel) -> list[ImageOutcome]:
                analyzer = analyzers.setdefault(id(loaded), AuditAnalyzer(loaded, config))
                return analyzer(items)

            if self._closed.is_set():
                raise Interrupted
            return self.runner.run(config.model, work)

        execute(self.store, job_id, process, config.batch_size)
