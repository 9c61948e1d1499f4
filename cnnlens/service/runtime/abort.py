"""Stopping work nobody waits for: a request's deadline passed or its client left.

The same signal stops a model's batch (`abort_when`: between two torch operations, through
the hook manager's thread-local torch-function interception) and the rendering and encoding
after it (`AbortSignal.each`: between explanations, targets and tiles), so a worker thread
is free again within one operation or one encoded image.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from cnnlens.models.hooks import intercept_torch_functions
from cnnlens.service.errors import DeadlineExceededError

T = TypeVar("T")


class AbortSignal:
    """Set once the request's deadline passes or its caller stops waiting (`cancel`)."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline  # time.monotonic() seconds
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def should_abort(self) -> bool:
        if self._cancelled.is_set():
            return True
        return self.deadline is not None and time.monotonic() > self.deadline

    def check(self) -> None:
        """Raise DeadlineExceededError (504) once the work is no longer wanted."""
        if self.should_abort():
            raise DeadlineExceededError("the request deadline passed while rendering its answer")

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """`items`, checking the signal before each one."""
        for item in items:
            self.check()
            yield item


class _Abort:
    """Raises between torch operations once nobody waits for the running work.

    It raises once: the cleanup the exception then runs (`no_grad` restoring grad mode,
    hook sessions restoring modules) calls torch too, and must not be interrupted.
    """

    def __init__(self, should_abort: Callable[[], bool]) -> None:
        self.should_abort = should_abort
        self.aborted = False

    def __call__(
        self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> Any:
        if not self.aborted and self.should_abort():
            self.aborted = True
            raise DeadlineExceededError("the request deadline passed while computing")
        return func(*args, **kwargs)


@contextmanager
def abort_when(should_abort: Callable[[], bool]) -> Iterator[None]:
    """Torch operations on this thread raise DeadlineExceededError once `should_abort()`."""
    grad_enabled = torch.is_grad_enabled()
    try:
        with intercept_torch_functions(_Abort(should_abort)):
            yield
    finally:
        torch.set_grad_enabled(grad_enabled)  # whatever the work did, the next one starts clean
