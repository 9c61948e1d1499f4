"""The service's job runner: queued, running with an ETA, cancelled, resumed after a restart."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cnnlens.audit import AuditConfig
from cnnlens.audit.jobs import AuditJobs
from cnnlens.models import LoadedModel

T = TypeVar("T")


class BlockingRunner:
    """Runs work on the model; the `block_at`-th call waits for `release`."""

    def __init__(self, model: LoadedModel, ready: bool = True, block_at: int = 0) -> None:
        self.model = model
        self.ready = threading.Event()
        if ready:
            self.ready.set()
        self.block_at = block_at
        self.blocked = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def loaded(self, name: str) -> LoadedModel:
        return self.model

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    def stop(self) -> None:
        self.release.set()

    def run(self, name: str, work: Callable[[LoadedModel], T]) -> T:
        self.calls += 1
        if self.calls == self.block_at:
            self.blocked.set()
            assert self.release.wait(30)
        return work(self.model)


def _archive(photos: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(photos.glob("*.png")):
            if path.name != "broken.png":
                archive.writestr(path.name, path.read_bytes())
    return buffer.getvalue()


def test_cancel_a_queued_and_a_running_job(
    photos: Path, tmp_path: Path, default_model: LoadedModel
) -> None:
    runner = BlockingRunner(default_model, ready=False, block_at=2)
    jobs = AuditJobs(tmp_path / "audits", runner)
    config = AuditConfig(batch_size=1)
    try:
        first = jobs.submit(_archive(photos), "p.zip", config)
        second = jobs.submit(_archive(photos), "p.zip", config)
        assert jobs.job(first.id).status == "queued" and first.total == 3
        assert jobs.cancel(second.id).status == "cancelled"

        runner.ready.set()
        assert runner.blocked.wait(30)  # the first batch is saved, the second is running
        running = jobs.job(first.id)
        assert running.status == "running" and running.done == 1
        assert running.eta_s is not None and running.eta_s > 0
        assert jobs.cancel(first.id).cancel_requested
        runner.release.set()
        final = jobs.wait(first.id, 30)
        assert final.status == "cancelled" and final.done == 2 and final.total == 3
        assert runner.calls == 2  # the cancelled job stopped; the queued one never ran
        report = tmp_path / "audits" / first.id / "index.html"  # partial, written just after
        deadline = time.monotonic() + 10
        while not report.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "cancelled" in report.read_text(encoding="utf-8")
    finally:
        runner.release.set()
        jobs.close()


def test_restart_resumes_an_unfinished_job(
    photos: Path, tmp_path: Path, default_model: LoadedModel
) -> None:
    stopped = BlockingRunner(default_model, ready=False)
    jobs = AuditJobs(tmp_path / "audits", stopped)
    job = jobs.submit(_archive(photos), "p.zip", AuditConfig(batch_size=2))
    jobs.close()  # the service stops before the models are ready
    assert stopped.calls == 0

    runner = BlockingRunner(default_model)
    restarted = AuditJobs(tmp_path / "audits", runner)
    try:
        final = restarted.wait(job.id, 60)
        assert final.status == "done" and final.done == 3 and runner.calls == 2
        assert [j.id for j in restarted.jobs()] == [job.id]
    finally:
        restarted.close()
