"""The `cnnlens` console script: one subcommand per module of cnnlens.cli.commands.

Exit status: 0 done, 1 failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from cnnlens.cli.commands import COMMANDS
from cnnlens.cli.commands._common import UsageError
from cnnlens.heap import reuse_heap

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# Error codes that mean "the command line asked for something that does not exist".
USAGE_CODES = frozenset(
    {
        "unknown_model",
        "unknown_method",
        "unknown_layer",
        "bad_target",
        "invalid_params",
        "bad_region",
        "incompatible_model",
    }
)


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"cnnlens.cli.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlens",
        description="Explains what image CNNs see: heatmaps, a REST service and its client.",
        epilog="exit status: 0 done, 1 failed, 2 bad usage. `cnnlens COMMAND --help` for more.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = command_module(name)
        command = subparsers.add_parser(
            name.replace("_", "-"),
            help=module.HELP,
            description=(module.__doc__ or module.HELP).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    reuse_heap()
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on bad usage, 0 on --help
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logs = logging.getLogger("cnnlens")
    level = logs.level
    if getattr(args, "quiet", False):  # -q: errors only, no notes (e.g. a skipped export)
        logs.setLevel(logging.ERROR)
    try:
        return int(args.run(args))
    except UsageError as error:
        parser.exit(EXIT_USAGE, f"cnnlens {args.command}: error: {error}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cnnlens layers X | head`: the reader is done; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:
        status = exit_status(error)
        if status is None:
            raise
        print(f"cnnlens {args.command}: error: {describe(error)}", file=sys.stderr)
        return status
    finally:
        logs.setLevel(level)  # main() may run again in this process (tests, notebooks)
    return EXIT_OK  # unreachable: parser.exit raises


def exit_status(error: BaseException) -> int | None:
    """2 for a request naming what does not exist, 1 for other known failures, None for bugs."""
    from cnnlens.client.errors import CnnlensAPIError
    from cnnlens.errors import CnnlensError

    if isinstance(error, CnnlensAPIError | CnnlensError):
        return EXIT_USAGE if error.code in USAGE_CODES else EXIT_FAILED
    if isinstance(error, OSError):
        return EXIT_FAILED
    return None


def describe(error: BaseException) -> str:
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or str(error)
    status = getattr(error, "status", None)
    prefix = f"[{status} {code}] " if status else f"[{code}] " if code else ""
    return f"{prefix}{message}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cnnlens")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
