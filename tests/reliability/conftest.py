"""A real HTTP server (uvicorn on a loopback port, in a thread) around the session's model.

The reliability tests talk to it over TCP, as clients do: hostile multipart bodies go
through the same parser, a client can really disconnect, and `count_hooks` can still be
read on the very module the server runs.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from cnnlens.models import LoadedModel
from cnnlens.models.hooks import count_hooks
from cnnlens.service.runtime.state import ServiceState
from cnnlens.service.runtime.worker import ModelWorker
from tests.pinned import pinned_app, pinned_settings

SERVER_LIMITS = {"request_deadline_s": 30.0, "queue_size": 16}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    model: LoadedModel

    @property
    def state(self) -> ServiceState:
        state = self.app.state.service
        assert isinstance(state, ServiceState)
        return state

    @property
    def worker(self) -> ModelWorker:
        return self.state.worker(self.model.name)

    def wait_idle(self, timeout: float = 20.0) -> float:
        """Seconds until the model's worker has nothing queued or running."""
        started = time.monotonic()
        while self.worker.busy or self.worker.depth:
            assert time.monotonic() - started < timeout, "the worker never became idle"
            time.sleep(0.01)
        return time.monotonic() - started

    def hooks(self) -> int:
        return count_hooks(self.model.module)


def start_server(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="cnnlens-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server, thread, url
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the test server never became ready")


@pytest.fixture(scope="session")
def live_server(
    default_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = str(tmp_path_factory.mktemp("service-data"))
    settings = pinned_settings({"warmup": False, "limits": SERVER_LIMITS, "data_dir": data_dir})
    app = pinned_app(settings, default_model)
    server, thread, url = start_server(app)
    yield LiveServer(url, app, default_model)
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        yield client
