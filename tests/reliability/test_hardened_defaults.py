"""The default deployment as another website or a hostile user meets it, over TCP: foreign Host
names and origins refused, security headers on every route, exports and reports that user
strings cannot break, no 500 and no echo of a megabyte from any form field."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from cnnlens.cli import main
from cnnlens.html_safety import inline_hashes
from cnnlens.models import LoadedModel
from cnnlens.service.settings import SettingsError, load_settings
from tests.audit.tiny_model import synthetic_png, tiny_loaded
from tests.client.live_server import live_server
from tests.hostile_names import FORMULA_NAMES, HOSTILE_NAMES
from tests.pinned import pinned_app, pinned_settings
from tests.reliability.conftest import LiveServer
from tests.reliability.test_hostile_requests import SMALL_PNG
from tests.uploads import small_png, zipped

EGYPTIAN_CAT = 285
KEY = "a key only the operator's scripts hold"
EVIL = "https://evil.example"


def _wait_done(http: httpx.Client, job_id: str, headers: dict[str, str] | None = None) -> Any:
    deadline = time.monotonic() + 180
    while True:
        job = http.get(f"/v1/audits/{job_id}", headers=headers).json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


@pytest.fixture(scope="module")
def hostile_job(live_server: LiveServer, chelsea: Image.Image) -> str:
    """A finished audit of images with hostile names, on the shared live server."""
    png = small_png(chelsea)
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        answer = http.post(
            "/v1/audits", files={"archive": ("h.zip", zipped(dict.fromkeys(HOSTILE_NAMES, png)))}
        )
        assert answer.status_code == 202, answer.text
        job = _wait_done(http, answer.json()["id"])
    assert job["status"] == "done" and job["progress"]["total"] == len(HOSTILE_NAMES)
    return str(job["id"])


# -- 1. other websites: Host names and origins ----------------------------------------------


def test_a_foreign_host_name_is_refused_without_keys(live_server: LiveServer) -> None:
    port = live_server.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        rebound = http.get("/v1/audits", headers={"Host": "attacker.example"})  # DNS rebinding
        assert rebound.status_code == 400
        error = rebound.json()["error"]
        assert error["code"] == "host_not_allowed" and "attacker.example" in error["message"]
        assert "audits" not in rebound.text
        for host in ("attacker.example:" + port, "127.0.0.1.attacker.example", "", "0.0.0.0"):
            assert http.get("/v1/models", headers={"Host": host}).status_code == 400
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LocalHost.", f"[::1]:{port}"):
            assert http.get("/v1/audits", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_add_names_and_apply_with_keys(default_model: LoadedModel) -> None:
    keyless = pinned_settings({"warmup": False, "allowed_hosts": ["cnnlens.example"]})
    keyed = pinned_settings({"warmup": False, "api_key_sha256": [_sha(KEY)]})
    keyed_named = pinned_settings(
        {"warmup": False, "api_key_sha256": [_sha(KEY)], "allowed_hosts": ["api.example"]}
    )
    auth = {"X-API-Key": KEY}
    with live_server(pinned_app(keyless, default_model)) as url:
        assert httpx.get(f"{url}/v1/models", headers={"Host": "cnnlens.example:8000"}).is_success
        assert httpx.get(f"{url}/v1/models", headers={"Host": "evil.example"}).status_code == 400
    with live_server(pinned_app(keyed, default_model)) as url:  # keys, no allowed_hosts: no check
        assert httpx.get(f"{url}/v1/models", headers={**auth, "Host": "any.example"}).is_success
    with live_server(pinned_app(keyed_named, default_model)) as url:
        assert httpx.get(f"{url}/v1/models", headers={**auth, "Host": "api.example"}).is_success
        assert httpx.get(f"{url}/v1/models", headers=auth).is_success  # 127.0.0.1: loopback
        refused = httpx.get(f"{url}/v1/models", headers={**auth, "Host": "evil.example"})
        assert refused.status_code == 400


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_a_foreign_origin_cannot_change_state(
    live_server: LiveServer, hostile_job: str, chelsea: Image.Image
) -> None:
    """What a page on another site can send without a preflight: a multipart POST (a form, or
    fetch with mode "no-cors"), and a DELETE from a page the service allowed nothing to."""
    archive = zipped({"cat.png": small_png(chelsea)})
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        before = [job["id"] for job in http.get("/v1/audits").json()["audits"]]
        for origin in (EVIL, "null", "http://127.0.0.1:1", "http://localhost.evil.example"):
            posted = http.post(
                "/v1/audits", files={"archive": ("a.zip", archive)}, headers={"Origin": origin}
            )
            assert posted.status_code == 403, origin
            error = posted.json()["error"]
            assert error["code"] == "cross_origin_refused" and "cors_origins" in error["message"]
            explained = http.post(
                "/v1/explain", files={"image": ("c.png", SMALL_PNG)}, headers={"Origin": origin}
            )
            assert explained.status_code == 403
        deleted = http.delete(f"/v1/audits/{hostile_job}", headers={"Origin": EVIL})
        assert deleted.status_code == 403
        assert [job["id"] for job in http.get("/v1/audits").json()["audits"]] == before
        # reading is CORS's business: no Access-Control-Allow-Origin for a foreign origin
        read = http.get("/v1/audits", headers={"Origin": EVIL})
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers
        # the service's own page: its Origin is the service's own (as the web page sends it)
        own = http.post(
            "/v1/explain", files={"image": ("c.png", SMALL_PNG)},
            headers={"Origin": live_server.url},
        )  # fmt: skip
        assert own.status_code == 200, own.text
        # clients that send no Origin (this client, the CLI, curl) are not affected
        assert http.post("/v1/explain", files={"image": ("c.png", SMALL_PNG)}).status_code == 200


def test_cors_origins_may_post(default_model: LoadedModel) -> None:
    settings = pinned_settings(
        {
            "warmup": False,
            "api_key_sha256": [_sha(KEY)],
            "cors_origins": [EVIL.replace("evil", "dash")],
        }
    )
    with (
        live_server(pinned_app(settings, default_model)) as url,
        httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY}) as http,
    ):
        dashboard = http.post(
            "/v1/explain", files={"image": ("c.png", SMALL_PNG)},
            headers={"Origin": "https://dash.example"},
        )  # fmt: skip
        assert dashboard.status_code == 200
        assert dashboard.headers["access-control-allow-origin"] == "https://dash.example"
        other = http.post(
            "/v1/explain", files={"image": ("c.png", SMALL_PNG)}, headers={"Origin": EVIL}
        )
        assert other.status_code == 403  # keys do not open the door to every origin


@pytest.mark.parametrize("origin", ["*", "null"])
def test_wildcard_origins_refuse_to_start_unless_meant(origin: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={"CNNLENS_CORS_ORIGINS": origin})
    assert "allow_any_origin" in refused.value.message
    meant = load_settings(
        environ={"CNNLENS_CORS_ORIGINS": origin, "CNNLENS_ALLOW_ANY_ORIGIN": "true"}
    )
    assert meant.cors_origins == (origin,)
    with pytest.raises(SettingsError, match="no path and no trailing slash"):
        load_settings(environ={"CNNLENS_CORS_ORIGINS": "https://dash.example/"})


def test_serve_refuses_a_wildcard_origin_with_the_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNLENS_CORS_ORIGINS", "*")
    status = main(["serve", "--port", "1"])  # refused before any model loads or port binds
    assert status != 0
    err = capsys.readouterr().err
    assert "allow_any_origin" in err and "Traceback" not in err


# -- 2. headers and policies ----------------------------------------------------------------


SAMPLE_PATH_VALUES = {
    "name": "efficientnet_lite0", "index": "0", "method": "grad_cam", "layer": "blocks.3",
    "channel": "0",
}  # fmt: skip


def _assert_hardened(response: httpx.Response, where: str) -> None:
    headers = response.headers
    assert headers.get("x-content-type-options") == "nosniff", where
    assert headers.get("referrer-policy") == "no-referrer", where
    assert headers.get("x-frame-options") == "DENY", where
    policy = headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, where
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, where


def test_every_route_carries_the_security_headers(
    live_server: LiveServer, hostile_job: str
) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        schema = http.get("/openapi.json").json()
        walked = 0
        for path, operations in schema["paths"].items():
            for verb in operations:
                values = {**SAMPLE_PATH_VALUES, "job_id": hostile_job}
                if verb == "delete":
                    values["job_id"] = "0" * 32  # no such job: the finished one stays
                url = path.format(**values)
                response = http.request(verb.upper(), url)
                assert response.status_code < 500, (verb, url, response.text[:200])
                _assert_hardened(response, f"{verb} {url} -> {response.status_code}")
                walked += 1
        assert walked == sum(len(ops) for ops in schema["paths"].values()) >= 19
        extra = ["/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/web/app.js",
                 "/web/style.css", "/static/docs/swagger-ui.css", "/no/such/route",
                 f"/v1/audits/{hostile_job}/results?format=csv",
                 f"/v1/audits/{hostile_job}/results?format=jsonl"]  # fmt: skip
        for url in extra:
            _assert_hardened(http.get(url), url)
        # refusals made before any route: 400 host, 403 origin, 413 body, 405 method
        _assert_hardened(http.get("/v1/models", headers={"Host": "evil.example"}), "400")
        _assert_hardened(http.post("/v1/explain", headers={"Origin": EVIL}), "403")
        too_large = _declared_body(live_server.url, 10**12)  # refused from its headers
        assert too_large.startswith(b"HTTP/1.1 413")
        head = too_large.split(b"\r\n\r\n")[0].decode().lower()
        for header in ("x-content-type-options: nosniff", "x-frame-options: deny",
                       "referrer-policy: no-referrer", "frame-ancestors 'none'"):  # fmt: skip
            assert header in head
        _assert_hardened(http.put("/v1/models"), "405")


def _declared_body(url: str, length: int) -> bytes:
    """The answer to a POST that declares `length` body bytes and sends none."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"POST /v1/explain HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := connection.recv(4096)):
            answer += chunk
    return answer


