"""GET /metrics: Prometheus text exposition of the app's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Response

from cnnlens.service.deps import StateDep

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(state: StateDep) -> Response:
    for name, worker in state.workers.items():
        state.metrics.queue_depth.labels(name).set(worker.depth)
    return Response(state.metrics.exposition(), media_type=state.metrics.content_type)
