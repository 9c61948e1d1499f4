"""List models: those a server has loaded (--server), or those that load here without a download."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cnnlens.cli.commands._common import DEFAULT_MODEL, add_server_options, open_client

HELP = "list the available models"
NO_MAPS = "no feature maps: the map methods cannot explain it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--filter", metavar="TEXT", help="only names containing TEXT (case-insensitive)"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="every torchvision and timm architecture, also those needing a download",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        type=Path,
        help="a service configuration whose [[models]] are listed too",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a list")
    add_server_options(parser)


def _local(args: argparse.Namespace) -> list[dict[str, Any]]:
    from cnnlens.models import loadable_models

    configured: tuple[str, ...] = ()
    if args.config is not None:
        from cnnlens.service.settings import load_settings

        configured = tuple(model.name for model in load_settings(args.config).models)
    return [
        {
            "name": listing.name,
            "default": listing.name == DEFAULT_MODEL,
            "loaded": False,
            "weights": listing.weights,
            "feature_maps": listing.feature_maps,
        }
        for listing in loadable_models(include_all=args.all, configured=configured)
    ]


def run(args: argparse.Namespace) -> int:
    if args.server:
        with open_client(args) as client:
            entries = [summary.model_dump(mode="json") for summary in client.models()]
    else:
        entries = _local(args)
    if args.filter:
        entries = [e for e in entries if args.filter.lower() in str(e["name"]).lower()]
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        line = str(entry["name"])
        if entry.get("default"):
            line += "  (default)"
        if "weights" in entry:
            line += f"  weights: {entry['weights']}"
        if entry.get("feature_maps") is False:
            line += f"  [{NO_MAPS}]"
        print(line)
    return 0
