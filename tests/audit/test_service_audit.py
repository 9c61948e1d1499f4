"""POST /v1/audits from a zip: 202 and an id, progress, done, results and the HTML report;
unsafe archives refused; a restarted service still lists its jobs."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.models import LoadedModel
from tests.audit.conftest import BROKEN, EGYPTIAN_CAT, write_photos
from tests.pinned import pinned_app, pinned_settings
from tests.uploads import zipped

MODEL = "efficientnet_lite0"


def _wait(client: TestClient, job_id: str, timeout: float = 60) -> tuple[dict[str, Any], list[int]]:
    seen, deadline = [], time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/audits/{job_id}").json()
        seen.append(body["progress"]["done"])
        if body["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return body, seen
        time.sleep(0.05)


def test_service_audit_from_a_zip(
    default_model: LoadedModel,
    tmp_path: Path,
    chelsea: Image.Image,
    coffee: Image.Image,
    astronaut: Image.Image,
) -> None:
    folder = tmp_path / "photos"
    chelsea_size = write_photos(folder, chelsea, coffee, astronaut)["chelsea.png"]
    archive = zipped({f"batch/{p.name}": p.read_bytes() for p in sorted(folder.iterdir())})
    labels = f"chelsea.png,{EGYPTIAN_CAT}\ncoffee.png,1\n".encode()  # coffee: a wrong label
    settings = pinned_settings({"data_dir": str(tmp_path / "data"), "warmup": False})
    app = pinned_app(settings, default_model)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(60)
        answer = client.post(
            "/v1/audits",
            files={
                "archive": ("photos.zip", archive, "application/zip"),
                "labels": ("labels.csv", labels, "text/csv"),
            },
            data={"batch_size": "1"},
        )
        assert answer.status_code == 202, answer.text
        job = answer.json()
        job_id = job["id"]
        assert answer.headers["location"] == f"/v1/audits/{job_id}"
        assert job["progress"]["total"] == 4 and job["status"] in ("queued", "running")

        final, seen = _wait(client, job_id)
        assert final["status"] == "done", final
        assert final["progress"] == {"done": 4, "total": 4, "errors": 1, "fraction": 1.0}
        assert seen == sorted(seen)  # progress only grows

        _check_results(client, job_id, chelsea_size)

        _check_refusals(client, tmp_path, folder, archive)
        assert client.get("/v1/audits/0123456789abcdef").status_code == 404
        assert client.get("/v1/audits/..%2F..%2Fetc").status_code == 404
        assert [j["id"] for j in client.get("/v1/audits").json()["audits"]] == [job_id]

    restarted = pinned_app(settings, default_model)
    with TestClient(restarted, raise_server_exceptions=False) as client:
        listed = client.get("/v1/audits").json()["audits"]
        assert [(j["id"], j["status"]) for j in listed] == [(job_id, "done")]
        assert "chelsea.png" in client.get(f"/v1/audits/{job_id}/report").text
        deleted = client.delete(f"/v1/audits/{job_id}")  # a finished job: gone with its files
        assert deleted.status_code == 200
        assert deleted.json() == {"id": job_id, "status": "done", "deleted": True}
        assert client.get(f"/v1/audits/{job_id}").status_code == 404
        assert client.get("/v1/audits").json()["audits"] == []
        assert not (tmp_path / "data" / "audits" / job_id).exists()


def _check_results(client: TestClient, job_id: str, chelsea_size: tuple[int, int]) -> None:
    """A finished job's results, their flagged subset and pages, an overlay and the report."""
    results = client.get(f"/v1/audits/{job_id}/results").json()
    by_name = {r["name"]: r for r in results["results"]}
    assert set(by_name) == {
        f"batch/{n}" for n in ("astronaut.png", BROKEN, "chelsea.png", "coffee.png")
    }
    assert by_name["batch/chelsea.png"]["correct"] is True
    assert by_name["batch/coffee.png"]["correct"] is False
    assert "misclassified" in by_name["batch/coffee.png"]["flags"]
    assert by_name[f"batch/{BROKEN}"]["status"] == "error"
    assert results["summary"]["accuracy"] == 0.5

    only_flagged = client.get(f"/v1/audits/{job_id}/results", params={"flagged": "true"})
    flagged_names = {r["name"] for r in only_flagged.json()["results"]}
    assert flagged_names == {n for n, r in by_name.items() if r["flags"]}
    assert f"batch/{BROKEN}" in flagged_names and "batch/coffee.png" in flagged_names
    page = client.get(f"/v1/audits/{job_id}/results", params={"offset": 1, "limit": 2})
    assert [r["index"] for r in page.json()["results"]] == [1, 2]
    assert page.json()["summary"]["images"] == 4

    chelsea_index = by_name["batch/chelsea.png"]["index"]
    overlay = client.get(f"/v1/audits/{job_id}/overlays/{chelsea_index}/grad_cam.png")
    assert overlay.status_code == 200 and overlay.content[:4] == b"\x89PNG"
    assert Image.open(io.BytesIO(overlay.content)).size == chelsea_size
    missing = client.get(f"/v1/audits/{job_id}/overlays/{chelsea_index}/saliency.png")
    assert missing.status_code == 404

    report = client.get(f"/v1/audits/{job_id}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    for name in by_name:
        assert name in report.text
    csv_text = client.get(f"/v1/audits/{job_id}/results", params={"format": "csv"}).text
    assert csv_text.splitlines()[0].startswith("index,name,status")
    assert len(csv_text.splitlines()) == 5


def _check_refusals(client: TestClient, tmp_path: Path, folder: Path, archive: bytes) -> None:
    """Unsafe and unreadable uploads, and methods an audit cannot run, are refused."""
    slip = client.post(
        "/v1/audits",
        files={
            "archive": (
                "evil.zip",
                zipped({"ok.png": b"1", "../../evil.png": b"2"}),
                "application/zip",
            )
        },
    )
    assert slip.status_code == 400
    assert slip.json()["error"]["code"] == "bad_archive" and ".." in slip.json()["error"]["message"]
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "data" / "evil.png").exists()
    not_archive = client.post(
        "/v1/audits", files={"archive": ("x.zip", b"hello", "application/zip")}
    )
    assert not_archive.status_code == 400
    # a CSV list would name files on the server: only archives are accepted here
    listing = f"{folder / 'chelsea.png'}\n".encode()
    as_csv = client.post("/v1/audits", files={"archive": ("list.csv", listing, "text/csv")})
    assert as_csv.status_code == 400 and as_csv.json()["error"]["code"] == "bad_archive"
    bad_method = client.post(
        "/v1/audits", files={"archive": ("p.zip", archive, "application/zip")},
        data={"method": "adversarial"},
    )  # fmt: skip
    assert bad_method.status_code == 422


