"""One worker thread per model: a bounded queue, dynamic batching and cooperative deadlines.

Module hooks are global to a module, so every piece of work on a model runs on its worker
thread, one batch at a time: concurrent requests never see each other's hooks. Requests
with the same `batch_key` that wait together are run as one batch (up to `max_batch`,
waiting at most `max_batch_delay_ms` for more), then split back per request.

The lightest waiting job runs first (its `cost`: the estimated forward-equivalents that the
budget check computed), so one heavy request never holds light ones. A job passed over
`queue_max_passes` times runs next whatever its cost: a heavy job waits, but not forever.

A batch whose every request has passed its deadline (or was abandoned by its caller) is
stopped between two torch operations by the hook manager's thread-local torch-function
interception, so the worker is free for the next batch instead of finishing work nobody
waits for.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch

from cnnlens.models.loaded import LoadedModel
from cnnlens.service.errors import (
    ComputeOutOfMemoryError,
    DeadlineExceededError,
    NotReadyError,
    QueueFullError,
)
from cnnlens.service.metrics import Metrics
from cnnlens.service.runtime.abort import abort_when
from cnnlens.service.settings import Limits

logger = logging.getLogger("cnnlens.service.runtime.worker")

P = TypeVar("P")
R = TypeVar("R")

# Runs a batch of payloads on the model; returns one result per payload, in order.
BatchRunner = Callable[[LoadedModel, Sequence[Any]], Sequence[Any]]


def each(loaded: LoadedModel, works: Sequence[Callable[[LoadedModel], R]]) -> list[R]:
    """The batch runner of closure work (compare, audits): `work(loaded)` for each, one at
    a time."""
    return [work(loaded) for work in works]


@dataclass(eq=False)
class Job(Generic[P]):
    """One request's unit of work, waiting for (or running on) a model's worker."""

    run: BatchRunner
    payload: P
    batch_key: Hashable | None
    deadline: float | None  # time.monotonic() seconds
    cost: float = math.inf  # estimated forward-equivalents; unknown: after every known one
    future: Future[Any] = field(default_factory=Future)
    abandoned: bool = False  # the caller stopped waiting
    passed: int = 0  # times a lighter job that came later ran first

    def expired(self, now: float | None = None) -> bool:
        return self.deadline is not None and (now or time.monotonic()) > self.deadline

    def unwanted(self) -> bool:
        return self.abandoned or self.expired()


# Under OpenMP the intra-op thread count is a per-thread setting: a worker can change its own
# without touching the rest of the process. Elsewhere it is global and is left alone.
PER_THREAD_INTRA_OP = "parallel backend: OpenMP" in torch.__config__.parallel_info()


def _release_memory() -> None:
    """Free what an out-of-memory batch left: its tensors, then the CUDA cache."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ModelWorker:
    """The thread that owns one model: all work on that model goes through `submit`."""

    def __init__(
        self,
        model: LoadedModel,
        limits: Limits,
        metrics: Metrics | None = None,
        *,
        lane: str = "worker",
        threads: int | None = None,
    ):
        self.model = model
        self.limits = limits
        self.metrics = metrics
        self._pending: deque[Job[Any]] = deque()
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._loop, name=f"cnnlens-{lane}-{model.name}", daemon=True
        )
        self.busy = False  # a batch is running (for tests and metrics)
        self.running_cost = 0.0  # the running batch's heaviest estimate (0 when idle)
        self._threads = threads  # intra-op threads at most; None: the process's
        self._all_threads = torch.get_num_threads()  # the worker thread's own, set in _loop

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, fail the waiting ones, let the running batch finish."""
        with self._condition:
            self._stopping = True
            dropped = list(self._pending)
            self._pending.clear()
            self._condition.notify_all()
        for job in dropped:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(NotReadyError("the service is shutting down"))
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the running batch)."""
        return len(self._pending)

    def submit(
        self,
        run: BatchRunner,
        payload: Any,
        *,
        batch_key: Hashable | None = None,
        deadline: float | None = None,
        cost: float | None = None,
    ) -> Job[Any]:
        """Queue one payload; raises QueueFullError (503 + Retry-After) when the queue is full.
        `cost`: its estimated forward-equivalents (lighter runs first; None: unknown)."""
        job: Job[Any] = Job(run, payload, batch_key, deadline, math.inf if cost is None else cost)
        with self._condition:
            if self._stopping:
                raise NotReadyError("the service is shutting down")
            if len(self._pending) >= self.limits.queue_size:
                self._count_rejection("queue_full")
                raise QueueFullError(
                    f"model {self.model.name!r} has {len(self._pending)} requests waiting; "
                    "retry later",
                    retry_after_s=self.limits.retry_after_s,
                )
            self._pending.append(job)
            self._set_depth()
            self._condition.notify_all()
        return job

    async def wait(self, job: Job[Any]) -> Any:
        """Await a submitted job's result; past its deadline: DeadlineExceededError (504)."""
        waiter = asyncio.wrap_future(job.future)
        timeout = None if job.deadline is None else max(0.0, job.deadline - time.monotonic())
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            job.abandoned = True
            self._count_rejection("deadline")
            raise DeadlineExceededError(
                f"the request took longer than its {self.limits.request_deadline_s:g} s deadline"
            ) from None
        except asyncio.CancelledError:
            job.abandoned = True
            raise

    def _loop(self) -> None:
        self._all_threads = self._threads or torch.get_num_threads()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._execute(batch)
            except BaseException:  # never let the worker die: fail the batch instead
                logger.exception("worker failure on model %s", self.model.name)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("worker failure"))

    def _next_batch(self) -> list[Job[Any]] | None:
        with self._condition:
            while not self._pending and not self._stopping:
                self._condition.wait()
            if not self._pending:
                return None
            batch = [self._take_next()]
            key = batch[0].batch_key
            if key is not None and self.limits.max_batch > 1:
                wait_until = time.monotonic() + self.limits.max_batch_delay_ms / 1000.0
                while True:
                    self._take_matching(batch, key)
                    remaining = wait_until - time.monotonic()
                    if len(batch) >= self.limits.max_batch or self._stopping or remaining <= 0:
                        break
                    self._condition.wait(remaining)
            self._set_depth()
            return batch

    def _take_next(self) -> Job[Any]:
        """The lightest waiting job (the oldest among equals), unless one has been passed
        over `queue_max_passes` times: then the oldest such job."""
        bound = self.limits.queue_max_passes
        overdue = next((job for job in self._pending if job.passed >= bound), None)
        chosen = overdue or min(self._pending, key=lambda job: job.cost)
        for job in self._pending:
            if job is chosen:
                break
            job.passed += 1
        self._pending.remove(chosen)
        return chosen

    def _take_matching(self, batch: list[Job[Any]], key: Hashable) -> None:
        for job in list(self._pending):
            if len(batch) >= self.limits.max_batch:
                return
            if job.batch_key == key:
                self._pending.remove(job)
                batch.append(job)

    def _execute(self, batch: list[Job[Any]]) -> None:
        live = []
        for job in batch:
            if not job.future.set_running_or_notify_cancel():
                continue  # the caller gave up while it waited
            if job.unwanted():
                job.future.set_exception(DeadlineExceededError("the deadline passed in the queue"))
                continue
            live.append(job)
        if not live:
            return
        started = time.perf_counter()
        self.busy = True
        self.running_cost = max(job.cost for job in live)
        self._choose_intra_op_threads(len(live))
        try:
            results = self._run(live)
        except Exception as error:
            if len(live) > 1 and not isinstance(error, DeadlineExceededError):
                for job in live:  # find out whose request it was
                    self._run_alone(job)
            else:
                for job in live:
                    job.future.set_exception(error)
            return
        finally:
            self.busy = False
            self.running_cost = 0.0
            self._observe(len(live), time.perf_counter() - started)
        for job, result in zip(live, results, strict=True):
            job.future.set_result(result)

    def _choose_intra_op_threads(self, batch_size: int) -> None:
        """Every core for a lone request (latency); half of them under load. When requests
        batch up, their own threads decode and render meanwhile, and an OpenMP team whose
        threads get descheduled stalls at every operation: on 2 busy cores a batch of 8
        grad_cam ran 3-4x faster with one intra-op thread than with two."""
        if not PER_THREAD_INTRA_OP:
            return
        under_load = batch_size > 1 or bool(self._pending)
        wanted = max(1, self._all_threads // 2) if under_load else self._all_threads
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)

    def _run(self, jobs: list[Job[Any]]) -> Sequence[Any]:
        out_of_memory = False
        try:
            with abort_when(lambda: all(job.unwanted() for job in jobs)):
                results = jobs[0].run(self.model, [job.payload for job in jobs])
        except (MemoryError, torch.OutOfMemoryError):
            out_of_memory = True  # handled below, once the traceback (and its tensors) is gone
        if out_of_memory:
            _release_memory()  # a batch of several is retried one by one by _execute
            raise ComputeOutOfMemoryError(
                f"model {self.model.name!r} ran out of memory on a batch of {len(jobs)}; "
                "retry later or send a smaller image / fewer targets",
                retry_after_s=self.limits.retry_after_s,
            ) from None
        if len(results) != len(jobs):
            raise RuntimeError(f"a batch of {len(jobs)} returned {len(results)} results")
        return results

    def _run_alone(self, job: Job[Any]) -> None:
        try:
            (result,) = self._run([job])
        except Exception as error:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.model.name).set(len(self._pending))

    def _observe(self, size: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.batch_size.labels(self.model.name).observe(size)
            self.metrics.compute.labels(self.model.name).observe(seconds)

    def _count_rejection(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(self.model.name, reason).inc()
