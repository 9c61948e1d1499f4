"""Progress bars for long work (compare, audits, fragility): tqdm on stderr, shown only where
someone watches (a terminal or a notebook) unless asked, never under `-q`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

Tick = Callable[[int], None]  # advances a bar by n units


def watched(progress: bool | None, stream: TextIO | None = None) -> bool:
    """Whether to show a bar: `progress` when given, else when stderr is a terminal or the
    code runs in a notebook kernel (whose stderr is not a terminal but is shown)."""
    if progress is not None:
        return progress
    stream = stream or sys.stderr
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        terminal = False
    return terminal or "ipykernel" in sys.modules


class Bar:
    """A tqdm bar, or nothing at all when it is not watched (no import of tqdm either)."""

    def __init__(
        self, total: int, description: str, unit: str, enabled: bool, initial: int = 0
    ) -> None:
        self._bar: Any = None
        if enabled and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=description, unit=unit, file=sys.stderr,
                dynamic_ncols=True,
            )  # fmt: skip

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_done(self, done: int) -> None:
        """Move to `done` units (a job reports its count, not increments)."""
        if self._bar is not None:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JobBar:
    """A bar fed with a job's counts (`done`, `total`; resumed items count as done), made at
    the first count it is given."""

    def __init__(self, description: str, unit: str, enabled: bool) -> None:
        self.description, self.unit, self.enabled = description, unit, enabled
        self.bar: Bar | None = None

    def update(self, job: Any) -> None:
        if self.bar is None:
            self.bar = Bar(job.total, self.description, self.unit, self.enabled, job.done)
        self.bar.set_done(job.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
