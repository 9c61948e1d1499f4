"""GET and HEAD /healthz (alive: always 200), GET /readyz (503 until the models are warm)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from cnnlens.api.models import Health
from cnnlens.service.deps import StateDep
from cnnlens.service.runtime.state import ServiceState

router = APIRouter(tags=["health"])


def _health(state: ServiceState, status: str) -> Health:
    models = {}
    for name in state.settings.model_names:
        if name in state.workers:
            models[name] = "ready"
        else:
            models[name] = "failed" if state.load_error else "loading"
    return Health(status=status, ready=state.ready, models=models, detail=state.load_error)


@router.get("/healthz", response_model=Health)
def healthz(state: StateDep) -> Health:
    return _health(state, "ok")


@router.head("/healthz", include_in_schema=False)
def healthz_head() -> Response:
    """Load balancers probe with HEAD: alive, no body."""
    return Response(status_code=200)


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "models still loading or failed"}},
)
def readyz(state: StateDep) -> JSONResponse:
    health = _health(state, "ready" if state.ready else "not_ready")
    return JSONResponse(
        health.model_dump(),
        status_code=200 if state.ready else 503,
        headers={} if state.ready else {"Retry-After": "1"},
    )