def test_pages_have_their_own_policies(live_server: LiveServer, hostile_job: str) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        page = http.get("/").headers["content-security-policy"]
        assert "script-src 'self'" in page and "connect-src 'self'" in page
        docs = http.get("/docs")
        inline = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
        assert inline and all(
            h in docs.headers["content-security-policy"] for h in inline_hashes(*inline)
        )
        report = http.get(f"/v1/audits/{hostile_job}/report")
        policy = report.headers["content-security-policy"]
        scripts = re.findall(r"<script>(.*?)</script>", report.text, re.DOTALL)
        styles = re.findall(r"<style>(.*?)</style>", report.text, re.DOTALL)
        assert scripts and styles
        # every inline script and style of the report, as written, is allowed by its hash
        for text in scripts + styles:
            assert inline_hashes(text)[0] in policy
        assert "script-src 'sha256-" in policy and "img-src data:" in policy
        assert "connect-src" not in policy  # nothing fetched: default-src 'none'
        meta = re.search(
            r"<meta http-equiv='Content-Security-Policy' content=\"([^\"]+)\"", report.text
        )
        assert meta is not None and meta.group(1).split("; ")[:3] == policy.split("; ")[:3]


# -- 3. and 4. reports and exports that user strings cannot break ------------------------


def test_the_reports_embedded_json_escapes_every_html_breaker(
    live_server: LiveServer, hostile_job: str
) -> None:
    html = httpx.get(f"{live_server.url}/v1/audits/{hostile_job}/report", timeout=60).text
    start = html.index("<script id='rows' type='application/json'>") + len(
        "<script id='rows' type='application/json'>"
    )
    embedded = html[start : html.index("</script>", start)]
    for breaker in ("<", ">", "&", "\u2028", "\u2029"):
        assert breaker not in embedded
    rows = json.loads(embedded)
    assert len(rows) == len(HOSTILE_NAMES)
    texts = " ".join(row["t"] for row in rows)
    for name in HOSTILE_NAMES:
        assert name.lower() in texts  # each row's filter text: the name itself, unharmed


