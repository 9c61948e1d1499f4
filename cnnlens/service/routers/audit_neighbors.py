"""Image retrieval over a finished audit: POST /v1/audits/{id}/neighbors (multipart `image`,
`k`) -> the audited images nearest to the upload in the audit's feature space."""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, UploadFile

from cnnlens.api.models import NeighboursResponse
from cnnlens.audit.config import AuditConfig
from cnnlens.features.retrieval import MAX_K, index_path, loaded_index, neighbours
from cnnlens.features.vectors import features
from cnnlens.models.loaded import LoadedModel
from cnnlens.service import deps
from cnnlens.service.budget import methods_plan
from cnnlens.service.engine import each
from cnnlens.service.routers.audits import ERRORS, JobsDep, OwnerDep, job_id_of

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
    cost = state.admit(loaded.name, methods_plan([]))  # one forward
    picture = await deps.read_image(image, settings)
    x = await deps.off_loop(loaded.preprocessing, picture)

    def vector(model: LoadedModel) -> Any:
        return features(model, x, layer=config.features.layer)[0]

    found = await state.run(loaded.name, each, vector, cost=cost, deadline=deadline)
    index = await anyio.to_thread.run_sync(loaded_index, path)
    nearest = await anyio.to_thread.run_sync(
        lambda: neighbours(index, found, k, jobs.store, job.id)
    )
    return {"neighbors": nearest}
