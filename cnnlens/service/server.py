"""Running the service: `cnnlens serve` and `python -m cnnlens.service` both call `serve`.

Every configured model is loaded and its weights checked before the port is bound: a
missing, corrupted or mismatched weights file ends the process with a clear error and a
non-zero exit status, never a service that answers /healthz but can never be ready.
SIGTERM / SIGINT (uvicorn's handling): the listening socket closes at once (new
connections are refused), requests in flight finish (up to `DRAIN_TIMEOUT_S`), then the
models' workers stop and the process exits 0.
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

import uvicorn

from cnnlens.errors import CnnlensError, WeightsError
from cnnlens.models.loaded import LoadedModel
from cnnlens.models.weights import sha256_of_file
from cnnlens.service.app import create_app
from cnnlens.service.logs import configure_logging
from cnnlens.service.settings import ModelConfig, Settings, load_settings

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
    settings = load_settings(config)
    configure_logging(settings.log_level)
    models = load_configured_models(settings)
    logger.info("models loaded", extra={"models": ",".join(models)})
    if not settings.auth_enabled and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning(
            "listening beyond this machine without API keys: anyone who can reach "
            f"{host}:{port} can use the service; set api_keys or CNNLENS_API_KEYS"
        )
    app = create_app(settings, models=models)
    server_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # our JSON logging
        access_log=False,  # one JSON line per request comes from the app itself
        timeout_graceful_shutdown=DRAIN_TIMEOUT_S,
    )
    server = _DrainingServer(server_config)
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's own start-up failure status (port taken, lifespan failed)


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
