"""Runs an audit job: prepare it in the store (or find the one to resume), analyze the pending
images batch by batch, save each batch's results, then write the report and tables."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cnnlens.audit.archive import IMAGE_SUFFIXES, ArchiveLimits
from cnnlens.audit.config import AuditConfig
from cnnlens.audit.export import overlay_filename, write_outputs
from cnnlens.audit.files import write_atomic
from cnnlens.audit.inputs import (
    Annotations,
    AuditInputError,
    build_items,
    collect_images,
    unmatched_labels,
)
from cnnlens.audit.records import AuditItem, ImageOutcome, error_outcome
from cnnlens.audit.sources import is_uri, list_images
from cnnlens.audit.store import STORE_NAME, AuditStore, JobInfo, store_path
from cnnlens.errors import CnnlensError

logger = logging.getLogger("cnnlens.audit")
__all__ = [
    "STORE_NAME", "AuditRun", "OutputInUseError", "Watch", "execute", "prepare_job",
    "run_batches", "store_path",
]  # fmt: skip

ProcessBatch = Callable[[Sequence[AuditItem]], list[ImageOutcome]]
AnalyzeBatches = Callable[[Iterable[AuditItem]], Iterable[list[ImageOutcome]]]
ProgressCallback = Callable[[JobInfo], None]
T = TypeVar("T")


@dataclass
class AuditRun:
    """What one call of `execute` did."""

    job: JobInfo
    processed: int  # images analyzed in this run (resumed ones not counted)
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json's summary: accuracy, flags, confusions, labels rows without an image."""
        path = self.outputs.get("summary.json")
        if path is None or not path.is_file():
            return {}
        return dict(json.loads(path.read_text("utf-8"))["summary"])

    def __repr__(self) -> str:
        job = self.job
        return (
            f"<AuditRun {job.id}: {job.status}, {job.done} of {job.total} images "
            f"({self.processed} analyzed in this run), {len(self.outputs)} outputs>"
        )

    def _repr_html_(self) -> str:
        """A notebook shows the summary: counts, accuracy, flags, commonest confusions."""
        from cnnlens.display import audit_html

        report = self.outputs.get("index.html")
        return audit_html(self.summary, repr(self), None if report is None else str(report))


class OutputInUseError(CnnlensError):
    """The output folder holds the report of another audit (other images or another config)."""

    code = "output_in_use"
    status = 409


def prepare_job(
    store: AuditStore,
    source: Path | str,
    out_dir: Path,
    config: AuditConfig,
    annotations: Annotations,
    categories: Sequence[str],
    *,
    resume: bool = True,
    limits: ArchiveLimits | None = None,
    job_id: str | None = None,
    exclusive: bool = False,
) -> JobInfo:
    """The job for these images and this config: the unfinished or finished one already in the
    store (resume), or a new one. `exclusive`: refuse (OutputInUseError, nothing created) when
    the store already holds a different audit, whose report the new one would replace."""
    if is_uri(source):
        try:
            images: Sequence[tuple[str, Path | str]] = list_images(str(source), IMAGE_SUFFIXES)
        except OSError as error:
            raise AuditInputError(str(error)) from None
        listed_labels: dict[str, str] = {}
        where = str(source)
    else:
        source = Path(source)
        images, listed_labels = collect_images(source, out_dir, limits)
        where = str(source.resolve())
    annotations = Annotations(
        labels={**listed_labels, **annotations.labels},
        boxes=annotations.boxes,
        masks=annotations.masks,
    )
    items = build_items(images, annotations, categories, len(categories) or 1000)
    described = [
        # a detector's labelled boxes: every label counts (kept out otherwise: older digests)
        (it.name, it.label, it.boxes, it.mask_path is not None)
        + ((list(it.labels),) if it.boxes and len(it.labels) > 1 else ())
        for it in items
    ]
    digest = hashlib.sha256(
        json.dumps([config.signature(), where, described]).encode("utf-8")
    ).hexdigest()
    existing = store.find_job(digest)
    if resume and existing is not None and existing.status != "cancelled":
        return existing
    others = [job for job in store.jobs() if job.signature != digest]
    if exclusive and others:
        raise OutputInUseError(
            f"{out_dir} holds the report of another audit (job {others[0].id}, of "
            f"{others[0].source}); choose another output folder"
        )
    job_id = job_id or uuid.uuid4().hex[:16]
    store.create_job(
        job_id,
        source=str(source),
        out_dir=str(out_dir),
        signature=digest,
        config=config.model_dump(mode="json"),
        items=items,
        unmatched_labels=unmatched_labels(images, annotations.labels),
    )
    job = store.job(job_id)
    assert job is not None
    return job


@dataclass(frozen=True)
class Watch:
    """How a caller follows a run: a callback after each saved batch, and a stop request
    checked between batches."""

    on_progress: ProgressCallback | None = None
    should_stop: Callable[[], bool] | None = None

    def progress(self, job: JobInfo) -> None:
        if self.on_progress is not None:
            self.on_progress(job)

    def stopping(self) -> bool:
        return self.should_stop is not None and self.should_stop()


