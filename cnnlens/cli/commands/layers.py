"""A model's layers: type, output shape, receptive field and stride; * marks the default
target layer of the layer-based methods (CAM, Grad-CAM). Locally the structure is built
without loading weights (shapes do not depend on them) unless --weights is given."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlens.cli.commands._common import add_server_options, open_client, print_table, shape_text

HELP = "show a model's layers, receptive fields and default layer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="e.g. efficientnet_lite0, timm:resnet18")
    parser.add_argument(
        "--weights",
        default="none",
        help="locally: 'none' (default; structure only), 'default' or a weights file",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_server_options(parser)


def run(args: argparse.Namespace) -> int:
    info = _remote(args) if args.server else _local(args.model, args.weights)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    default = info["default_layer"]
    print_table(
        ["", "name", "type", "output shape", "receptive field", "stride"],
        (
            [
                "*" if layer["name"] == default else "",
                layer["name"],
                layer.get("type", ""),
                shape_text(layer.get("output_shape")),
                _field(layer.get("receptive_field")),
                layer.get("stride") if layer.get("stride") is not None else "-",
            ]
            for layer in info["layers"]
        ),
    )
    print(f"\n* default layer: {default}")
    for note in (info.get("compatibility") or {}).get("notes", []):
        print(f"note: {note}")
    return 0


def _field(value: int | None) -> str:
    return "whole image" if value is None else f"{value}px"


def _remote(args: argparse.Namespace) -> dict[str, Any]:
    with open_client(args) as client:
        model = client.model(args.model)
    return model.model_dump(mode="json", exclude={"categories"})


def _local(name: str, weights: str) -> dict[str, Any]:
    from dataclasses import asdict

    from cnnlens.models import load_model

    inventory = load_model(name, weights=weights).layers
    return {
        "name": name,
        "default_layer": inventory.default_layer,
        "layers": [asdict(layer) for layer in inventory.layers],
        "compatibility": asdict(inventory.compatibility),
    }
