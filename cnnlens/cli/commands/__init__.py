"""The subcommands of `cnnlens`, one module each, registered from COMMANDS.

To add a subcommand: write `cnnlens/cli/commands/<name>.py` defining

    HELP = "one line for `cnnlens --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # 0 done, 1 failed (raise UsageError for 2)

(the module docstring becomes the command's description; import anything heavy inside
`run` so that `cnnlens --help` stays fast), then add "<name>" to COMMANDS below.
Shared options and helpers (--server, tables, progress bars) live in `_common.py`.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = (
    "serve",
    "explain",
    "models",
    "layers",
    "audit",
    "audits",
    "neighbors",
    "compare",
    "visualize",
)
