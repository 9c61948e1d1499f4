"""The real app serving the session's default model, for the compare route's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cnnlens.models import LoadedModel
from tests.pinned import pinned_app, pinned_settings


@pytest.fixture(scope="package")
def client(default_model: LoadedModel) -> Iterator[TestClient]:
    app = pinned_app(pinned_settings({"warmup": False}), default_model)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert app.state.service.wait_ready(60), app.state.service.load_error
        yield test_client
