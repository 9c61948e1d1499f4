"""List models: those a server has loaded (--server), or the names load_model accepts."""

from __future__ import annotations

import argparse
import json

from cnnlens.cli.commands._common import DEFAULT_MODEL, add_server_options, open_client

HELP = "list the available models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter", metavar="TEXT", help="only names containing TEXT (case-insensitive)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a list")
    add_server_options(parser)


def run(args: argparse.Namespace) -> int:
    if args.server:
        with open_client(args) as client:
            entries = [summary.data for summary in client.models()]
    else:
        from cnnlens.models import list_models

        entries = [
            {"name": name, "default": name == DEFAULT_MODEL, "loaded": False}
            for name in list_models()
        ]
    if args.filter:
        entries = [e for e in entries if args.filter.lower() in str(e["name"]).lower()]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        mark = "  (default)" if entry.get("default") else ""
        print(f"{entry['name']}{mark}")
    return 0
