"""Budgets on the service side: from the calibration, in GET /v1/models/{name}, ordering the
queue, and stopping the rendering of an answer nobody waits for."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

import cnnlens.api.bodies as bodies
from cnnlens.methods.run import plan_run
from cnnlens.models import LoadedModel
from cnnlens.service.deps import render_until
from cnnlens.service.errors import DeadlineExceededError
from cnnlens.service.handlers.explain import (
    ExplainInput,
    render_explain_response,
    run_explain_batch,
)
from cnnlens.service.runtime.abort import AbortSignal
from cnnlens.service.runtime.worker import ModelWorker
from cnnlens.service.settings import Limits
from tests.pinned import PINNED_CALIBRATION, PINNED_LIMITS, pinned_app, pinned_settings
from tests.service.conftest import MODEL


def test_the_model_detail_shows_the_configured_budget(client: TestClient) -> None:
    budget = client.get(f"/v1/models/{MODEL}").json()["budget"]
    assert budget == {
        "forward_passes": PINNED_LIMITS["budget_forward_passes"],
        "memory_bytes": PINNED_LIMITS["budget_memory_bytes"],
        "forward_ms": pytest.approx(PINNED_CALIBRATION.forward_s * 1000),
        "backward_ms": pytest.approx(PINNED_CALIBRATION.backward_s * 1000),
        "device": "cpu",
        "source": "configured",
    }


def test_without_a_configured_budget_it_follows_the_deadline_at_the_calibrated_speed(
    default_model: LoadedModel,
) -> None:
    settings = pinned_settings(
        {"warmup": False},
        budget_forward_passes=None,
        request_deadline_s=20.0,
        budget_deadline_share=0.25,
    )
    app = pinned_app(settings, default_model)
    with TestClient(app, raise_server_exceptions=False) as http:
        assert app.state.service.wait_ready(60), app.state.service.load_error
        budget = http.get(f"/v1/models/{MODEL}").json()["budget"]
        # 0.25 x 20 s at 25 ms a forward: 200 forward passes.
        assert budget["forward_passes"] == pytest.approx(200.0)
        assert budget["source"] == "calibrated"
        # So a Score-CAM over all 1280 channels is refused, and 100 fit.
        answer = http.post(
            "/v1/explain",
            data={"method": "score_cam", "params": '{"score_cam": {"channels": "all"}}'},
            files={"image": ("p.png", _png(), "image/png")},
        )
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "over_budget"
        assert "channels" in answer.json()["error"]["message"]


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 80, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def _recording(order: list[str], name: str) -> Callable[[LoadedModel, Sequence[Any]], list[None]]:
    def run(model: LoadedModel, payloads: Sequence[Any]) -> list[None]:
        order.append(name)
        return [None] * len(payloads)

    return run


def _execution_order(
    model: LoadedModel, jobs: list[tuple[str, float | None]], **limits: Any
) -> list[str]:
    """The order in which `jobs` (name, cost) run when all of them are submitted while the
    worker is held by a first job, then released."""
    worker = ModelWorker(model, Limits(max_batch=1, **limits))
    worker.start()
    started, gate = threading.Event(), threading.Event()
    order: list[str] = []

    def hold(model: LoadedModel, payloads: Sequence[Any]) -> list[None]:
        started.set()
        gate.wait(30)
        return [None] * len(payloads)

    try:
        worker.submit(hold, None, cost=0)
        assert started.wait(30)
        submitted = [worker.submit(_recording(order, name), None, cost=c) for name, c in jobs]
        gate.set()
        for job in submitted:
            job.future.result(30)
    finally:
        gate.set()
        worker.stop()
    return order


def test_the_lightest_waiting_job_runs_first(default_model: LoadedModel) -> None:
    jobs = [("heavy", 900.0), ("light", 2.0), ("unknown", None), ("mid", 60.0), ("light too", 2.0)]
    # equal costs keep their arrival order; an unknown cost waits for every known one
    assert _execution_order(default_model, jobs) == [
        "light",
        "light too",
        "mid",
        "heavy",
        "unknown",
    ]


def test_a_heavy_job_is_passed_over_a_bounded_number_of_times(
    default_model: LoadedModel,
) -> None:
    jobs: list[tuple[str, float | None]] = [("heavy", 1000.0)]
    jobs += [(f"light{i}", 1.0) for i in range(4)]
    order = _execution_order(default_model, jobs, queue_max_passes=2)
    assert order == ["light0", "light1", "heavy", "light2", "light3"]


@pytest.fixture(scope="module")
def eight_targets(default_model: LoadedModel, chelsea: Image.Image) -> Any:
    plan = plan_run(default_model, [("grad_cam", {})])
    x = default_model.preprocessing(chelsea)
    (rows,) = run_explain_batch(default_model, [ExplainInput(plan, x, tuple(range(8)))])
    return rows


def test_rendering_stops_between_explanations_once_aborted(
    default_model: LoadedModel,
    chelsea: Image.Image,
    eight_targets: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    abort = AbortSignal()
    encoded: list[str] = []
    encode = bodies.explanation_body

    def counting(*args: Any, **kwargs: Any) -> Any:
        encoded.append("one")
        if len(encoded) == 2:
            abort.cancel()  # the client left while the second map was being encoded
        return encode(*args, **kwargs)

    monkeypatch.setattr(bodies, "explanation_body", counting)
    with pytest.raises(DeadlineExceededError):
        render_explain_response(
            default_model, chelsea, eight_targets, ["grad_cam"], ("heatmap",), 0.0, abort
        )
    assert len(encoded) == 2  # of 8

    whole = render_explain_response(
        default_model, chelsea, eight_targets, ["grad_cam"], ("heatmap",), 0.0, AbortSignal()
    )
    assert len(whole.explanations) == 8 and len(encoded) == 10


def test_a_cancelled_render_frees_its_thread() -> None:
    """The request's task is cancelled (its client left): the thread stops at its next check
    instead of rendering the 500 remaining items."""
    rendered: list[int] = []
    finished = threading.Event()

    def work(abort: AbortSignal) -> int:
        try:
            for item in abort.each(range(500)):
                time.sleep(0.01)
                rendered.append(item)
            return len(rendered)
        finally:
            finished.set()

    async def cancel_after_three() -> int:
        task = asyncio.ensure_future(render_until(time.monotonic() + 600, work))
        while len(rendered) < 3:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(rendered)

    at_cancel = asyncio.run(cancel_after_three())
    assert finished.wait(30)
    assert len(rendered) <= at_cancel + 1 < 500


def test_a_render_past_its_deadline_stops_at_its_next_torch_operation() -> None:
    calls: list[int] = []

    def work(abort: AbortSignal) -> None:
        for _ in range(100):
            calls.append(1)
            torch.ones(4).sum()  # raises once the deadline has passed

    with pytest.raises(DeadlineExceededError):
        asyncio.run(render_until(time.monotonic() - 1, work))
    assert len(calls) == 1


def test_a_light_request_is_answered_while_a_heavy_one_holds_the_worker(
    service_app: Any, client: TestClient, small_png: bytes
) -> None:
    """The heavy job never finishes on its own here: only the express lane can answer."""
    state = service_app.state.service
    started, gate = threading.Event(), threading.Event()

    def hold(model: LoadedModel, payloads: Sequence[Any]) -> list[None]:
        started.set()
        gate.wait(60)
        return [None] * len(payloads)

    heavy = state.submit(MODEL, hold, None, cost=900.0)
    try:
        assert started.wait(30)
        light = client.post("/v1/explain", files={"image": ("p.png", small_png, "image/png")})
        assert light.status_code == 200, light.text[:300]
        waiting = state.submit(MODEL, _recording([], "heavy too"), None, cost=100.0)
        assert state.worker(MODEL).depth == 1  # a heavy job waits its turn on the worker
    finally:
        gate.set()
    assert heavy.future.result(30) is None
    assert waiting.future.result(30) is None
