"""Client: the blocking Python client of the cnnlens REST service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import httpx

from cnnlens.client import _protocol as protocol
from cnnlens.client import results
from cnnlens.client._connection import Connection

T = TypeVar("T")
P = ParamSpec("P")


def _sent(endpoint: Callable[P, protocol.Call[T]]) -> Callable[Concatenate[Client, P], T]:
    """A Client method that sends what `endpoint` describes (its signature and docstring)."""

    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(endpoint(*args, **kwargs))

    return protocol.named_like(method, endpoint)


class Client(Connection[httpx.Client, httpx.BaseTransport]):
    """Talks to a cnnlens service over HTTP (arguments: `Connection`).

    Every method raises `CnnlensAPIError` (status, code, message) on an error answer and
    `CnnlensConnectionError` when no answer comes.
    """

    http_class = httpx.Client
    method_for = staticmethod(_sent)  # how an endpoint of `Connection` becomes a method here
    _stop_app: Callable[[], object] | None = None  # an in-process app's lifespan (`for_app`)

    @classmethod
    def for_app(cls, app: Any, api_key: str | None = None) -> Client:
        """A client of an in-process ASGI app, with its lifespan started (for tests)."""
        from starlette.testclient import TestClient

        test_client = TestClient(app, base_url="http://localhost")  # a Host the service answers
        test_client.__enter__()  # runs the lifespan: models loaded
        client = cls(api_key=api_key, http_client=cast(httpx.Client, test_client))
        client._stop_app = lambda: test_client.__exit__(None, None, None)
        return client

    def close(self) -> None:
        """Close the connection pool (or stop the in-process app) if this client owns it."""
        if self._owns_client:
            self._http.close()
            self._owns_client = False
        if self._stop_app is not None:
            self._stop_app()
            self._stop_app = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, call: protocol.Call[T]) -> T:
        """Send one request and read its answer (the only I/O of this class)."""
        with protocol.transport_errors():
            response = self._http.request(**call.request(self._headers))
        return call.result(response)

    def health(self) -> results.Health:
        """GET /healthz and /readyz (a 503 from /readyz means "not ready", not an error)."""
        alive = self._run(protocol.alive())
        return protocol.health(alive, self._run(protocol.ready()))
