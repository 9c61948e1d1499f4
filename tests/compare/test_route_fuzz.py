"""Requests generated from the OpenAPI schema of POST /v1/compare: never a 5xx."""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from starlette.types import ASGIApp, Receive, Scope, Send


class _WithoutLifespan:
    """The running app, without a second lifespan (the TestClient already started it)."""

    def __init__(self, app: ASGIApp) -> None:
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


def test_generated_compare_requests_never_get_a_server_error(client: TestClient) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", _WithoutLifespan(client.app))
    operation = schema["/v1/compare"]["POST"]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call()
        # random bytes are no photo: a 4xx for them is right (positive_data_acceptance off)
        case.validate_response(
            response, excluded_checks=[schemathesis.checks.positive_data_acceptance]
        )

    check()
