"""What a user of a running service meets when deleting audits and uploading archives: DELETE
cancels a running job and removes a finished one with its files (REST, client, CLI); a zip
bomb, a member that is no image and a full data directory are refused before anything is
written, and leave nothing on disk."""

from __future__ import annotations

import asyncio
import io
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cnnlens.cli import main
from cnnlens.client import AsyncClient, Client, CnnlensAPIError
from cnnlens.service.routers.audits import archive_limits
from cnnlens.service.settings import load_settings
from tests.audit.tiny_model import synthetic_png, tiny_loaded
from tests.client.live_server import live_server
from tests.pinned import pinned_app, pinned_settings
from tests.uploads import zipped

MIB = 1 << 20


def _photos(count: int) -> bytes:
    return zipped({f"img{index:04d}.png": synthetic_png(index) for index in range(count)})


def _files(data_dir: Path) -> list[Path]:
    """What the data directory holds besides the job store itself."""
    return [path for path in data_dir.rglob("*") if path.is_file() and ".sqlite" not in path.name]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A live service auditing with the tiny model; (its URL, its data directory)."""
    data_dir = tmp_path_factory.mktemp("data")
    settings = pinned_settings(
        {"warmup": False, "data_dir": str(data_dir), "models": [{"name": "tiny"}],
         "default_model": "tiny"}
    )  # fmt: skip
    with live_server(pinned_app(settings, tiny_loaded())) as url:
        yield url, data_dir


def _submit(http: httpx.Client, archive: bytes, **form: str) -> httpx.Response:
    return http.post("/v1/audits", files={"archive": ("photos.zip", archive)}, data=form)


def _wait(http: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = http.get(f"/v1/audits/{job_id}").json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def _listed(http: httpx.Client) -> list[str]:
    return [job["id"] for job in http.get("/v1/audits").json()["audits"]]


def _settled(job_dir: Path, data_dir: Path) -> list[Path]:
    """The data directory's files once the job has written its report and tables."""
    deadline = time.monotonic() + 60
    while not (job_dir / "index.html").is_file() or list(job_dir.glob(".*.tmp")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return _files(data_dir)


# -- DELETE ---------------------------------------------------------------------------------


def test_rest_delete_of_a_finished_job_removes_it_and_its_files(
    service: tuple[str, Path],
) -> None:
    url, data_dir = service
    with httpx.Client(base_url=url, timeout=60) as http:
        job_id = _submit(http, _photos(3)).json()["id"]
        assert _wait(http, job_id)["status"] == "done"
        job_dir = data_dir / "audits" / job_id
        assert job_dir.is_dir() and job_id in _listed(http)

        deleted = http.delete(f"/v1/audits/{job_id}")  # as soon as it says done
        assert deleted.status_code == 200
        assert deleted.json() == {"id": job_id, "status": "done", "deleted": True}
        assert http.get(f"/v1/audits/{job_id}").status_code == 404
        assert http.get(f"/v1/audits/{job_id}/report").status_code == 404
        assert job_id not in _listed(http)
        assert not job_dir.exists()
        again = http.delete(f"/v1/audits/{job_id}")
        assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"


def test_rest_delete_cancels_a_running_job_then_removes_it(service: tuple[str, Path]) -> None:
    url, data_dir = service
    with httpx.Client(base_url=url, timeout=60) as http:
        job_id = _submit(http, _photos(400), batch_size="1").json()["id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/audits/{job_id}").json()["progress"]["done"] == 0:
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        cancelled = http.delete(f"/v1/audits/{job_id}")
        assert cancelled.status_code == 202  # running: cancelled, stops after its batch
        assert cancelled.json()["id"] == job_id
        job = _wait(http, job_id)
        assert job["status"] == "cancelled" and job["progress"]["done"] < 400
        removed = http.delete(f"/v1/audits/{job_id}")  # at once: it waits for the report
        assert removed.status_code == 200 and removed.json()["status"] == "cancelled"
        assert http.get(f"/v1/audits/{job_id}").status_code == 404
        assert job_id not in _listed(http) and not (data_dir / "audits" / job_id).exists()


def test_client_and_cli_delete(
    service: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, data_dir = service
    with Client(url) as client:
        first = client.submit_audit(_photos(2))["id"]
        second = client.submit_audit(_photos(2))["id"]
        third = client.submit_audit(_photos(2))["id"]
        for job_id in (first, second, third):
            while client.audit(job_id)["status"] in ("queued", "running"):
                time.sleep(0.05)
        assert client.delete_audit(first) == {"id": first, "status": "done", "deleted": True}
        with pytest.raises(CnnlensAPIError) as gone:
            client.audit(first)
        assert gone.value.status == 404

    async def delete_async() -> dict[str, Any]:
        async with AsyncClient(url) as client:
            return await client.delete_audit(second)

    assert asyncio.run(delete_async())["deleted"] is True
    capsys.readouterr()
    assert main(["audits", "--server", url]) == 0
    listing = capsys.readouterr().out
    assert third in listing and first not in listing and second not in listing
    assert main(["audits", "delete", third, "--server", url]) == 0
    assert f"audit {third}: deleted with its files" in capsys.readouterr().out
    assert main(["audits", "delete", third, "--server", url]) == 1  # gone: a clear 404
    assert "not_found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["audits", "delete", "--server", url])  # no job named: bad usage
    assert usage.value.code == 2
    for job_id in (first, second, third):
        assert not (data_dir / "audits" / job_id).exists()


# -- disk -------------------------------------------------------------------------------------


def _zip_of_zeros(members: int, member_mib: int) -> bytes:
    """The issue's upload: `members` entries of `member_mib` MiB of zeros each (~1000:1)."""
    zeros = bytes(MIB)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for index in range(members):
            with archive.open(f"photo{index:02d}.png", "w") as member:
                for _ in range(member_mib):
                    member.write(zeros)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_from_its_headers_with_nothing_written(
    service: tuple[str, Path],
) -> None:
    url, data_dir = service
    bomb = _zip_of_zeros(15, 64)  # 960 MiB inflated, every member under max_member_bytes
    assert len(bomb) < 2 * MIB
    with httpx.Client(base_url=url, timeout=120) as http:
        before, held = _listed(http), _files(data_dir)
        for _ in range(3):  # a user who tries again gets the same answer
            refused = _submit(http, bomb)
            assert refused.status_code == 413
            error = refused.json()["error"]
            assert error["code"] == "compression_ratio" and "200:1" in error["message"]
            assert "photo00.png" in error["message"] and str(data_dir) not in error["message"]
        assert _listed(http) == before
    assert _files(data_dir) == held  # not a byte of it on disk


def test_members_must_be_images_before_their_bytes_are_written(
    service: tuple[str, Path],
) -> None:
    url, data_dir = service
    nested = zipped({"inner.png": synthetic_png(0)})
    cases = {
        "text named .png": {"ok.png": synthetic_png(0), "notes.png": b"plain text, no image"},
        "zeros named .jpg": {"ok.png": synthetic_png(0), "zeros.jpg": bytes(2 * MIB)},
        "an archive named .png": {"ok.png": synthetic_png(0), "more.png": nested},
        "an empty .gif": {"ok.png": synthetic_png(0), "empty.gif": b""},
    }
    with httpx.Client(base_url=url, timeout=60) as http:
        before = _listed(http)
        held = _files(data_dir)
        for case, entries in cases.items():
            refused = _submit(http, zipped(entries))
            assert refused.status_code == 400, case
            error = refused.json()["error"]
            assert error["code"] == "bad_archive" and "is not an image" in error["message"], case
            assert _files(data_dir) == held, case  # not even ok.png was left behind
        assert _listed(http) == before
        # members that are no image the audit reads are skipped, not written
        kept = _submit(
            http, zipped({"a.png": synthetic_png(1), "README.txt": b"hi", ".x.png": b""})
        )
        assert kept.status_code == 202
        job = _wait(http, kept.json()["id"])
        assert job["progress"]["total"] == 1
        job_dir = data_dir / "audits" / job["id"]
        assert not list(job_dir.rglob("README.txt")) and not list(job_dir.rglob(".x.png"))


def test_the_data_directory_has_a_quota_by_default(tmp_path: Path) -> None:
    settings = load_settings(environ={"CNNLENS_DATA_DIR": str(tmp_path / "data")})
    limits = archive_limits(settings, tmp_path / "data" / "audits")
    free = shutil.disk_usage(tmp_path).free
    assert limits.max_data_dir_bytes is not None
    assert abs(limits.max_data_dir_bytes - free // 4) < 64 * MIB  # a quarter of the free disk
    assert limits.max_compression_ratio == 200
    fixed = load_settings(environ={"CNNLENS_DATA_DIR_MAX_BYTES": str(5 * MIB)})
    assert archive_limits(fixed, tmp_path / "x").max_data_dir_bytes == 5 * MIB
    share = load_settings(environ={"CNNLENS_DATA_DIR_DISK_SHARE": "0.5"})
    assert abs(archive_limits(share, tmp_path).max_data_dir_bytes - free // 2) < 64 * MIB  # type: ignore[operator]


def test_a_full_data_directory_refuses_uploads_and_keeps_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = pinned_settings(
        {"warmup": False, "data_dir": str(data_dir), "models": [{"name": "tiny"}],
         "default_model": "tiny", "limits": {"data_dir_max_bytes": 800_000}}
    )  # fmt: skip
    with (
        live_server(pinned_app(settings, tiny_loaded())) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        first = _submit(http, _photos(20))
        assert first.status_code == 202
        assert _wait(http, first.json()["id"])["status"] == "done"
        held = _settled(data_dir / "audits" / first.json()["id"], data_dir)
        for _ in range(5):  # the first job and its results hold about 700 kB
            refused = _submit(http, _photos(200))
            assert refused.status_code == 413, refused.text
            assert refused.json()["error"]["code"] == "quota_exceeded"
        assert _files(data_dir) == held and len(_listed(http)) == 1
        assert http.delete(f"/v1/audits/{first.json()['id']}").status_code == 200  # room again
        assert _submit(http, _photos(20)).status_code == 202
