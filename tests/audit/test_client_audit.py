"""The audit calls of Client: submit, follow, read the results and the report, list, delete."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import pytest

from cnnlens.client import Client, CnnlensAPIError
from cnnlens.models import LoadedModel
from tests.audit.conftest import BROKEN, EGYPTIAN_CAT
from tests.client.conftest import wait_ready
from tests.pinned import pinned_app, pinned_settings


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, arcname=path.name)
    return buffer.getvalue()


def test_client_runs_an_audit(photos: Path, tmp_path: Path, default_model: LoadedModel) -> None:
    settings = pinned_settings({"data_dir": str(tmp_path / "data"), "warmup": False})
    app = pinned_app(settings, default_model)
    labels = f"chelsea.png,{EGYPTIAN_CAT}\n".encode()
    with Client.for_app(app) as client:
        wait_ready(client)
        job = client.submit_audit(
            _zip(photos), filename="p.zip", labels=labels, options={"batch_size": 2}
        )
        assert job["status"] in ("queued", "running", "done") and job["links"]["self"]
        deadline = time.monotonic() + 300  # generous: a bound, not a timing assertion
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.2)
            job = client.audit(job["id"])
        assert job["status"] == "done" and job["progress"]["total"] == 4
        page = client.audits(limit=10)
        assert [listed["id"] for listed in page["audits"]] == [job["id"]]
        assert page["next_cursor"] is None

        table = client.audit_results(job["id"])
        records = {record["name"]: record for record in table["results"]}
        assert set(records) == {"astronaut.png", BROKEN, "chelsea.png", "coffee.png"}
        assert records["chelsea.png"]["correct"] is True
        lines = client.audit_results(job["id"], "jsonl").decode().splitlines()
        assert {json.loads(line)["name"] for line in lines} == set(records)
        assert client.audit_results(job["id"], "csv").startswith(b"index,name,status")
        assert b"chelsea.png" in client.audit_report(job["id"])

        with pytest.raises(CnnlensAPIError) as missing:
            client.audit("0" * 16)
        assert missing.value.status == 404
        deleted = client.delete_audit(job["id"])  # a finished job: removed with its files
        assert deleted == {"id": job["id"], "status": "done", "deleted": True}
        with pytest.raises(CnnlensAPIError) as gone:
            client.audit(job["id"])
        assert gone.value.status == 404
        assert client.audits(limit=10)["audits"] == []