def test_every_export_is_neutralized(
    live_server: LiveServer, hostile_job: str, tmp_path: Path, chelsea: Image.Image
) -> None:
    url = f"{live_server.url}/v1/audits/{hostile_job}/results"
    lines = httpx.get(url, params={"format": "jsonl"}, timeout=60).text.splitlines()
    names = {json.loads(line)["name"] for line in lines}
    table = httpx.get(url, params={"format": "csv"}, timeout=60).text
    csv_names = {row["name"] for row in csv.DictReader(io.StringIO(table))}
    for formula in FORMULA_NAMES:
        assert "'" + formula in names and formula not in names
        assert "'" + formula in csv_names and formula not in csv_names
    # `cnnlens audit --server` saves what the service exports
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / FORMULA_NAMES[0]).write_bytes(small_png(chelsea))
    out = tmp_path / "out"
    assert main(["audit", str(folder), "--server", live_server.url, "--out", str(out), "-q"]) == 0
    saved = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [record["name"] for record in saved] == ["'" + FORMULA_NAMES[0]]
    assert next(csv.DictReader(io.StringIO((out / "results.csv").read_text())))["name"] == (
        "'" + FORMULA_NAMES[0]
    )


# -- 5. labels ------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["²", "２８５", "-1", "+285", "٢٨٥", "285.0", "tabby kat"])
def test_labels_that_name_no_class_are_a_422_naming_the_row(
    live_server: LiveServer, chelsea: Image.Image, label: str
) -> None:
    archive = zipped({"cat.png": small_png(chelsea), "cup.png": small_png(chelsea)})
    labels = f"cup.png,1\ncat.png,{label}\n".encode()
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        before = http.get("/v1/audits").json()["audits"]
        answer = http.post(
            "/v1/audits", files={"archive": ("a.zip", archive), "labels": ("l.csv", labels)}
        )
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "bad_labels" and f"'cat.png,{label}'" in error["message"]
        assert http.get("/v1/audits").json()["audits"] == before  # nothing queued or kept
        explained = http.post(
            "/v1/explain", files={"image": ("c.png", SMALL_PNG)}, data={"target": label}
        )
        assert explained.status_code == 422 and explained.json()["error"]["code"] == "bad_target"


