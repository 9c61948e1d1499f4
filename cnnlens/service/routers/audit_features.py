"""The feature space of a finished audit: POST /v1/audits/{id}/neighbors (multipart `image`,
`k`) -> the audited images nearest to the upload; GET /v1/audits/{id}/exemplars -> each
channel's top images of the exemplar layers, and /exemplars/{layer}/{channel}.png -> the sheet
of their crops."""

from __future__ import annotations

import json
from pathlib import Path as FilePath
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Path, UploadFile
from fastapi.responses import Response

from cnnlens.api.models import Exemplars, NeighboursResponse
from cnnlens.audit.config import AuditConfig
from cnnlens.audit.jobs import JobNotFoundError
from cnnlens.features.exemplars import EXEMPLARS_FILE, sheet_path
from cnnlens.features.retrieval import MAX_K, index_path, loaded_index, neighbours
from cnnlens.features.vectors import features
from cnnlens.methods.run import RunPlan
from cnnlens.models.loaded import LoadedModel
from cnnlens.service import deps
from cnnlens.service.routers.audits import ERRORS, JobsDep, OwnerDep, image_responses, job_id_of
from cnnlens.service.runtime.budget import MethodsPlan
from cnnlens.service.runtime.worker import each

router = APIRouter(prefix="/v1", tags=["audits"])


@router.post(
    "/audits/{job_id}/neighbors",
    response_model=NeighboursResponse,
    responses={**ERRORS, 409: ERRORS[409] | {"description": "the audit has no index (yet)"}},
)
async def audit_neighbors(
    job_id: str,
    jobs: JobsDep,
    owner: OwnerDep,
    state: deps.StateDep,
    settings: deps.SettingsDep,
    deadline: deps.DeadlineDep,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP, GIF or TIFF")],
    k: Annotated[int, Form(ge=1, le=MAX_K, description="how many neighbours")] = 5,
) -> dict[str, Any]:
    """The audited images nearest to the uploaded one, by the cosine distance of their
    feature vectors (taken at the audit's feature layer, with the audit's model)."""
    job = await anyio.to_thread.run_sync(jobs.job, job_id_of(job_id), owner)
    config = AuditConfig.model_validate(job.config)
    path = index_path(FilePath(job.out_dir), config.features.enabled, job.status)
    loaded = state.model(config.model)  # 404 when the service no longer serves it
    one_forward = MethodsPlan(RunPlan((), loaded.default_layer))
    cost = state.admit(loaded, one_forward)
    picture = await deps.read_image(image, settings)
    x = await deps.off_loop(loaded.preprocessing, picture)

    def vector(model: LoadedModel) -> Any:
        return features(model, x, layer=config.features.layer)[0]

    found = await state.run(loaded, each, vector, cost=cost, deadline=deadline)
    index = await anyio.to_thread.run_sync(loaded_index, path)
    nearest = await anyio.to_thread.run_sync(
        lambda: neighbours(index, found, k, jobs.store, job.id)
    )
    return {"neighbors": nearest}


@router.get("/audits/{job_id}/exemplars", response_model=Exemplars, responses=ERRORS)
async def audit_exemplars(job_id: str, jobs: JobsDep, owner: OwnerDep) -> Any:
    """`{layer: {channel: [{name, index, activation, box}, ...]}}`: each channel's audited
    images by its largest activation, best first, with the receptive-field box of that
    activation in the image's pixels (audits run with exemplar layers)."""
    job = await anyio.to_thread.run_sync(jobs.job, job_id_of(job_id), owner)
    path = FilePath(job.out_dir) / EXEMPLARS_FILE
    try:
        data = await anyio.to_thread.run_sync(path.read_bytes)
    except OSError:
        raise JobNotFoundError(
            f"audit job {job.id} has no exemplars (run it with exemplar layers; they are "
            "written when it ends)"
        ) from None
    return json.loads(data)


@router.get(
    "/audits/{job_id}/exemplars/{layer}/{channel}.png",
    response_class=Response,
    responses=image_responses("image/png", "the channel's sheet of crops"),
)
async def audit_exemplar_sheet(
    job_id: str,
    layer: Annotated[str, Path(max_length=200)],
    channel: Annotated[int, Path(ge=0, le=1_000_000)],
    jobs: JobsDep,
    owner: OwnerDep,
) -> Response:
    """One channel's exemplar crops, best first, in a grid."""
    job = await anyio.to_thread.run_sync(jobs.job, job_id_of(job_id), owner)
    config = AuditConfig.model_validate(job.config)
    if layer not in config.features.exemplars:  # only the job's own layers name a file
        raise JobNotFoundError(f"audit job {job.id} has no exemplars of layer {layer!r}")
    try:
        data = await anyio.to_thread.run_sync(
            sheet_path(FilePath(job.out_dir), layer, channel).read_bytes
        )
    except OSError:
        raise JobNotFoundError(f"no exemplar sheet for channel {channel} of {layer!r}") from None
    return Response(data, media_type="image/png")
