"""Image retrieval on every front: the CLI over an audit folder, and REST, Client,
AsyncClient and the CLI against a service audit of the same photos, all agree."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnnlens.cli import main
from cnnlens.client import AsyncClient, Client, CnnlensAPIError
from cnnlens.models import LoadedModel
from tests.client.live_server import live_server
from tests.features.conftest import PhotoAudit
from tests.pinned import pinned_app, pinned_settings

QUERY = "chelsea_0.png"


def _cli_json(capsys: pytest.CaptureFixture[str], *arguments: str) -> list[dict[str, Any]]:
    assert main(["neighbors", *arguments, "--json"]) == 0
    found: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return found


def test_cli_finds_the_image_and_its_audited_neighbours(
    photo_audit: PhotoAudit, capsys: pytest.CaptureFixture[str]
) -> None:
    query = photo_audit.photos.folder / QUERY
    found = _cli_json(capsys, str(query), "--audit", str(photo_audit.out), "-k", "6")
    assert [entry["name"] for entry in found][0] == QUERY  # itself, at distance ~0
    assert found[0]["distance"] < 1e-4
    expected = photo_audit.records[QUERY]["neighbors"]
    assert [entry["name"] for entry in found[1:]] == [entry["name"] for entry in expected]
    for entry, stored in zip(found[1:], expected, strict=True):
        assert entry["distance"] == pytest.approx(stored["distance"], abs=1e-4)
        record = photo_audit.records[entry["name"]]
        assert (entry["label_name"], entry["predicted_name"]) == (
            record["label_name"], record["predicted_name"],
        )  # fmt: skip
    # the table: one row per neighbour, nearest first
    assert main(["neighbors", str(query), "--audit", str(photo_audit.out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "distance", "label_name", "predicted_name"]
    assert lines[2].startswith(QUERY) and len(lines) == 2 + 5


def test_cli_refuses_a_folder_without_an_audit(
    tmp_path: Path, photo_audit: PhotoAudit, capsys: pytest.CaptureFixture[str]
) -> None:
    query = str(photo_audit.photos.folder / QUERY)
    with pytest.raises(SystemExit) as refused:
        main(["neighbors", query, "--audit", str(tmp_path)])
    assert refused.value.code == 2 and "holds no audit" in capsys.readouterr().err


@pytest.fixture(scope="module")
def served_audit(
    photo_audit: PhotoAudit, default_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A live service that audited the same photos: (its URL, the job id)."""
    data = tmp_path_factory.mktemp("service-data")
    app = pinned_app(pinned_settings({"data_dir": str(data), "warmup": False}), default_model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(photo_audit.photos.folder.iterdir()):
            archive.write(path, arcname=path.name)
    with live_server(app) as url, Client(url) as client:
        job = client.submit_audit(
            buffer.getvalue(), filename="photos.zip", labels=photo_audit.photos.labels,
            options={"exemplars": ["blocks.2"], "exemplars_k": 4},
        )  # fmt: skip
        with pytest.raises(CnnlensAPIError) as early:  # no index before the audit ends
            client.neighbors(job["id"], photo_audit.photos.folder / QUERY)
        assert early.value.status == 409 and early.value.code == "no_index"
        deadline = time.monotonic() + 600  # a bound, not a timing assertion
        while job["status"] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.audit(job["id"])
        assert job["status"] == "done"
        yield url, job["id"]


def test_rest_client_and_cli_neighbours_agree(
    served_audit: tuple[str, str], photo_audit: PhotoAudit, capsys: pytest.CaptureFixture[str]
) -> None:
    url, job_id = served_audit
    query = photo_audit.photos.folder / QUERY
    with Client(url) as client:
        from_client = client.neighbors(job_id, query, k=5)
        summary = client.audit_results(job_id)["summary"]["features"]

    async def ask() -> list[dict[str, Any]]:
        async with AsyncClient(url) as async_client:
            return await async_client.neighbors(job_id, query.read_bytes(), k=5)

    from_async = asyncio.run(ask())
    from_cli = _cli_json(capsys, str(query), "--audit", job_id, "--server", url)
    assert from_client == from_async == from_cli
    assert [e["name"] for e in from_client] == [QUERY] + [
        e["name"] for e in photo_audit.records[QUERY]["neighbors"][:4]
    ]
    local = _cli_json(capsys, str(query), "--audit", str(photo_audit.out))
    for served, here in zip(from_client, local, strict=True):
        assert served["name"] == here["name"]
        assert served["distance"] == pytest.approx(here["distance"], abs=1e-4)
    assert summary["near_duplicates"]["groups"] == len(photo_audit.photos.copies)


def test_neighbours_route_refuses_bad_requests(
    served_audit: tuple[str, str], photo_audit: PhotoAudit
) -> None:
    url, job_id = served_audit
    query = photo_audit.photos.folder / QUERY
    with Client(url) as client:
        for job, k, status in (("0" * 16, 5, 404), (job_id, 0, 422), (job_id, 1000, 422)):
            with pytest.raises(CnnlensAPIError) as refused:
                client.neighbors(job, query, k=k)
            assert refused.value.status == status
        with pytest.raises(CnnlensAPIError) as not_an_image:
            client.neighbors(job_id, b"not an image", k=3)
        assert not_an_image.value.status in (400, 415)


def test_exemplars_are_served(served_audit: tuple[str, str]) -> None:
    import httpx
    from PIL import Image

    url, job_id = served_audit
    with Client(url) as client:
        exemplars = client.audit_exemplars(job_id)
    assert list(exemplars) == ["blocks.2"]
    channels = exemplars["blocks.2"]
    assert len(channels) == 40  # blocks.2 of efficientnet_lite0 has 40 channels
    for entries in channels.values():
        assert len(entries) == 4
        activations = [entry["activation"] for entry in entries]
        assert activations == sorted(activations, reverse=True)
        x0, y0, x1, y1 = entries[0]["box"]
        assert 0 <= x0 < x1 and 0 <= y0 < y1
    sheet = httpx.get(f"{url}/v1/audits/{job_id}/exemplars/blocks.2/0.png")
    assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(sheet.content)).size == (2 * 96, 2 * 96)
    for path in ("exemplars/blocks.3/0.png", "exemplars/blocks.2/99.png"):
        assert httpx.get(f"{url}/v1/audits/{job_id}/{path}").status_code == 404