def test_labels_are_indices_in_ascii_or_folded_names(
    live_server: LiveServer, chelsea: Image.Image
) -> None:
    names = ("egyptian CAT", "ＥＧＹＰＴＩＡＮ Ｃａｔ", "Egyptian cat", str(EGYPTIAN_CAT))
    archive = zipped({f"cat{i}.png": small_png(chelsea) for i in range(len(names))})
    labels = "".join(f"cat{i}.png,{name}\n" for i, name in enumerate(names)).encode("utf-8")
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        answer = http.post(
            "/v1/audits", files={"archive": ("a.zip", archive), "labels": ("l.csv", labels)}
        )
        assert answer.status_code == 202, answer.text
        job = _wait_done(http, answer.json()["id"])
        records = http.get(f"/v1/audits/{job['id']}/results").json()["results"]
    assert [record["label"] for record in records] == [EGYPTIAN_CAT] * len(names)


# -- 6. and 7. form fields and echoed values ------------------------------------------------


def _multipart_routes(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, form schema) of every POST route taking a form."""
    routes = []
    for path, operations in schema["paths"].items():
        body = operations.get("post", {}).get("requestBody", {}).get("content", {})
        for kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            if kind in body:
                reference = body[kind]["schema"]["$ref"].rsplit("/", 1)[-1]
                routes.append((path, schema["components"]["schemas"][reference]))
    return routes


def _files_for(form: dict[str, Any]) -> dict[str, tuple[str, bytes]]:
    """A valid upload for each file field of a form."""
    uploads = {
        "archive": ("a.zip", zipped({"a.png": SMALL_PNG})),
        "labels": ("l.csv", b"a.png,1\n"),
        "boxes": ("b.csv", b"a.png,0,0,8,8\n"),
    }
    files = {}
    for name, field in form["properties"].items():
        text = json.dumps(field)
        if '"binary"' in text or "contentMediaType" in text:
            files[name] = uploads.get(name, ("i.png", SMALL_PNG))
    return files


def test_unknown_form_fields_are_refused_on_every_form_route(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        routes = _multipart_routes(http.get("/openapi.json").json())
        assert {path for path, _ in routes} >= {"/v1/explain", "/v1/compare", "/v1/audits"}
        before = http.get("/v1/audits").json()["audits"]
        for path, form in routes:
            answer = http.post(
                path, files=_files_for(form), data={"source": "file:///etc", "colour": "red"}
            )
            assert answer.status_code == 422, (path, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "unknown_field", path
            assert "'source'" in error["message"] and "'colour'" in error["message"], path
        assert http.get("/v1/audits").json()["audits"] == before


def test_a_huge_value_is_never_echoed_whole(live_server: LiveServer) -> None:
    huge = "Z" * 100_000
    with httpx.Client(base_url=live_server.url, timeout=120) as http:
        for path, form in _multipart_routes(http.get("/openapi.json").json()):
            files = _files_for(form)
            for name in form["properties"]:
                if name in files:
                    continue
                answer = http.post(path, files=files, data={name: huge})
                where = f"{path} {name}: {answer.status_code}"
                assert 400 <= answer.status_code < 500, where
                assert len(answer.content) < 2_000 and "Z" * 100 not in answer.text, where
        for url in (f"/v1/models/{huge[:8000]}", f"/v1/audits/{huge[:8000]}",
                    f"/v1/audits/{'0' * 32}/overlays/0/{huge[:8000]}.png"):  # fmt: skip
            answer = http.get(url)
            assert answer.status_code == 404 and len(answer.content) < 2_000, url


# -- 9. report links past the embedded rows -------------------------------------------------


def test_report_overlay_links_resolve_past_500_rows(tmp_path: Path) -> None:
    tiny = tiny_loaded()
    settings = pinned_settings(
        {"warmup": False, "data_dir": str(tmp_path / "data"), "models": [{"name": "tiny"}],
         "default_model": "tiny"}
    )  # fmt: skip
    archive = zipped({f"img{i:04d}.png": synthetic_png(i) for i in range(505)})
    with (
        live_server(pinned_app(settings, tiny)) as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        answer = http.post("/v1/audits", files={"archive": ("a.zip", archive)},
                           data={"batch_size": "64"})  # fmt: skip
        assert answer.status_code == 202, answer.text
        job = _wait_done(http, answer.json()["id"])
        assert job["status"] == "done"
        report_url = httpx.URL(f"{url}/v1/audits/{job['id']}/report")
        html = http.get(report_url).text
        start = html.index("<script id='rows' type='application/json'>")
        rows = json.loads(html[start + 42 : html.index("</script>", start)])
        hrefs = [href for row in rows for href in re.findall(r"href='([^']+)'", row["h"])]
        links = [href for href in hrefs if not href.startswith("#image-")]  # not detail views
        assert len(rows) == 505 and len(links) == 5  # the rows past the 500 embedded ones
        for href in links:
            overlay = http.get(report_url.join(href))
            assert overlay.status_code == 200, href
            assert overlay.headers["content-type"] == "image/png"
            assert overlay.content.startswith(b"\x89PNG")
