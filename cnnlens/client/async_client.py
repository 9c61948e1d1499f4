"""AsyncClient: the asyncio Python client of the cnnlens REST service."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from cnnlens.client import _protocol as protocol
from cnnlens.client import results
from cnnlens.client._connection import Connection

T = TypeVar("T")
P = ParamSpec("P")


def _awaited(
    endpoint: Callable[P, protocol.Call[T]],
) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    """An AsyncClient method that sends what `endpoint` describes, awaited."""

    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(endpoint(*args, **kwargs))

    return protocol.named_like(method, endpoint)


class AsyncClient(Connection[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The asyncio twin of `Client`: the same methods, awaited (arguments: `Connection`).

    With `transport=httpx.ASGITransport(app)` for an in-process app, start the app's lifespan
    yourself, or use `Client.for_app`.
    """

    http_class = httpx.AsyncClient
    method_for = staticmethod(_awaited)  # how an endpoint of `Connection` becomes a method here

    async def aclose(self) -> None:
        """Close the connection pool if this client owns it."""
        if self._owns_client:
            await self._http.aclose()
            self._owns_client = False

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _run(self, call: protocol.Call[T]) -> T:
        """Send one request and read its answer (the only I/O of this class)."""
        with protocol.transport_errors():
            response = await self._http.request(**call.request(self._headers))
        return call.result(response)

    async def health(self) -> results.Health:
        """GET /healthz and /readyz (a 503 from /readyz means "not ready", not an error)."""
        alive = await self._run(protocol.alive())
        return protocol.health(alive, await self._run(protocol.ready()))
