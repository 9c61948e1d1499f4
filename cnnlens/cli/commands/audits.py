"""The audit jobs of a cnnlens service: list them (newest first), or delete some. Deleting a
queued or running job cancels it (it stops after its batch in flight); deleting a finished,
failed or cancelled job removes it with its files, and the service no longer lists it.

examples:
  cnnlens audits --server http://127.0.0.1:8000
  cnnlens audits delete 0f3c9a7e52d14b0c8e1f6a2b3c4d5e6f --server http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import time

from cnnlens.cli.commands._common import (
    UsageError,
    add_server_options,
    echo,
    open_client,
    print_table,
)

HELP = "list a service's audit jobs, or delete them (cancel, or remove with their files)"
_MAX_PAGES = 50  # of 200 jobs each


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", nargs="?", choices=("list", "delete"), default="list", help="default: list"
    )
    parser.add_argument("job_ids", nargs="*", metavar="JOB", help="the jobs to delete")
    add_server_options(parser, local_ok=False)


def run(args: argparse.Namespace) -> int:
    if not args.server:
        raise UsageError("--server (or $CNNLENS_SERVER) is needed: audit jobs live on a service")
    if args.action == "list" and args.job_ids:
        raise UsageError("list takes no job ids; did you mean `cnnlens audits delete JOB`?")
    if args.action == "delete" and not args.job_ids:
        raise UsageError("name the job(s) to delete")
    with open_client(args) as client:
        if args.action == "delete":
            for job_id in args.job_ids:
                answer = client.delete_audit(job_id)
                if answer.get("deleted"):
                    echo(f"audit {job_id}: deleted with its files ({answer['status']})")
                else:
                    echo(
                        f"audit {job_id}: cancelled; it stops after its batch in flight "
                        "(delete it again then to remove its files)"
                    )
            return 0
        rows, cursor = [], None
        for _ in range(_MAX_PAGES):
            page = client.audits(limit=200, cursor=cursor)
            rows += [
                (
                    job["id"], job["status"], job["model"],
                    f"{job['progress']['done']}/{job['progress']['total']}",
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created"])),
                )
                for job in page["audits"]
            ]  # fmt: skip
            cursor = page.get("next_cursor")
            if cursor is None:
                break
    print_table(("id", "status", "model", "images", "created"), rows)
    return 0
