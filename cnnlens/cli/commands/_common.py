"""Helpers shared by the subcommands: server options, argument parsing, tables, progress."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cnnlens.api.forms import split_list

if TYPE_CHECKING:
    from cnnlens.client.sync import Client

T = TypeVar("T")
R = TypeVar("R")
__all__ = ["split_list"]  # the one splitter of repeated / comma-separated values

SERVER_ENV = "CNNLENS_SERVER"
API_KEY_ENV = "CNNLENS_API_KEY"
DEFAULT_MODEL = "efficientnet_lite0"  # cnnlens.models.zoo.DEFAULT_MODEL, without importing torch


class UsageError(Exception):
    """The command line asks for something impossible: exit status 2."""


def add_server_options(parser: argparse.ArgumentParser, *, local_ok: bool = True) -> None:
    """--server URL (or $CNNLENS_SERVER), --api-key (or $CNNLENS_API_KEY), --timeout."""
    where = "work locally when not given" if local_ok else "required"
    parser.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get(SERVER_ENV) or None,
        help=f"a cnnlens service, e.g. http://127.0.0.1:8000 (default: ${SERVER_ENV}; {where})",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get(API_KEY_ENV) or None,
        help=f"API key for the service (default: ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="seconds per request"
    )


def add_model_options(
    parser: argparse.ArgumentParser,
    params_help: str = "per-method params, a JSON object or @file.json",
) -> None:
    """--layer, --model, --weights and --params: which model and layer, and the methods' params."""
    parser.add_argument("--layer", "-l", help="target layer (default: the model's default layer)")
    parser.add_argument("--model", help=f"model name (default: {DEFAULT_MODEL} / the server's)")
    parser.add_argument(
        "--weights", default="default", help="locally: 'default', 'none' or a weights file"
    )
    parser.add_argument("--params", metavar="JSON", help=params_help)


def note_image_failure(path: Path, error: Exception, failed: list[dict[str, str]]) -> None:
    """Record a failure that concerns one image (unreadable, too large, a server hiccup) and
    go on with the others; re-raise a request naming what does not exist (exit status 2)."""
    from cnnlens.cli import USAGE_CODES

    code = getattr(error, "code", None)
    if not (isinstance(error, OSError) or (code is not None and code not in USAGE_CODES)):
        raise error
    failed.append({"image": str(path), "error": str(error)})
    echo(f"{path}: failed: {error}", error=True)


def each_image(
    images: Sequence[Path],
    work: Callable[[Path], R],
    failed: list[dict[str, str]],
    description: str,
    quiet: bool = False,
) -> Iterator[tuple[Path, R]]:
    """(path, work(path)) for each image, under a progress bar; an image whose work fails is
    noted in `failed` and skipped (see `note_image_failure`)."""
    for path in progress(images, description, enabled=not quiet):
        try:
            result = work(path)
        except Exception as error:
            note_image_failure(path, error, failed)
            continue
        yield path, result


def open_client(args: argparse.Namespace) -> Client:
    from cnnlens.client.sync import Client

    return Client(args.server, api_key=args.api_key, timeout=args.timeout)


def parse_targets(values: Sequence[str] | None) -> list[int | str]:
    """Class indices stay ints; anything else is a label."""
    targets: list[int | str] = []
    for value in values or []:
        text = value.strip()
        targets.append(int(text) if text.isascii() and text.isdigit() else text)
    return targets


def parse_params(text: str | None) -> dict[str, dict[str, Any]]:
    """--params: a JSON object keyed by method name, inline or `@file.json`."""
    if not text:
        return {}
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise UsageError(f"--params: no such file: {path}")
        text = path.read_text(encoding="utf-8")
    try:
        params = json.loads(text)
    except ValueError as error:
        raise UsageError(f"--params is not valid JSON: {error}") from None
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise UsageError('--params must be a JSON object keyed by method: {"occlusion": {...}}')
    return params


def existing_files(paths: Sequence[str], what: str = "image") -> list[Path]:
    files = [Path(p) for p in paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise UsageError(f"no such {what} file: {', '.join(missing)}")
    return files


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], file: Any = None) -> None:
    """A plain left-aligned text table."""
    text_rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    out = file or sys.stdout
    for row in [list(headers), ["-" * w for w in widths], *text_rows]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip(),
            file=out,
        )


def progress(items: Sequence[T], description: str, enabled: bool = True) -> Iterator[T]:
    """A tqdm bar on stderr for several items, where someone watches (see cnnlens.progress)."""
    from cnnlens.progress import Bar, watched

    with Bar(
        len(items) if len(items) > 1 else 0, description, "image", enabled and watched(None)
    ) as bar:
        for item in items:
            yield item
            bar.update()


def echo(message: str, *, error: bool = False) -> None:
    """Print a line without breaking a progress bar that may be running."""
    stream = sys.stderr if error else sys.stdout
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        tqdm.write(message, file=stream)
    else:
        print(message, file=stream)


def shape_text(shape: Sequence[int] | None) -> str:
    return "x".join(str(n) for n in shape) if shape else "-"
