"""The tutorial notebooks: at least three, valid, committed without outputs (make test runs
them with nbmake)."""

from __future__ import annotations

import nbformat

from tests.docs.strip_notebooks import notebooks, unstripped


def test_there_are_three_tutorials() -> None:
    names = [path.stem for path in notebooks()]
    assert len(names) >= 3
    for topic in ("quick-start", "your-own-model", "comparing-methods"):
        assert any(topic in name for name in names), topic


def test_notebooks_are_valid_and_committed_without_outputs() -> None:
    for path in notebooks():
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert unstripped(notebook) == [], (
            f"{path.name}: run `python -m tests.docs.strip_notebooks`"
        )
        assert notebook.metadata["kernelspec"]["name"] == "python3"
        assert sum(cell.cell_type == "code" for cell in notebook.cells) >= 4
