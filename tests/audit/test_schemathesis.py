"""Requests generated from the OpenAPI schema of the audit routes: never a 5xx, always as
documented (statuses, content types)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cnnlens.models import LoadedModel
from tests.conftest import SCHEMATHESIS_HOST
from tests.pinned import pinned_app, pinned_settings

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

OPERATIONS = [
    ("POST", "/v1/audits"),
    ("GET", "/v1/audits"),
    ("GET", "/v1/audits/{job_id}"),
    ("GET", "/v1/audits/{job_id}/results"),
    ("GET", "/v1/audits/{job_id}/report"),
    ("GET", "/v1/audits/{job_id}/overlays/{index}/{method}.png"),
    ("DELETE", "/v1/audits/{job_id}"),
]


@pytest.fixture(scope="module")
def audit_app(
    default_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FastAPI]:
    data = tmp_path_factory.mktemp("audit-data")
    settings = pinned_settings(
        {"data_dir": str(data), "warmup": False, "allowed_hosts": [SCHEMATHESIS_HOST]}
    )
    app = pinned_app(settings, efficientnet_lite0=default_model)
    with TestClient(app):
        assert app.state.service.wait_ready(60)
        yield app


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_requests_never_get_a_server_error(
    audit_app: FastAPI, method: str, path: str, tmp_path: Path
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", audit_app)
    operation = schema[path][method]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=10, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
    )
    def check(case: Any) -> None:
        response = case.call()
        case.validate_response(
            response, excluded_checks=[schemathesis.checks.positive_data_acceptance]
        )

    check()