def test_unfinished_audit_resumes_when_the_service_starts(
    default_model: LoadedModel, photos: Path, tmp_path: Path
) -> None:
    from cnnlens.audit import AuditConfig
    from cnnlens.audit.jobs import AuditJobs
    from tests.audit.test_jobs import BlockingRunner

    archive = zipped({p.name: p.read_bytes() for p in sorted(photos.iterdir())})
    never_ready = BlockingRunner(default_model, ready=False)
    stopped = AuditJobs(tmp_path / "data" / "audits", never_ready)
    job = stopped.submit(archive, "p.zip", AuditConfig(batch_size=2))
    stopped.close()  # a service that stopped before it could run the job

    settings = pinned_settings({"data_dir": str(tmp_path / "data"), "warmup": False})
    app = pinned_app(settings, default_model)
    with TestClient(app):
        jobs = app.state.audits  # opened at startup: no request needed
        assert jobs is not None
        final = jobs.wait(job.id, 60)
        assert final.status == "done" and final.done == 4 and final.errors == 1
    assert app.state.audits is None  # closed with the app


def test_a_fresh_data_dir_stays_untouched(default_model: LoadedModel, tmp_path: Path) -> None:
    settings = pinned_settings({"data_dir": str(tmp_path / "data"), "warmup": False})
    with TestClient(pinned_app(settings, default_model)) as client:
        assert client.get("/healthz").status_code == 200
    assert not (tmp_path / "data").exists()
