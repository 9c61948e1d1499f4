"""Connection limits of `cnnlens serve`, on 127.0.0.1: slow headers, slow bodies, idle
keep-alive connections and the connection cap. Short timeouts, generous margins."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from cnnlens.service.server import uvicorn_config
from cnnlens.service.settings import Limits

TIMEOUT_S = 1.5
MARGIN_S = 4.0  # a busy machine may run the event loop late, never this late


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal app: reads the whole body, answers its length."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def running(limits: Limits) -> Iterator[int]:
    """The app under uvicorn with the service's connection settings; yields the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(echo_length, "127.0.0.1", port, limits))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S + MARGIN_S)
    return connection


def read_response(connection: socket.socket) -> bytes:
    """One whole response (headers and its content-length body)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(4096)
        assert chunk, f"closed after {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += connection.recv(4096)
    return head + b"\r\n\r\n" + body


def closed_after(connection: socket.socket, drip: bytes, every_s: float) -> tuple[float, bytes]:
    """Send `drip` every `every_s` until the server closes; (seconds until closed, what the
    server sent). At most 40 drips."""
    started = time.monotonic()
    received = b""
    connection.settimeout(every_s)
    for _ in range(40):
        try:
            chunk = connection.recv(4096)
        except TimeoutError:
            try:
                connection.sendall(drip)
            except OSError:  # reset: closed
                return time.monotonic() - started, received
            continue
        except OSError:
            return time.monotonic() - started, received
        if not chunk:
            return time.monotonic() - started, received
        received += chunk
    raise AssertionError("the server kept the connection open")


def short_limits(**changes: Any) -> Limits:
    values: dict[str, Any] = {
        "header_timeout_s": TIMEOUT_S,
        "body_idle_timeout_s": TIMEOUT_S,
        "keep_alive_timeout_s": 1,
    }
    return Limits(**{**values, **changes})


def test_a_slow_header_drip_is_closed_at_the_header_deadline() -> None:
    """Slowloris: a header line every 0.4 s never completes the request."""
    with running(short_limits()) as port, connect(port) as connection:
        connection.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n")
        elapsed, answer = closed_after(connection, b"X-Drip: 1\r\n", every_s=0.4)
    assert TIMEOUT_S * 0.9 <= elapsed <= TIMEOUT_S + MARGIN_S
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in answer


def test_a_connection_that_sends_nothing_is_closed() -> None:
    with running(short_limits()) as port, connect(port) as connection:
        started = time.monotonic()
        connection.settimeout(TIMEOUT_S + MARGIN_S)
        answer = connection.recv(4096)
        assert connection.recv(4096) == b""
    assert time.monotonic() - started <= TIMEOUT_S + MARGIN_S
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_body_that_stops_coming_is_closed_at_the_idle_timeout() -> None:
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    with running(short_limits()) as port, connect(port) as connection:
        connection.sendall(head + b"x" * 1000)
        started = time.monotonic()
        connection.settimeout(TIMEOUT_S + MARGIN_S)
        answer = connection.recv(4096)
        elapsed = time.monotonic() - started
    assert TIMEOUT_S * 0.9 <= elapsed <= TIMEOUT_S + MARGIN_S
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_body_that_keeps_coming_is_read_to_the_end() -> None:
    """Chunks every 0.5 s (below the 1.5 s idle timeout) for 3 s: served, not cut."""
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 6000\r\n\r\n"
    with running(short_limits()) as port, connect(port) as connection:
        connection.sendall(head)
        for _ in range(6):
            time.sleep(0.5)
            connection.sendall(b"x" * 1000)
        connection.settimeout(TIMEOUT_S + MARGIN_S)
        answer = read_response(connection)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"6000")


def test_an_idle_keep_alive_connection_is_closed() -> None:
    with running(short_limits()) as port, connect(port) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.settimeout(TIMEOUT_S + MARGIN_S)
        assert read_response(connection).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert connection.recv(4096) == b""  # keep-alive 1 s, then closed
    assert time.monotonic() - started <= 1 + MARGIN_S


def test_the_connection_cap_answers_503_beyond_the_limit() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    limits = short_limits(max_connections=3, header_timeout_s=30.0)
    with running(limits) as port:
        holders = [connect(port) for _ in range(2)]
        time.sleep(0.3)  # the server has accepted them
        with connect(port) as third:
            third.sendall(request)
            assert third.recv(4096).startswith(b"HTTP/1.1 200 ")  # 3 open: within the cap
        holders.append(connect(port))
        time.sleep(0.3)
        with connect(port) as fourth:
            fourth.sendall(request)
            answer = fourth.recv(4096)
        for holder in holders:
            holder.close()
    assert answer.startswith(b"HTTP/1.1 503 ")


def test_a_request_head_beyond_max_header_bytes_is_refused() -> None:
    """h11 buffers at most max_header_bytes of an unfinished request head."""
    limits = short_limits(max_header_bytes=2048)
    with running(limits) as port, connect(port) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096)
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")
