"""Startup, readiness, back-pressure, deadlines, API keys and settings, each on its own app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

import cnnlens.service.runtime.state as state_module
from cnnlens.models import LoadedModel
from cnnlens.models.hooks import count_hooks
from cnnlens.service import Settings, load_settings
from cnnlens.service.settings import hash_api_key
from tests.pinned import pinned_app, pinned_settings
from tests.service.conftest import MODEL, assert_error, service_settings, upload


@contextmanager
def serving(settings: Settings, model: LoadedModel, wait: bool = True) -> Iterator[TestClient]:
    app = pinned_app(settings, model)
    with TestClient(app, raise_server_exceptions=False) as client:
        if wait:
            assert app.state.service.wait_ready(60), app.state.service.load_error
        yield client


def _app(client: TestClient) -> FastAPI:
    app = client.app
    assert isinstance(app, FastAPI)
    return app


def test_readyz_is_503_until_the_model_is_warm(
    default_model: LoadedModel, small_png: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    warm_up = state_module.warm_up

    def held_warm_up(loaded: LoadedModel) -> None:
        assert gate.wait(30)
        warm_up(loaded)

    monkeypatch.setattr(state_module, "warm_up", held_warm_up)
    with serving(service_settings(), default_model, wait=False) as client:
        loading = client.get("/readyz")
        assert loading.status_code == 503
        assert loading.headers["retry-after"] == "1"
        assert loading.json()["models"] == {MODEL: "loading"}
        alive = client.get("/healthz")
        assert alive.status_code == 200
        assert alive.json()["ready"] is False
        refused = client.post("/v1/explain", files=upload(small_png))
        assert_error(refused, 503, "not_ready")
        assert refused.headers["retry-after"] == "1"
        assert_error(client.get("/v1/models"), 503, "not_ready")
        gate.set()
        assert _app(client).state.service.wait_ready(60)
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/explain", files=upload(small_png)).status_code == 200


def test_a_model_that_fails_to_load_keeps_readyz_503_and_healthz_up() -> None:
    settings = pinned_settings(
        {
            "models": [{"name": MODEL, "weights": "/nonexistent/weights.pt", "sha256": "0" * 64}],
            "warmup": False,
        }
    )
    app = pinned_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        state = app.state.service
        deadline = time.monotonic() + 30
        while state.load_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "not found" in ready.json()["detail"]
        assert ready.json()["models"] == {MODEL: "failed"}
        assert client.get("/healthz").status_code == 200
        assert_error(client.get(f"/v1/models/{MODEL}"), 503, "not_ready")


def _hold(model: LoadedModel, payloads: Sequence[Any]) -> list[None]:
    started, gate = payloads[0]
    started.set()
    assert gate.wait(30)
    return [None] * len(payloads)


def test_a_full_queue_answers_503_with_retry_after(
    default_model: LoadedModel, small_png: bytes
) -> None:
    # No express lane: a light request would be answered there while the worker is held.
    settings = service_settings(
        queue_size=1, max_batch=1, retry_after_s=3, express_max_forward_passes=0
    )
    with serving(settings, default_model) as client:
        worker = _app(client).state.service.worker(MODEL)
        started, gate = threading.Event(), threading.Event()
        running = worker.submit(_hold, (started, gate))
        assert started.wait(10)
        waiting = worker.submit(_hold, (threading.Event(), gate))  # the one free slot
        try:
            full = client.post("/v1/explain", files=upload(small_png))
            assert_error(full, 503, "queue_full")
            assert full.headers["retry-after"] == "3"
        finally:
            gate.set()
        assert running.future.result(10) is None and waiting.future.result(10) is None
        assert client.post("/v1/explain", files=upload(small_png)).status_code == 200
        metrics = client.get("/metrics").text
        assert f'cnnlens_rejected_jobs_total{{model="{MODEL}",reason="queue_full"}} 1.0' in metrics


def test_past_the_deadline_is_504_and_the_worker_is_freed(default_model: LoadedModel) -> None:
    settings = service_settings(request_deadline_s=0.5)
    with serving(settings, default_model) as client:
        worker = _app(client).state.service.worker(MODEL)
        started = time.monotonic()
        # In the work budget (600 steps, near its limit), far past the 0.5 s deadline.
        late = client.post("/v1/activation-max", data={"target": "1", "params": '{"steps": 600}'})
        assert_error(late, 504, "deadline_exceeded")
        # The abandoned batch stops between two torch operations instead of running 600 steps.
        while worker.busy or worker.depth:
            assert time.monotonic() - started < 20
            time.sleep(0.01)
        assert count_hooks(default_model.module) == 0
        assert client.get("/v1/models").status_code == 200
        next_job = worker.submit(lambda model, payloads: [len(payloads)], None)
        assert next_job.future.result(10) == 1


def test_a_batch_stopped_inside_no_grad_leaves_the_worker_able_to_differentiate(
    default_model: LoadedModel, small_png: bytes
) -> None:
    """Score-CAM's channel loop runs under no_grad: the stop must not skip restoring it."""
    with serving(service_settings(request_deadline_s=0.5), default_model) as client:
        worker = _app(client).state.service.worker(MODEL)
        late = client.post("/v1/explain", files=upload(small_png), data={"method": "score_cam"})
        assert_error(late, 504, "deadline_exceeded")
        grad_mode = worker.submit(lambda model, payloads: [torch.is_grad_enabled()], None)
        assert grad_mode.future.result(30) is True
        assert count_hooks(default_model.module) == 0


def test_api_keys_when_configured(default_model: LoadedModel) -> None:
    assert Settings.model_validate({}).auth_enabled is False  # off by default
    settings = pinned_settings({"api_key_sha256": [hash_api_key("s3cret")], "warmup": False})
    with serving(settings, default_model) as client:
        missing = client.get("/v1/models")
        assert_error(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"] == "X-API-Key"
        assert_error(client.get("/v1/models", headers={"X-API-Key": "guess"}), 401, "unauthorized")
        assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


def test_models_and_limits_come_from_file_and_environment(tmp_path: Any) -> None:
    config = tmp_path / "cnnlens.toml"
    config.write_text(
        f'default_model = "{MODEL}"\napi_keys = ["from-file"]\n'
        f'[[models]]\nname = "{MODEL}"\nweights = "default"\n'
        "[limits]\nmax_batch = 4\n"
    )
    settings = load_settings(
        config, environ={"CNNLENS_MAX_BATCH_DELAY_MS": "7", "CNNLENS_API_KEYS": "from-env"}
    )
    assert settings.model_names == [MODEL]
    assert settings.limits.max_batch == 4
    assert settings.limits.max_batch_delay_ms == 7
    assert set(settings.api_key_sha256) == {hash_api_key("from-file"), hash_api_key("from-env")}
