"""Audit jobs: POST /v1/audits (a zip or tar of images, optional labels/boxes CSV) -> 202 and
an id; GET for the list, a job's progress and ETA, its results and its HTML report; DELETE
cancels a running job and removes a finished one with its files. Jobs run on a background
thread; their store lives under the server's data dir, within its quota."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Depends, FastAPI, File, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from cnnlens.api.models import AuditDeleted, AuditJob, AuditList, AuditResults
from cnnlens.audit.archive import ArchiveLimits
from cnnlens.audit.export import CSV, JSONL, records_text, report_html, with_features
from cnnlens.audit.jobs import STORE_FILE, AuditJobs, JobNotFoundError, disk_share_quota
from cnnlens.audit.report import report_policy
from cnnlens.audit.store import JobInfo
from cnnlens.errors import InvalidParamsError, shown
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.deps import SettingsDep, StateDep
from cnnlens.service.errors import (
    NotReadyError,
    PayloadTooLargeError,
    QueueFullError,
    documented_errors,
)
from cnnlens.service.requests import AuditDep
from cnnlens.service.runtime.budget import audit_plan
from cnnlens.service.runtime.state import ServiceState
from cnnlens.service.runtime.worker import each
from cnnlens.service.settings import Settings

router = APIRouter(prefix="/v1", tags=["audits"])
T = TypeVar("T")
_JOB_ID = re.compile(r"^[0-9a-f]{16,32}$")
MAX_CSV_BYTES = 4 * 1024 * 1024
EXPORTS = {"csv": CSV, "jsonl": JSONL}
_jobs_lock = threading.Lock()

ERRORS = documented_errors(
    (400, "not a zip/tar archive, an unsafe entry (.., absolute path, link), bad CSV"),
    (401, "missing or invalid X-API-Key (when keys are configured)"),
    (404, "no such audit job, or the model is not served here"),
    (409, "the job is writing its report: try again shortly"),
    (413, "the archive, an entry or the uncompressed total is too large"),
    (422, "invalid method or option"),
    (503, "the model is still loading (Retry-After)"),
)


def data_dir(settings: Settings) -> FilePath:
    """The server's data dir (settings.data_dir, else ~/.local/share/cnnlens)."""
    if settings.data_dir:
        return FilePath(settings.data_dir).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(FilePath.home() / ".local" / "share")
    return FilePath(base) / "cnnlens"


