"""Atomic file writes: a temporary file in the same folder, then os.replace."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, data: bytes | str, durable: bool = True) -> None:
    """Readers see the old file or the new one, never half of it; `durable`: on disk before
    this returns (an fsync, milliseconds each)."""
    with open_atomic(path, durable) as sink:
        sink.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextmanager
def open_atomic(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """A file written as a stream (page by page) that appears whole under `path` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide the report from other readers
        with os.fdopen(handle, "wb") as sink:
            yield sink
            sink.flush()
            if durable:
                os.fsync(sink.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
