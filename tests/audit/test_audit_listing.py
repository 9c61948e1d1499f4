"""GET /v1/audits a page at a time, each API key seeing only its own jobs; and a REST request
that cannot make the server read a path or a URL of its choosing."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from cnnlens.models import LoadedModel
from cnnlens.service import Settings, create_app
from cnnlens.service.settings import hash_api_key


def _zip(image: Image.Image, count: int = 1) -> bytes:
    buffer, png = io.BytesIO(), io.BytesIO()
    image.resize((48, 32)).save(png, format="PNG")
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            archive.writestr(f"cat{index}.png", png.getvalue())
    return buffer.getvalue()


def _submit(client: TestClient, archive: bytes, key: str | None = None, **form: str) -> str:
    headers = {"X-API-Key": key} if key else {}
    answer = client.post(
        "/v1/audits", files={"archive": ("a.zip", archive, "application/zip")}, data=form,
        headers=headers,
    )  # fmt: skip
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _wait_all(client: TestClient, ids: list[str], key: str | None = None) -> None:
    headers = {"X-API-Key": key} if key else {}
    deadline = time.monotonic() + 120  # a bound, not a timing assertion
    for job_id in ids:
        while time.monotonic() < deadline:
            if client.get(f"/v1/audits/{job_id}", headers=headers).json()["status"] == "done":
                break
            time.sleep(0.05)


def _pages(client: TestClient, limit: int, key: str | None = None) -> list[list[str]]:
    headers = {"X-API-Key": key} if key else {}
    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": limit}
    for _ in range(20):  # bounded: a listing that never ends fails below
        body = client.get("/v1/audits", params=params, headers=headers).json()
        pages.append([job["id"] for job in body["audits"]])
        if body["next_cursor"] is None:
            return pages
        params["cursor"] = body["next_cursor"]
    raise AssertionError("the listing never ended")


def _app(tmp_path: Path, model: LoadedModel, **settings: Any) -> Any:
    values = {"data_dir": str(tmp_path / "data"), "warmup": False, **settings}
    return create_app(Settings.model_validate(values), models={model.name: model})


def test_listing_pages_newest_first(
    default_model: LoadedModel, tmp_path: Path, chelsea: Image.Image
) -> None:
    with TestClient(_app(tmp_path, default_model), raise_server_exceptions=False) as client:
        assert client.app.state.service.wait_ready(60)  # type: ignore[attr-defined]
        ids = [_submit(client, _zip(chelsea, count)) for count in range(1, 6)]
        _wait_all(client, ids)
        pages = _pages(client, limit=2)
        assert pages == [ids[4:2:-1], ids[2:0:-1], ids[:1]]  # newest first, 2 + 2 + 1
        assert _pages(client, limit=200) == [ids[::-1]]
        for bad in ({"limit": 0}, {"limit": 201}, {"cursor": "not-a-cursor"}, {"cursor": "eA=="}):
            answer = client.get("/v1/audits", params=bad)
            assert answer.status_code == 422 and answer.json()["error"]["code"], bad


def test_each_key_sees_only_its_own_jobs(
    default_model: LoadedModel, tmp_path: Path, chelsea: Image.Image
) -> None:
    keys = {"alice": "alice-key-1", "bob": "bob-key-2"}
    app = _app(tmp_path, default_model, api_key_sha256=[hash_api_key(k) for k in keys.values()])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(60)
        alice = [_submit(client, _zip(chelsea, n), keys["alice"]) for n in (1, 2, 3)]
        bob = [_submit(client, _zip(chelsea, n), keys["bob"]) for n in (1, 2)]
        _wait_all(client, alice, keys["alice"])
        _wait_all(client, bob, keys["bob"])
        assert _pages(client, 2, keys["alice"]) == [alice[:0:-1], alice[:1]]
        assert _pages(client, 2, keys["bob"]) == [bob[::-1]]
        as_bob = {"X-API-Key": keys["bob"]}
        for path in ("", "/results", "/report", "/overlays/0/grad_cam.png"):
            answer = client.get(f"/v1/audits/{alice[0]}{path}", headers=as_bob)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert client.delete(f"/v1/audits/{alice[0]}", headers=as_bob).status_code == 404
        assert client.get("/v1/audits").status_code == 401
        mine = client.get(f"/v1/audits/{alice[0]}/results", headers={"X-API-Key": keys["alice"]})
        assert mine.status_code == 200 and len(mine.json()["results"]) == 1


FIELDS = ("source", "path", "uri", "url", "input", "out", "out_dir", "ray_address")


def test_a_request_cannot_name_a_path_or_url(
    default_model: LoadedModel, tmp_path: Path, chelsea: Image.Image
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    chelsea.save(elsewhere / "secret.png")
    app = _app(tmp_path, default_model)
    schema = app.openapi()
    body = schema["paths"]["/v1/audits"]["post"]["requestBody"]["content"]["multipart/form-data"]
    fields = schema["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert "archive" in fields["properties"]
    assert not set(FIELDS) & set(fields["properties"])  # no form field takes a location
    with TestClient(app, raise_server_exceptions=False) as client:
        assert app.state.service.wait_ready(60)
        for value in (str(elsewhere), f"file://{elsewhere}", "s3://bucket/prefix"):
            answer = client.post(
                "/v1/audits", files={"archive": ("a.zip", _zip(chelsea, 2), "application/zip")},
                data=dict.fromkeys(FIELDS, value),
            )  # fmt: skip
            assert answer.status_code == 422  # a field the route does not take: refused
            error = answer.json()["error"]
            assert error["code"] == "unknown_field" and "'source'" in error["message"]
        assert client.get("/v1/audits").json()["audits"] == []  # nothing was queued
        job_id = _submit(client, _zip(chelsea, 2))
        _wait_all(client, [job_id])
        results = client.get(f"/v1/audits/{job_id}/results").json()["results"]
        assert [r["name"] for r in results] == ["cat0.png", "cat1.png"]  # the upload's only
        assert all(r["status"] == "ok" for r in results)
        job_dir = tmp_path / "data" / "audits" / job_id
        assert not any(p.name == "secret.png" for p in job_dir.rglob("*"))
