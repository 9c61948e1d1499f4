"""The fenced code blocks of the README and the guides, as the docs test runs them.

A block is a fence (three or more backticks) with a language; blocks inside a longer fence (a
page showing markdown) are text of that fence, not blocks. `<!-- not run: REASON -->` on the
line before a fence marks a block that cannot run in the tests, with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = ("python", "bash")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(?P<reason>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<ticks>`{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    page: Path  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    source: str
    not_run: str | None  # the reason it is not run, or None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    """The README and every Markdown page of the docs, repository-relative."""
    found = [Path("README.md"), *sorted(p.relative_to(ROOT) for p in (ROOT / "docs").rglob("*.md"))]
    return [page for page in found if ".ipynb_checkpoints" not in page.parts]


def blocks(page: Path) -> list[Block]:
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index].strip())
        if opening is None:
            index += 1
            continue
        ticks, info = opening["ticks"], opening["info"].strip()
        end = index + 1
        while end < len(lines) and not re.fullmatch(f"`{{{len(ticks)},}}", lines[end].strip()):
            end += 1
        previous = lines[index - 1].strip() if index else ""
        reason = NOT_RUN.match(previous)
        found.append(
            Block(
                page=page,
                line=index + 1,
                language=info.split()[0] if info else "",
                source="\n".join(lines[index + 1 : end]),
                not_run=reason["reason"] if reason else None,
            )
        )
        index = end + 1
    return found


def markers_without_block(page: Path) -> list[int]:
    """Lines of `not run` markers that are not right before a fence (a marker gone stale)."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    return [
        number
        for number, line in enumerate(lines, start=1)
        if NOT_RUN.match(line.strip())
        and (number >= len(lines) or not FENCE.match(lines[number].strip()))
    ]
