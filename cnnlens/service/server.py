"""Running the service: `cnnlens serve` and `python -m cnnlens.service` both call `serve`.

Every configured model is loaded and its weights checked before the port is bound: a
missing, corrupted or mismatched weights file ends the process with a clear error and a
non-zero exit status, never a service that answers /healthz but can never be ready.
SIGTERM / SIGINT (uvicorn's handling): the listening socket closes at once (new
connections are refused), requests in flight finish (up to `DRAIN_TIMEOUT_S`), then the
models' workers stop and the process exits 0.

Connections are bounded by `[limits]`: uvicorn closes idle keep-alive connections and
answers 503 beyond `max_connections`; uvicorn alone never times out a request still being
read, so the HTTP protocol here closes one whose headers take longer than
`header_timeout_s` (a slow header drip included) or whose body pauses longer than
`body_idle_timeout_s`, with a 408 when no response has started.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlens.errors import CnnlensError, WeightsError
from cnnlens.heap import reuse_heap
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.weights import sha256_of_file
from cnnlens.service.app import create_app
from cnnlens.service.logs import configure_logging
from cnnlens.service.settings import Limits, ModelConfig, Settings, load_settings

logger = logging.getLogger("cnnlens.service")

DRAIN_TIMEOUT_S = 30


def load_configured_models(settings: Settings) -> dict[str, LoadedModel]:
    """Every model of the configuration, loaded and verified; raises WeightsError et al."""
    return {config.name: load_configured_model(config, settings) for config in settings.models}


def load_configured_model(config: ModelConfig, settings: Settings) -> LoadedModel:
    """One configured model; a weights file's sha256 is checked before the file is parsed."""
    if config.sha256 is not None and config.weights not in ("default", "none"):
        path = Path(config.weights)
        if not path.is_file():
            raise WeightsError(f"weights file of {config.name!r} not found: {path}")
        actual = sha256_of_file(path)
        if actual != config.sha256:
            raise WeightsError(
                f"weights file {path} of {config.name!r} has sha256 {actual}, "
                f"the configuration expects {config.sha256}"
            )
    try:
        loaded = config.load(config.device or settings.device)
    except WeightsError as error:
        raise WeightsError(
            f"model {config.name!r} with weights {config.weights}: {error.message}"
        ) from error
    if config.sha256 is not None and loaded.weights_sha256 != config.sha256:
        raise WeightsError(
            f"weights of {config.name!r} have sha256 {loaded.weights_sha256}, "
            f"the configuration expects {config.sha256}"
        )
    return loaded


def serve(host: str = "127.0.0.1", port: int = 8000, config: Path | None = None) -> None:
    """Load settings and every model (errors raise before the port is bound), run uvicorn."""
    reuse_heap()
    settings = load_settings(config)
    configure_logging(settings.log_level)
    models = load_configured_models(settings)
    logger.info("models loaded", extra={"models": ",".join(models)})
    if not settings.auth_enabled and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "listening beyond this machine without API keys: anyone who can reach "
            f"{host}:{port} can use the service; set api_keys or CNNLENS_API_KEYS. Only the "
            "Host names 127.0.0.1, localhost, [::1] and allowed_hosts are answered"
        )
    app = create_app(settings, models=models)
    server = _DrainingServer(uvicorn_config(app, host, port, settings.limits))
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's own start-up failure status (port taken, lifespan failed)


def uvicorn_config(app: Any, host: str, port: int, limits: Limits) -> uvicorn.Config:
    """uvicorn's configuration with the connection limits of `limits`."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # our JSON logging
        access_log=False,  # one JSON line per request comes from the app itself
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
        timeout_keep_alive=limits.keep_alive_timeout_s,
        # uvicorn counts the asking connection among the open ones: +1 serves exactly
        # max_connections of them and answers 503 to the next.
        limit_concurrency=limits.max_connections + 1,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        http=read_timeout_protocol(limits.header_timeout_s, limits.body_idle_timeout_s),
    )


def read_timeout_protocol(header_timeout_s: float, body_idle_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with these read timeouts (a class: uvicorn instantiates it)."""
    return type(
        "ReadTimeoutProtocol",
        (_ReadTimeoutProtocol,),
        {"header_timeout_s": header_timeout_s, "body_idle_timeout_s": body_idle_timeout_s},
    )


_TIMEOUT_BODY = b'{"error": {"code": "request_timeout", "message": "the request came too slowly"}}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class _ReadTimeoutProtocol(H11Protocol):
    """h11 with a deadline for the request line and headers, counted from the connection (or
    the first byte of a next request), and an idle timeout while the body arrives.

    A drip of header bytes never extends the header deadline; every body chunk restarts the
    idle one. Pauses that are the server's own (reading paused while the app is busy, a
    100-continue not yet sent) do not count against the client.
    """

    header_timeout_s: ClassVar[float] = 10.0
    body_idle_timeout_s: ClassVar[float] = 15.0

    def connection_made(self, transport: Any) -> None:
        self._read_timer: Any = None
        self._reading: Literal["headers", "body"] | None = None
        super().connection_made(transport)
        self._expect("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._expect("body")  # restarted by each chunk
        elif state is h11.IDLE:
            if self._reading != "headers":  # a next request begins: its own deadline
                self._expect("headers")
        else:
            self._stop_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._stop_timer()  # idle until the next request: uvicorn's keep-alive timeout

    def _expect(self, part: Literal["headers", "body"]) -> None:
        self._stop_timer()
        self._reading = part
        delay = self.header_timeout_s if part == "headers" else self.body_idle_timeout_s
        self._read_timer = self.loop.call_later(delay, self._timed_out)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self._read_timer = None
        self._reading = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        waiting_on_server = self.flow.read_paused or (
            cycle is not None and cycle.waiting_for_100_continue
        )
        if self._reading == "body" and waiting_on_server:
            self._expect("body")
            return
        # Headers: no response to this request can have started (a cycle is a past request's).
        if self._reading == "headers" or cycle is None or not cycle.response_started:
            self.transport.write(_TIMEOUT_RESPONSE)
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self._reading = None
        self.transport.close()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM / SIGINT that ended in a complete drain exits
    0: uvicorn re-raises the signal afterwards, which would end the process with -15."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnlens.service", description=serve.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--config", type=Path, default=None, help="TOML or JSON settings file")
    arguments = parser.parse_args(argv)
    try:
        serve(arguments.host, arguments.port, arguments.config)
    except CnnlensError as error:
        print(f"cnnlens service: start-up error: [{error.code}] {error.message}", file=sys.stderr)
        sys.exit(1)
