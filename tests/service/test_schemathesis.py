"""Requests generated from the app's own OpenAPI schema: never a 5xx, always as documented."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from starlette.types import Receive, Scope, Send

# (method, path) of every documented operation; a test below checks this list is complete.
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{name}"),
    ("GET", "/v1/methods"),
    ("POST", "/v1/explain"),
    ("POST", "/v1/adversarial"),
    ("POST", "/v1/activation-max"),
    ("POST", "/v1/feature-maps"),
    ("POST", "/v1/filters"),
    ("POST", "/v1/compare"),
]


class _SharedApp:
    """The suite's running app without a second lifespan (one model worker, not two)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def api_schema(client: TestClient, service_app: FastAPI) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", _SharedApp(service_app))


def test_the_schema_documents_these_operations(api_schema: Any) -> None:
    documented = {
        tuple(result.ok().label.split(" ", 1)) for result in api_schema.get_all_operations()
    }
    assert set(OPERATIONS) <= documented


# schemathesis' lazy pytest loader does not run under pytest 9 (it reads a private node
# attribute), so each operation's hypothesis strategy is driven here directly.
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_requests_never_get_a_server_error(
    api_schema: Any, method: str, path: str
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,  # the same requests every run: a failure here is reproducible
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call()
        # Every built-in check (no 5xx, documented status codes, content types, response
        # schemas, invalid data refused) but one: a schema cannot say "a decodable photo",
        # so schema-valid random bytes are rightly refused with a 4xx.
        case.validate_response(
            response, excluded_checks=[schemathesis.checks.positive_data_acceptance]
        )

    check()
