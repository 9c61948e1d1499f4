"""The FastAPI app factory: settings in, app out; models load and warm up in the lifespan."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

import cnnlens
from cnnlens.imageio import limit_opencv_decoding
from cnnlens.methods.cost import Calibration
from cnnlens.models.loaded import LoadedModel
from cnnlens.service.deps import IMAGE_ANSWER_HEADERS, require_api_key
from cnnlens.service.docs import install_offline_docs
from cnnlens.service.errors import install_error_handlers
from cnnlens.service.form_fields import refuse_unknown_form_fields
from cnnlens.service.guide import guide_files
from cnnlens.service.metrics import Metrics
from cnnlens.service.middleware import BodyLimitMiddleware, RequestContextMiddleware
from cnnlens.service.routers import PUBLIC_ROUTERS, V1_ROUTERS
from cnnlens.service.routers.audits import resume_audit_jobs, stop_audit_jobs
from cnnlens.service.routers.web import WEB_DIRECTORY
from cnnlens.service.runtime.state import ServiceState
from cnnlens.service.security import SecurityMiddleware
from cnnlens.service.settings import Settings


def create_app(
    settings: Settings | None = None,
    models: Mapping[str, LoadedModel] | None = None,
    calibrations: Mapping[str, Calibration] | None = None,
) -> FastAPI:
    """Build the app. `models` may hand over already loaded models by configured name
    (tests and embedding); the others are loaded from `settings` at startup. `calibrations`
    fixes a model's measured speed and memory instead of calibrating it at startup."""
    settings = settings or Settings.model_validate({})
    limit_opencv_decoding(settings.limits.max_pixels, settings.limits.max_side)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(settings, metrics, preloaded=models, calibrations=calibrations)
        app.state.service = state
        state.start()  # loads and warms the models on a thread: /readyz says 503 until done
        resume_audit_jobs(app, state)  # audits a previous run left unfinished go on
        try:
            yield
        finally:
            stop_audit_jobs(app)  # between two batches; the next start resumes the job
            state.stop()

    app = FastAPI(
        title="cnnlens",
        version=cnnlens.__version__,
        description="Explains what image CNNs see: heatmaps, adversarial inputs, "
        "activation maximization, feature maps and filters.",
        lifespan=lifespan,
        docs_url=None,  # served offline by install_offline_docs
        redoc_url=None,
    )
    install_offline_docs(app)
    app.state.settings = settings
    install_error_handlers(app)
    for name in PUBLIC_ROUTERS:
        app.include_router(_router(name))
    for name in V1_ROUTERS:
        app.include_router(
            _router(name),
            dependencies=[Depends(require_api_key), Depends(refuse_unknown_form_fields)],
        )
    app.mount("/web", StaticFiles(directory=WEB_DIRECTORY, check_dir=False), name="web")
    app.mount("/guide", guide_files(settings.guide_dir), name="guide")  # the docs site
    # Added last = outermost: the request id and metrics see every answer, 413 included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "X-Request-ID", "Content-Type", "Accept"],
            expose_headers=["X-Request-ID", "Retry-After", *IMAGE_ANSWER_HEADERS],
        )
    # Host and origin checks and the security headers cover every answer, 413 and CORS included.
    app.add_middleware(SecurityMiddleware, settings=settings)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app


def _router(name: str) -> APIRouter:
    """A router module's `router`: an APIRouter, or a function building one per app (routes
    made from a registry as it is when the app is created)."""
    router = importlib.import_module(f"cnnlens.service.routers.{name}").router
    if not isinstance(router, APIRouter):
        router = router()
    assert isinstance(router, APIRouter)
    return router
