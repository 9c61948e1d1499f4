"""What an upload may take and leave: byte quotas counted on the bytes written (a zip bomb stops
at the quota and leaves nothing), deleted and expired jobs leave no files or rows, no message
names a server path, exports carry no live formula."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from cnnlens.audit import AuditConfig
from cnnlens.audit.archive import (
    ArchiveError,
    ArchiveLimits,
    CompressionRatioError,
    QuotaExceededError,
)
from cnnlens.audit.export import records_csv, records_jsonl
from cnnlens.audit.jobs import AuditJobs, JobActiveError, directory_bytes
from tests.audit.test_jobs import BlockingRunner
from tests.audit.tiny_model import synthetic_png, tiny_loaded

MB = 1 << 20


def _bomb(path: Path, inflated_mb: int = 1024, head: bytes = b"") -> Path:
    """A ~1 MB zip of one member that inflates to `inflated_mb` MB of zeros (a bounded loop),
    after `head` (an image's signature, to pass the check of the first bytes)."""
    zeros = bytes(MB)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("bomb.png", "w", force_zip64=True) as member,
    ):
        member.write(head)
        for _ in range(inflated_mb):
            member.write(zeros)
    return path


def _zip(images: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(images):
            archive.writestr(f"img{index}.png", synthetic_png(index))
    return buffer.getvalue()


def _files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and "audit.sqlite" not in path.name]


@pytest.fixture
def jobs(tmp_path: Path) -> AuditJobs:
    limits = ArchiveLimits(max_member_bytes=2048 * MB, max_total_bytes=64 * MB,
                           max_data_dir_bytes=256 * MB)  # fmt: skip
    audits = AuditJobs(tmp_path / "audits", BlockingRunner(tiny_loaded()), limits)
    yield audits
    audits.close()


def test_zip_bomb_stops_at_the_quota_and_leaves_nothing(jobs: AuditJobs, tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.zip").read_bytes()
    assert len(bomb) < 2 * MB
    with pytest.raises(CompressionRatioError) as refused:  # its header: 1000:1
        jobs.submit(bomb, "bomb.zip", AuditConfig(model="tiny"))
    assert refused.value.status == 413 and refused.value.code == "compression_ratio"
    # without the ratio bound, the bytes really written stop at the quota
    jobs.limits = jobs.limits.model_copy(update={"max_compression_ratio": None})
    png_bomb = _bomb(tmp_path / "png.zip", head=b"\x89PNG\r\n\x1a\n").read_bytes()
    with pytest.raises(QuotaExceededError) as refused:
        jobs.submit(png_bomb, "bomb.zip", AuditConfig(model="tiny"))
    assert refused.value.status == 413 and refused.value.code == "quota_exceeded"
    assert str(jobs.root) not in refused.value.message
    assert _files(jobs.root) == [] and jobs.jobs() == []


def _finished(jobs: AuditJobs, job_id: str) -> None:
    """Done and its outputs written (the thread has let go of the job)."""
    assert jobs.wait(job_id, 60).status == "done"
    deadline = time.monotonic() + 60
    while jobs._current == job_id and time.monotonic() < deadline:
        time.sleep(0.02)


def test_data_dir_quota_counts_every_job(jobs: AuditJobs) -> None:
    first = jobs.submit(_zip(8), "a.zip", AuditConfig(model="tiny"))
    _finished(jobs, first.id)
    used = directory_bytes(jobs.root)
    upload = _zip(8)
    jobs.limits = jobs.limits.model_copy(update={"max_data_dir_bytes": used + len(upload) // 2})
    with pytest.raises(QuotaExceededError):  # full before extraction
        jobs.submit(upload, "b.zip", AuditConfig(model="tiny"))
    # room for the upload but not for what it extracts: stopped while writing
    jobs.limits = jobs.limits.model_copy(
        update={"max_data_dir_bytes": used + len(upload) + 2 * len(synthetic_png(0))}
    )
    with pytest.raises(QuotaExceededError):
        jobs.submit(upload, "b.zip", AuditConfig(model="tiny"))
    assert directory_bytes(jobs.root) == used and [j.id for j in jobs.jobs()] == [first.id]


def test_delete_removes_files_and_rows(jobs: AuditJobs) -> None:
    job = jobs.submit(_zip(3), "photos.zip", AuditConfig(model="tiny"))
    _finished(jobs, job.id)
    assert (jobs.root / job.id / "index.html").is_file()
    jobs.delete(job.id)
    assert not (jobs.root / job.id).exists()
    assert jobs.store.job(job.id) is None and jobs.store.records(job.id) == []


def test_delete_refuses_a_running_job(jobs: AuditJobs) -> None:
    runner = jobs.runner
    assert isinstance(runner, BlockingRunner)
    runner.block_at = 1
    job = jobs.submit(_zip(3), "photos.zip", AuditConfig(model="tiny", batch_size=1))
    assert runner.blocked.wait(30)
    with pytest.raises(JobActiveError):
        jobs.delete(job.id)
    runner.release.set()
    assert jobs.wait(job.id, 60).status == "done"


def test_retention_purges_old_finished_jobs(jobs: AuditJobs) -> None:
    job = jobs.submit(_zip(2), "photos.zip", AuditConfig(model="tiny"))
    _finished(jobs, job.id)
    assert jobs.purge_finished(3600) == []
    assert (jobs.root / job.id).exists()
    assert jobs.purge_finished(0) == [job.id]
    assert not (jobs.root / job.id).exists() and jobs.store.job(job.id) is None


def test_a_long_member_name_is_refused_without_a_server_path(jobs: AuditJobs) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        data = synthetic_png(0)
        info = tarfile.TarInfo("d/" + "a" * MB + ".png")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(ArchiveError) as refused:
        jobs.submit(buffer.getvalue(), "long.tar", AuditConfig(model="tiny"))
    assert str(jobs.root) not in refused.value.message and "/audits" not in refused.value.message
    assert len(refused.value.message) < 400
    assert _files(jobs.root) == []


def test_exports_neutralize_formulas() -> None:
    records = [
        {"index": i, "name": f"{lead}HYPERLINK(\"http://x\")", "status": "ok", "confidence": -0.5,
         "flags": [], "maps": {}}
        for i, lead in enumerate(["=", "+", "-", "@", "\t", "\r"])
    ] + [{"index": 9, "name": "plain.png", "status": "ok", "flags": [], "maps": {}}]  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(records_csv(records, ["grad_cam"]))))
    assert all(row["name"].startswith("'") for row in rows[:6])
    assert rows[6]["name"] == "plain.png"
    lines = [json.loads(line) for line in records_jsonl(records).splitlines()]
    assert all(line["name"].startswith("'") for line in lines[:6])
    assert lines[0]["confidence"] == -0.5 and lines[6]["name"] == "plain.png"
