"""GET /v1/audits/{id}/thumbnails/{index}.jpg: the small JPEG an audit keeps of each image,
for the report's rows past its embedded ones and the page's lists of audited images."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path
from fastapi.responses import Response

from cnnlens.audit.jobs import JobNotFoundError
from cnnlens.service.routers.audits import JobsDep, OwnerDep, image_responses, job_id_of

router = APIRouter(prefix="/v1", tags=["audits"])


@router.get(
    "/audits/{job_id}/thumbnails/{index}.jpg",
    response_class=Response,
    responses=image_responses("image/jpeg", "the image's thumbnail"),
)
async def audit_thumbnail(
    job_id: str,
    index: Annotated[int, Path(ge=0, le=10_000_000)],
    jobs: JobsDep,
    owner: OwnerDep,
) -> Response:
    """One audited image's thumbnail (at most `thumbnail_side` pixels a side)."""
    job = await anyio.to_thread.run_sync(jobs.job, job_id_of(job_id), owner)
    data = await anyio.to_thread.run_sync(jobs.store.thumbnail, job.id, index)
    if data is None:
        raise JobNotFoundError(f"audit job {job.id} has no thumbnail of image {index}")
    # a finished image's thumbnail never changes: the browser may keep it
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )
