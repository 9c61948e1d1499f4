"""What Client and AsyncClient share: the httpx client they send through and the auth header."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import httpx

from cnnlens.client._protocol import auth_headers

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 120.0

Http = TypeVar("Http", httpx.Client, httpx.AsyncClient)
Transport = TypeVar("Transport", httpx.BaseTransport, httpx.AsyncBaseTransport)


class Connection(Generic[Http, Transport]):
    """Holds the httpx client (made here unless one is handed over) and the auth headers.

    Args:
        base_url: the service's root, e.g. "http://127.0.0.1:8000".
        api_key: sent as the `X-API-Key` header when given.
        timeout: seconds per request.
        transport: an httpx transport of the client's kind (sync or async), e.g.
            `httpx.ASGITransport(app)` for an in-process app.
        http_client: an httpx client to use instead (e.g. starlette's TestClient for an
            in-process app); closing this client closes it only if it was made here.
    """

    http_class: Callable[..., Http]  # httpx.Client or httpx.AsyncClient

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        transport: Transport | None = None,
        http_client: Http | None = None,
    ) -> None:
        self._http: Http = http_client or self.http_class(
            base_url=base_url, timeout=timeout, transport=transport
        )
        self._owns_client = http_client is None  # closed with this client only if made here
        self._headers = auth_headers(api_key)
