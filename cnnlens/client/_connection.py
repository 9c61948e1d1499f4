"""What Client and AsyncClient share: the httpx client they send through, the auth header and
one table of endpoint methods (each built from `_protocol`, sent or awaited by the class)."""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

import httpx

from cnnlens.client import _protocol as protocol

if TYPE_CHECKING:
    from cnnlens.client.async_client import AsyncClient
    from cnnlens.client.sync import Client

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 120.0

Http = TypeVar("Http", httpx.Client, httpx.AsyncClient)
Transport = TypeVar("Transport", httpx.BaseTransport, httpx.AsyncBaseTransport)
T = TypeVar("T")
P = ParamSpec("P")


class Endpoint(Generic[P, T]):
    """A client method from one `_protocol` endpoint: a `Client` sends the call and returns its
    result, an `AsyncClient` awaits it. The method has the endpoint's signature and docstring."""

    def __init__(self, endpoint: Callable[P, protocol.Call[T]]) -> None:
        self.endpoint = endpoint
        self._methods: dict[type, Callable[..., Any]] = {}  # per client class, made once

    @overload
    def __get__(self, client: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(self, client: Client, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: Any, owner: type) -> Callable[..., Any]:
        method = self._methods.get(owner)
        if method is None:
            method = self._methods[owner] = owner.method_for(self.endpoint)  # type: ignore[attr-defined]
        return method if client is None else types.MethodType(method, client)


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
        self._headers = protocol.auth_headers(api_key)

    explain = Endpoint(protocol.explain)
    explain_overlay = Endpoint(protocol.explain_overlay)
    compare = Endpoint(protocol.compare)
    run_method = Endpoint(protocol.run_method)
    adversarial = Endpoint(protocol.adversarial)
    activation_max = Endpoint(protocol.activation_max)
    feature_maps = Endpoint(protocol.feature_maps)
    filters = Endpoint(protocol.filters)
    models = Endpoint(protocol.models)
    model = Endpoint(protocol.model)
    methods = Endpoint(protocol.methods)
    submit_audit = Endpoint(protocol.submit_audit)
    audit = Endpoint(protocol.audit)
    audits = Endpoint(protocol.audits)
    audit_results = Endpoint(protocol.audit_results)
    audit_report = Endpoint(protocol.audit_report)
    neighbors = Endpoint(protocol.neighbors)
    audit_exemplars = Endpoint(protocol.audit_exemplars)
    delete_audit = Endpoint(protocol.delete_audit)
