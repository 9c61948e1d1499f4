"""Run the cnnlens REST service (API under /v1, the web page at /, OpenAPI UI at /docs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlens.cli.commands._common import UsageError

HELP = "run the REST service and its web page"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="service configuration file (models, limits)"
    )


def run(args: argparse.Namespace) -> int:
    if args.config is not None and not args.config.is_file():
        raise UsageError(f"--config: no such file: {args.config}")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1..65535, got {args.port}")
    from cnnlens.service import serve

    serve(host=args.host, port=args.port, config=args.config)
    return 0
