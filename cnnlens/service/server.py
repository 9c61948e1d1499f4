"""Running the service: `cnnlens serve` and `python -m cnnlens.service` both call `serve`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlens.service.app import create_app
from cnnlens.service.logs import configure_logging
from cnnlens.service.settings import load_settings


def serve(host: str = "127.0.0.1", port: int = 8000, config: Path | None = None) -> None:
    """Load settings (file and/or CNNLENS_* variables), build the app, run uvicorn."""
    import uvicorn

    settings = load_settings(config)
    configure_logging(settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,  # our JSON logging
        access_log=False,  # one JSON line per request comes from the app itself
        timeout_graceful_shutdown=30,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnlens.service", description=serve.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--config", type=Path, default=None, help="TOML or JSON settings file")
    arguments = parser.parse_args(argv)
    serve(arguments.host, arguments.port, arguments.config)