def execute(
    store: AuditStore, job_id: str, process: ProcessBatch, batch_size: int, watch: Watch = Watch()
) -> AuditRun:
    """Analyze the job's pending images in this process, `batch_size` at a time."""

    def analyze(pending: Iterable[AuditItem]) -> Iterator[list[ImageOutcome]]:
        for batch in batched(pending, batch_size):
            yield process_robustly(process, batch)

    return run_batches(store, job_id, analyze, watch)


def run_batches(
    store: AuditStore, job_id: str, analyze: AnalyzeBatches, watch: Watch = Watch()
) -> AuditRun:
    """The batch loop of every engine: `analyze` turns the pending images into batches of
    outcomes (here or on a cluster); each batch is saved as it comes, finished images are never
    redone, cancellation is checked between batches, the report is written at the end (also
    when cancelled)."""
    store.start_run(job_id)
    job = _job(store, job_id)
    out_dir = Path(job.out_dir)
    processed = 0
    watch.progress(job)
    batches = iter(analyze(store.iter_pending(job_id)))
    try:
        while True:
            if store.cancel_requested(job_id) or watch.stopping():
                return conclude(store, job_id, processed, "cancelled", "cancelled by request")
            outcomes = next(batches, None)
            if outcomes is None:
                break
            processed += save_outcomes(store, job_id, out_dir, outcomes)
            watch.progress(_job(store, job_id))
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # a cluster engine lets go of its workers
    return finish(store, job_id, processed)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last one shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def finish(store: AuditStore, job_id: str, processed: int) -> AuditRun:
    job = _job(store, job_id)
    status = "done" if job.done == job.total else "failed"
    message = None if status == "done" else f"{job.total - job.done} images left unprocessed"
    return conclude(store, job_id, processed, status, message)


def conclude(
    store: AuditStore, job_id: str, processed: int, status: str, message: str | None
) -> AuditRun:
    """The dataset view first (its columns complete the rows, so a job is never seen done
    without them), then the final status, then the report and tables."""
    out_dir = Path(_job(store, job_id).out_dir)
    written = build_dataset_view(store, job_id, out_dir)
    store.set_status(job_id, status, message)
    outputs = {**written, **write_outputs(store, job_id, out_dir)}
    return AuditRun(_job(store, job_id), processed, outputs)


def build_dataset_view(store: AuditStore, job_id: str, out_dir: Path) -> dict[str, Path]:
    """The feature space of the analyzed images, when the config asks for it; a failure
    there is recorded in the summary, and the rows and report are written regardless."""
    config = AuditConfig.model_validate(_job(store, job_id).config)
    if not config.features.enabled:
        return {}
    from cnnlens.features.dataset import analyze_dataset
    from cnnlens.features.store import FeatureStore

    store.set_status(job_id, "running", "building the feature space")
    try:
        return analyze_dataset(store, job_id, out_dir, config.features)
    except Exception as error:
        logger.exception("audit %s: the feature space failed", job_id)
        FeatureStore(store).set_summary(job_id, {"error": f"{type(error).__name__}: {error}"})
        return {}


# What one image can make a model call raise (bad content, a shape a method refuses, out of
# memory); anything else (an interruption, a bug in the caller) stops the audit.
_IMAGE_FAILURES = (CnnlensError, RuntimeError, ValueError, OSError, MemoryError)


def process_robustly(process: ProcessBatch, batch: Sequence[AuditItem]) -> list[ImageOutcome]:
    """A batch that fails on some image is retried image by image, so one bad image becomes
    one error row instead of failing its neighbours."""
    try:
        return process(batch)
    except _IMAGE_FAILURES as error:
        message = error.message if isinstance(error, CnnlensError) else repr(error)
        if len(batch) == 1:
            logger.warning("audit image %s failed: %s", batch[0].name, message)
            return [error_outcome(batch[0], message)]
        logger.info("audit batch failed (%s); retrying its images one by one", message)
        return [outcome for item in batch for outcome in process_robustly(process, [item])]


def save_outcomes(
    store: AuditStore, job_id: str, out_dir: Path, outcomes: Sequence[ImageOutcome]
) -> int:
    """Overlay PNG files first, then the batch's rows in one transaction; returns how many
    images this recorded (a batch a cluster ran twice records nothing the second time)."""
    for outcome in outcomes:
        files = {}
        for method, png in outcome.overlay_pngs.items():
            relative = overlay_filename(outcome.index, outcome.record.name, method)
            # no fsync per overlay (it was most of the driver's time per image): an overlay
            # lost with the machine is redrawn by a --fresh run; the rows stay in the store
            write_atomic(out_dir / relative, png, durable=False)
            files[method] = relative
        outcome.record.overlays = files
    return store.save_outcomes(job_id, outcomes)


def _job(store: AuditStore, job_id: str) -> JobInfo:
    job = store.job(job_id)
    if job is None:
        raise KeyError(f"no audit job {job_id!r}")
    return job
