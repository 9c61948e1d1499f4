"""Notebooks are committed without outputs: `python -m tests.docs.strip_notebooks FILE...`
clears them (outputs, execution counts, run metadata), and `unstripped` says what is left."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "docs" / "notebooks"
RUN_METADATA = ("execution", "collapsed", "scrolled")


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def unstripped(notebook: Any) -> list[str]:
    """What a committed notebook should not carry, cell by cell."""
    problems = []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {number}: outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {number}: execution_count")
        if any(key in cell.get("metadata", {}) for key in RUN_METADATA):
            problems.append(f"cell {number}: run metadata")
    return problems


def strip(path: Path) -> bool:
    """Clear the notebook at `path`; True when it changed."""
    notebook = nbformat.read(path, as_version=4)
    if not unstripped(notebook):
        return False
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            for key in RUN_METADATA:
                cell.metadata.pop(key, None)
    nbformat.write(notebook, path)
    return True


def main(paths: list[str]) -> int:
    for name in paths or [str(p) for p in notebooks()]:
        if strip(Path(name)):
            print(f"stripped {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