class _StateRunner:
    """Audit batches go through the model's worker thread, like every other request."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def loaded(self, name: str) -> LoadedModel:
        return self.state.model(name)

    def wait_ready(self, timeout: float) -> bool:
        return self.state.wait_ready(timeout)

    def run(self, name: str, work: Callable[[LoadedModel], T]) -> T:
        from cnnlens.audit.jobs import Interrupted

        while True:
            try:
                job = self.state.submit(name, each, work)
            except QueueFullError:
                # interactive requests first: the audit waits its turn
                if self._stopping.wait(0.2):
                    raise Interrupted from None
                continue
            except NotReadyError:
                raise Interrupted from None
            try:
                result: T = job.future.result()
            except NotReadyError:
                raise Interrupted from None
            return result


def archive_limits(settings: Settings, root: FilePath) -> ArchiveLimits:
    """What uploads may write: the data directory's quota (data_dir_max_bytes, else what it
    holds plus data_dir_disk_share of the free disk, measured when this is called: at start-up)
    and the compression bound."""
    limits = settings.limits
    quota = limits.data_dir_max_bytes or disk_share_quota(root, limits.data_dir_disk_share)
    return ArchiveLimits(max_data_dir_bytes=quota, max_compression_ratio=limits.archive_max_ratio)


def _open_jobs(app: FastAPI, state: ServiceState) -> AuditJobs:
    root = data_dir(state.settings) / "audits"
    limits = getattr(app.state, "audit_limits", None) or archive_limits(state.settings, root)
    return AuditJobs(root, _StateRunner(state), limits)


def get_jobs(request: Request, state: StateDep) -> AuditJobs:
    """One AuditJobs per running app (created on first use, closed with the app's state)."""
    with _jobs_lock:
        jobs = getattr(request.app.state, "audits", None)
        if jobs is None or jobs.runner.state is not state:
            if jobs is not None:
                jobs.close()
            jobs = _open_jobs(request.app, state)
            request.app.state.audits = jobs
        return jobs


JobsDep = Annotated[AuditJobs, Depends(get_jobs)]


def key_owner(request: Request, settings: SettingsDep) -> str | None:
    """Whose jobs a request sees: a digest of its (already checked) API key where keys are
    on, else None (every job)."""
    if not settings.auth_enabled:
        return None
    offered = request.headers.get("x-api-key", "")
    return hashlib.sha256(offered.encode("utf-8", "surrogateescape")).hexdigest()


OwnerDep = Annotated[str | None, Depends(key_owner)]
MAX_PAGE = 200


def resume_audit_jobs(app: FastAPI, state: ServiceState) -> None:
    """At startup: measure the data directory's quota; when the data dir already holds audit
    jobs, open them now, so that the unfinished ones resume without waiting for a request (a
    fresh dir stays untouched)."""
    root = data_dir(state.settings) / "audits"
    app.state.audit_limits = archive_limits(state.settings, root)  # the disk's share: now
    if (root / STORE_FILE).is_file():
        with _jobs_lock:
            app.state.audits = _open_jobs(app, state)


def stop_audit_jobs(app: FastAPI) -> None:
    """At shutdown: the running job stops between two batches and stays resumable."""
    with _jobs_lock:
        jobs = getattr(app.state, "audits", None)
        app.state.audits = None
    if jobs is not None:
        jobs.close()


def job_id_of(job_id: str) -> str:
    """A well-formed job id, or 404 (never a path)."""
    if not _JOB_ID.match(job_id):
        raise JobNotFoundError(f"no audit job {shown(job_id)}")
    return job_id


def _describe(job: JobInfo) -> dict[str, Any]:
    base = f"/v1/audits/{job.id}"
    links = {
        "self": base,
        "results": f"{base}/results",
        "report": f"{base}/report",
        "neighbors": f"{base}/neighbors",
    }
    return {**job.as_dict(), "links": links}


async def _read_limited(upload: UploadFile, limit: int, what: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(f"the {what} is larger than {limit} bytes")
    return data


@router.post("/audits", status_code=202, response_model=AuditJob, responses=ERRORS)
async def create_audit(
    request: AuditDep,
    state: StateDep,
    settings: SettingsDep,
    jobs: JobsDep,
    owner: OwnerDep,
    archive: Annotated[UploadFile, File(description="a zip or tar (.tar, .tar.gz) of images")],
    labels: Annotated[
        UploadFile | None, File(description="CSV filename,label (class index or name)")
    ] = None,
    boxes: Annotated[UploadFile | None, File(description="CSV filename,x0,y0,x1,y1")] = None,
) -> JSONResponse:
    config = request.config
    plan = audit_plan(request.plan, config.batch_size, config.features.enabled)
    state.admit(request.model, plan)  # 422 before any upload
    limit = min(settings.limits.max_upload_bytes, ArchiveLimits().max_archive_bytes)
    archive_bytes = await _read_limited(archive, limit, "archive")
    labels_bytes = await _read_limited(labels, MAX_CSV_BYTES, "labels CSV") if labels else None
    boxes_bytes = await _read_limited(boxes, MAX_CSV_BYTES, "boxes CSV") if boxes else None
    job = await anyio.to_thread.run_sync(
        lambda: jobs.submit(
            archive_bytes,
            archive.filename or "",
            config,
            labels=labels_bytes,
            boxes=boxes_bytes,
            owner=owner,
        )  # fmt: skip
    )
    body = _describe(job)
    return JSONResponse(body, status_code=202, headers={"Location": body["links"]["self"]})


@router.get("/audits", response_model=AuditList, responses=ERRORS)
async def list_audits(
    jobs: JobsDep,
    owner: OwnerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="jobs per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="the previous page's next_cursor")
    ] = None,
) -> dict[str, Any]:
    """The jobs, newest first, a page at a time (only the API key's own where keys are on)."""
    after = _read_cursor(cursor) if cursor else None
    found = await anyio.to_thread.run_sync(lambda: jobs.store.jobs_page(limit + 1, after, owner))
    page = found[:limit]
    more = len(found) > limit
    return {
        "audits": [_describe(job) for job in page],
        "next_cursor": _cursor(page[-1]) if more else None,
    }


def _cursor(job: JobInfo) -> str:
    """Where the next page starts: after this job (opaque to clients)."""
    return base64.urlsafe_b64encode(f"{job.created!r} {job.id}".encode()).decode()


def _read_cursor(cursor: str) -> tuple[float, str]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(" ")
        return float(created), job_id_of(job_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, JobNotFoundError):
        raise InvalidParamsError("invalid cursor: pass a next_cursor of this listing") from None


@router.get("/audits/{job_id}", response_model=AuditJob, responses=ERRORS)
async def get_audit(job_id: str, jobs: JobsDep, owner: OwnerDep) -> dict[str, Any]:
    return _describe(await anyio.to_thread.run_sync(jobs.job, job_id_of(job_id), owner))


@router.get(
    "/audits/{job_id}/results",
    responses={
        **ERRORS,
        200: {
            "model": AuditResults,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            "description": "the job, its summary and per-image results (JSON, CSV or JSONL)",
        },
    },
)
async def audit_results(
    job_id: str,
    jobs: JobsDep,
    owner: OwnerDep,
    format: Annotated[Literal["json", "jsonl", "csv"], Query()] = "json",
    flagged: Annotated[bool, Query(description="only images with at least one flag")] = False,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> Response:
    """Per-image results so far (all of them once the job is done), in input order; the
    summary always covers every finished image."""
    job = await anyio.to_thread.run_sync(jobs.job, job_id_of(job_id), owner)
    every = await anyio.to_thread.run_sync(jobs.store.records, job.id)
    records = [r for r in every if r.flags] if flagged else every
    records = records[offset : None if limit is None else offset + limit]
    if format in ("csv", "jsonl"):
        text = records_text(records, job.config.get("methods") or [], format)
        return PlainTextResponse(
            text,
            media_type="text/csv" if format == "csv" else "application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{EXPORTS[format]}"'},
        )
    from cnnlens.audit.summary import summarize

    summary = with_features(
        summarize(every, unmatched_labels=job.unmatched_labels), jobs.store, job.id
    )
    rows = [record.to_json() for record in records]
    return JSONResponse({"job": _describe(job), "summary": summary, "results": rows})


@router.get(
    "/audits/{job_id}/report",
    response_class=Response,  # the errors stay JSON; the 200 is declared below
    responses={
        **ERRORS,
        200: {
            "content": {"text/html": {"schema": {"type": "string"}}},
            "description": "the self-contained HTML report",
        },
    },
)
async def audit_report(job_id: str, jobs: JobsDep, owner: OwnerDep) -> HTMLResponse:
    """The self-contained HTML report (of the images finished so far while running)."""
    job = await anyio.to_thread.run_sync(jobs.job, job_id_of(job_id), owner)

    def overlay_route(index: int, method: str, relative: str) -> str:
        # relative to /v1/audits/{id}/report: this router's overlay route, under any prefix
        return f"overlays/{index}/{quote(method, safe='')}.png"

    def thumbnail_route(index: int) -> str:
        return f"thumbnails/{index}.jpg"  # routers/audit_thumbnails.py

    html = await anyio.to_thread.run_sync(
        lambda: report_html(
            jobs.store, job.id, overlay_link=overlay_route, thumbnail_link=thumbnail_route
        )
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": report_policy()})


def image_responses(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The documented answers of a route that sends an image: the errors, and 200 `media_type`."""
    content = {media_type: {"schema": {"type": "string", "format": "binary"}}}
    return {**ERRORS, 200: {"content": content, "description": description}}


@router.get(
    "/audits/{job_id}/overlays/{index}/{method}.png",
    response_class=Response,
    responses=image_responses("image/png", "the overlay PNG of one image"),
)
async def audit_overlay(
    job_id: str,
    index: Annotated[int, Path(ge=0, le=10_000_000)],
    method: str,
    jobs: JobsDep,
    owner: OwnerDep,
) -> Response:
    """One image's overlay at its own resolution (the report embeds small copies)."""
    job = await anyio.to_thread.run_sync(jobs.job, job_id_of(job_id), owner)
    record = await anyio.to_thread.run_sync(jobs.store.record, job.id, index)
    relative = None if record is None else record.overlays.get(method)
    if relative is None:
        raise JobNotFoundError(
            f"audit job {job.id} has no {shown(method)} overlay for image {index}"
        )
    # the file name comes from the store (written by the audit), never from the request
    try:
        data = await anyio.to_thread.run_sync((FilePath(job.out_dir) / relative).read_bytes)
    except OSError:
        raise JobNotFoundError(f"the overlay file of image {index} is gone") from None
    return Response(data, media_type="image/png")


@router.delete(
    "/audits/{job_id}",
    status_code=202,
    response_model=AuditJob,
    responses={
        **ERRORS,
        200: {"model": AuditDeleted, "description": "the finished job and its files are gone"},
        202: {"model": AuditJob, "description": "the job is cancelled (it stops after its batch)"},
    },
)
async def delete_audit(job_id: str, jobs: JobsDep, owner: OwnerDep) -> JSONResponse:
    """Cancel a queued or running job (202: it stops after the batch in flight), or remove a
    finished, failed or cancelled one with its files (200): a later GET is a 404 and the
    listing no longer shows it."""
    job, removed = await anyio.to_thread.run_sync(jobs.discard, job_id_of(job_id), owner)
    if removed:
        body = AuditDeleted(id=job.id, status=job.status, deleted=True)
        return JSONResponse(body.model_dump(), status_code=200)
    return JSONResponse(_describe(job), status_code=202)
