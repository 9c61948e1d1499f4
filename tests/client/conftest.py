"""Fixtures of the client tests: the real app, in-process and behind a uvicorn server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from cnnlens.client import Client
from cnnlens.models import LoadedModel
from tests.pinned import pinned_app, pinned_settings


def make_app(default_model: LoadedModel, **settings: object) -> FastAPI:
    """The real app serving the session's default model (no reload, no warm-up)."""
    return pinned_app(pinned_settings({"warmup": False, **settings}), default_model)


@pytest.fixture(scope="package")
def client(default_model: LoadedModel) -> Iterator[Client]:
    """Client talking to the app in-process (ASGI, lifespan started)."""
    with Client.for_app(make_app(default_model)) as in_process:
        wait_ready(in_process)
        yield in_process


def wait_ready(client: Client, timeout: float = 30.0) -> None:
    """The models load on a thread after startup: wait for /readyz."""
    deadline = time.monotonic() + timeout
    while not client.health().ready:
        if time.monotonic() > deadline:
            raise TimeoutError("the in-process app was not ready in time")
        time.sleep(0.02)
