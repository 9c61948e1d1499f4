"""Run an image, activation or weights method (any method with a route of its own: see
`cnnlens explain --help` for the map methods) and write its main image.

  cnnlens visualize feature_maps cat.jpg --layer layer3 --out maps.png
  cnnlens visualize activation_max --target 285 --server http://127.0.0.1:8000
  cnnlens visualize filters --layer conv1 --json
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path
from typing import Any

from cnnlens.cli.commands._common import (
    DEFAULT_MODEL,
    UsageError,
    add_model_options,
    add_server_options,
    echo,
    open_client,
)

HELP = "run an image, activation or weights method; write its image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", help="a method with a route of its own (e.g. feature_maps)")
    parser.add_argument("image", nargs="?", help="the image, for methods that look at one")
    parser.add_argument("--target", help="a class index or label (default: top-1)")
    add_model_options(parser, params_help="the method's params, a JSON object")
    parser.add_argument("--out", metavar="PNG", help="where to write the main image")
    parser.add_argument("--json", action="store_true", help="print the v1 body as JSON")
    add_server_options(parser)


def run(args: argparse.Namespace) -> int:
    _check_method(args)
    body = _remote(args) if args.server else _local(args)
    png = next((body[key] for key in body if key.endswith("_png")), None)
    if args.out and png:
        Path(args.out).write_bytes(base64.b64decode(png))
        echo(f"wrote {args.out}")
    if args.json:
        print(json.dumps(body, indent=2))
    elif not args.out:
        summary = {k: v for k, v in body.items() if not k.endswith("_png")}
        print(json.dumps(summary, indent=2))
    return 0


def _check_method(args: argparse.Namespace) -> None:
    """The method asked for has a route of its own, as the server (or this install) lists it."""
    if args.server:
        with open_client(args) as client:
            known = {info.name: (info.produces, info.uses_image) for info in client.methods()}
    else:
        from cnnlens.methods.base import get_method, method_names

        known = {
            name: (get_method(name).produces, get_method(name).uses_image)
            for name in method_names()
        }
    own = sorted(name for name, (produces, _) in known.items() if produces != "map")
    if args.method not in own:
        raise UsageError(f"unknown method {args.method!r}; choose from {', '.join(own)}")
    if known[args.method][1] and args.image is None:
        raise UsageError(f"{args.method} needs an image")


def _params(args: argparse.Namespace) -> dict[str, Any] | None:
    return json.loads(args.params) if args.params else None


def _remote(args: argparse.Namespace) -> dict[str, Any]:
    from cnnlens.client import _protocol as protocol

    call = protocol.run_method(
        args.method, args.image, model=args.model, target=args.target, layer=args.layer,
        params=_params(args),
    )  # fmt: skip
    call.parse = dict  # the v1 body itself
    with open_client(args) as client:
        return dict(client._run(call))


def _local(args: argparse.Namespace) -> dict[str, Any]:
    """The service's own check, work and render of the method, in this process."""
    from cnnlens.imageio import decode_image
    from cnnlens.methods.base import get_method
    from cnnlens.methods.run import plan_run
    from cnnlens.models import load_model
    from cnnlens.service.forms import layer_field, parse_class, parse_method_params
    from cnnlens.service.handlers import SingleRun, own_route

    started = time.monotonic()
    method, answer = get_method(args.method), own_route(args.method)
    loaded = load_model(args.model or DEFAULT_MODEL, weights=args.weights)
    params = parse_method_params(args.params, method)
    target = parse_class(_target(args.target), loaded) if args.target else None
    plan = plan_run(loaded, [(method, params)], layer_field(args.layer))
    run = answer.check(loaded, SingleRun(plan, target))
    if method.uses_image:
        run.picture = decode_image(Path(args.image).read_bytes())
        run.x = loaded.preprocessing(run.picture) if answer.preprocess else None
    result = answer.work(loaded, [run])[0]
    body, _ = answer.render(loaded, run, result, started)
    return body.model_dump(mode="json")


def _target(text: str) -> int | str:
    return int(text) if text.strip().isascii() and text.strip().isdigit() else text
