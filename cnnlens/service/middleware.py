"""ASGI middleware: request ids, access logs and metrics; the request body size limit."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cnnlens.service.errors import error_response
from cnnlens.service.logs import request_id_var
from cnnlens.service.metrics import Metrics

logger = logging.getLogger("cnnlens.service.access")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_HEADER = "X-Request-ID"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


# Logged and counted for a request whose client left before the answer (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


class RequestContextMiddleware:
    """Gives each request an id (the client's X-Request-ID when sane), echoes it in the
    response, logs one JSON line per request and counts it in the metrics by route template.

    Once the body is read it also watches the connection: when the client disconnects
    before its answer, the request's task is cancelled, so its queued job is dropped and a
    running batch nobody waits for is stopped (see worker.py) instead of finishing.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, b"x-request-id")
        request_id = offered if offered and _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
        started = time.monotonic()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started"] = started
        token = request_id_var.set(request_id)
        status = 500
        watch = _DisconnectWatch(receive)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                watch.answered = True
            await send(message)

        try:
            await watch.run(self.app(scope, watch.receive, send_with_id))
        finally:
            if watch.client_left:
                status = CLIENT_CLOSED_REQUEST
            elapsed = time.monotonic() - started
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(elapsed)
            logger.info(
                "request",
                extra={
                    "method": method,
                    "path": str(scope.get("path", ""))[:200],
                    "route": route,
                    "status": status,
                    "elapsed_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


class _DisconnectWatch:
    """Cancels the request's task when its client disconnects before the answer is sent.

    The app reads the body through `receive`; after the last body chunk this watch is the
    only reader of the server's receive channel (the app's later reads wait for the
    disconnect it saw), so the two never compete for a message.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._body_read = asyncio.Event()
        self._disconnected = asyncio.Event()
        self.answered = False
        self.client_left = False
        self._finished = False

    async def receive(self) -> Message:
        if self._body_read.is_set():
            await self._disconnected.wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._disconnected.set()
        elif not message.get("more_body", False):
            self._body_read.set()
        return message

    async def run(self, app: Awaitable[None]) -> None:
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.create_task(self._watch(task))
        try:
            await app
        except asyncio.CancelledError:
            if not self.client_left:
                raise  # a shutdown or a caller's cancellation: not ours to swallow
            task.uncancel()  # ours: the client left, there is nobody to answer
        finally:
            self._finished = True
            watcher.cancel()

    async def _watch(self, task: asyncio.Task[Any]) -> None:
        await self._body_read.wait()
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._disconnected.set()
        if not self.answered and not self._finished:
            self.client_left = True
            task.cancel()


def _route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label values), "/web/{path}" for a file of
    a mounted static directory, or "unmatched"."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    if "app_root_path" in scope:  # set by a Mount's match: root_path grew by the mount's path
        mount = str(scope.get("root_path", ""))[len(str(scope["app_root_path"])) :]
        if mount:
            return f"{mount}/{{path}}"
    return "unmatched"


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`: at once from Content-Length, or as soon as the
    streamed body passes the limit (chunked uploads), whatever the app was doing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._declared_refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._limited(scope, receive, send)

    def _declared_refusal(self, scope: Scope) -> ASGIApp | None:
        """400 for a Content-Length that is not a number, 413 for one over the limit."""
        declared = _header(scope, b"content-length")
        if declared is None:
            return None
        if not (declared.strip().isascii() and declared.strip().isdigit()):
            return error_response(400, "bad_request", "invalid Content-Length")
        return self._too_large if int(declared) > self.max_bytes else None

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, with its body cut off (and answered 413) once it passes the limit."""
        received = 0
        exceeded = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded and not response_started:
                return  # the app's answer to a cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or response_started:
                raise
        if exceeded and not response_started:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is larger than {self.max_bytes} bytes"
        await error_response(413, "payload_too_large", message, {"Connection": "close"})(
            scope, receive, send
        )


class _BodyTooLarge(Exception):
    """Raised inside the app's body reading; turned into the 413 by BodyLimitMiddleware."""
