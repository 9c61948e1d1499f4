"""Security: hashed API keys compared in constant time, CORS off by default, weights only
from configured files pinned by sha256 and read with weights_only=True, and no request
value ever reaching a filesystem path or a URL."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from pydantic import ValidationError

from cnnlens.models import LoadedModel
from cnnlens.models.weights import sha256_of_file
from cnnlens.service import deps
from cnnlens.service.server import load_configured_model
from cnnlens.service.settings import ModelConfig, Settings, SettingsError, load_settings
from tests.pinned import pinned_app, pinned_settings
from tests.reliability.conftest import LiveServer, start_server
from tests.reliability.test_hostile_requests import SMALL_PNG

KEY = "correct horse battery staple"


def test_api_keys_are_kept_only_as_sha256(tmp_path: Path) -> None:
    config = tmp_path / "service.json"
    config.write_text(json.dumps({"api_keys": [KEY]}))
    settings = load_settings(config, environ={"CNNLENS_API_KEYS": "second-key"})
    assert set(settings.api_key_sha256) == {
        hashlib.sha256(KEY.encode()).hexdigest(),
        hashlib.sha256(b"second-key").hexdigest(),
    }
    dumped = settings.model_dump_json()
    assert KEY not in dumped and "second-key" not in dumped
    with pytest.raises(SettingsError):
        load_settings(environ={"CNNLENS_API_KEY_SHA256": "not-a-digest"})


@pytest.fixture(scope="module")
def keyed_server(default_model: LoadedModel) -> Iterator[str]:
    settings = pinned_settings(
        {
            "warmup": False,
            "api_key_sha256": [hashlib.sha256(KEY.encode()).hexdigest(), "ab" * 32],
            "cors_origins": ["https://dashboard.example"],
        }
    )
    server, thread, url = start_server(pinned_app(settings, default_model))
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_api_key_is_required_and_compared_in_constant_time(
    keyed_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[str, str]] = []
    real_compare = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    with httpx.Client(base_url=keyed_server, timeout=30) as client:
        missing = client.get("/v1/models")
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"]
        assert missing.json()["error"]["code"] == "unauthorized"
        wrong = client.get("/v1/models", headers={"X-API-Key": KEY + "x"})
        assert wrong.status_code == 401
        assert len(compared) == 2  # every stored digest, no early exit on a mismatch
        compared.clear()
        right = client.get("/v1/models", headers={"X-API-Key": KEY})
        assert right.status_code == 200
        assert len(compared) == 2  # no early exit on a match either
        assert compared[0][0] == hashlib.sha256(KEY.encode()).hexdigest()  # digests compared
        assert client.get("/healthz").status_code == 200  # probes stay public
        explain = client.post("/v1/explain", files={"image": ("p.png", SMALL_PNG)})
        assert explain.status_code == 401


def test_cors_answers_only_configured_origins(keyed_server: str, http: httpx.Client) -> None:
    preflight = {
        "Origin": "https://dashboard.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key",
    }
    allowed = httpx.options(f"{keyed_server}/v1/explain", headers=preflight)
    assert allowed.headers.get("access-control-allow-origin") == "https://dashboard.example"
    other = httpx.options(
        f"{keyed_server}/v1/explain", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    # the default service (no cors_origins): no CORS header for anyone
    default = http.options("/v1/explain", headers=preflight)
    assert "access-control-allow-origin" not in default.headers
    simple = http.get("/v1/models", headers={"Origin": "https://dashboard.example"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


def test_weights_files_must_be_pinned_by_sha256() -> None:
    with pytest.raises(ValidationError, match="needs its sha256"):
        ModelConfig.model_validate({"name": "timm:resnet18", "weights": "/models/r18.pt"})
    with pytest.raises(SettingsError, match="needs its sha256"):
        load_settings(environ={"CNNLENS_MODELS": "efficientnet_lite0=/models/e.pt"})
    pinned = load_settings(environ={"CNNLENS_MODELS": f"efficientnet_lite0=/m/e.pt@{'A' * 64}"})
    assert pinned.models[0].sha256 == "a" * 64


def test_configured_weights_are_read_with_weights_only(
    default_model: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lite0.pt"
    torch.save(default_model.module.state_dict(), path)
    calls: list[dict[str, Any]] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    config = ModelConfig(name="efficientnet_lite0", weights=str(path), sha256=sha256_of_file(path))
    loaded = load_configured_model(config, Settings.model_validate({}))
    assert calls and all(call.get("weights_only") is True for call in calls)
    assert loaded.weights_sha256 == config.sha256
    first = next(iter(default_model.module.state_dict().values()))
    assert torch.equal(next(iter(loaded.module.state_dict().values())), first)


MARKER = "zq7-cnnlens-marker"
_seen: list[tuple[str, str]] = []
_watching = threading.Event()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watching.is_set() or event not in _WATCHED:
        return
    text = " ".join(str(arg) for arg in args)
    if MARKER in text:
        _seen.append((event, text[:200]))


_WATCHED = {
    "open",
    "os.listdir",
    "os.scandir",
    "os.mkdir",
    "os.remove",
    "shutil.rmtree",
    "socket.connect",
    "socket.getaddrinfo",
    "urllib.Request",
    "subprocess.Popen",
    "import",
}


def test_no_request_value_reaches_a_path_or_url(
    live_server: LiveServer, http: httpx.Client
) -> None:
    """Every field of every route carries a marker; no file or network access may see it."""
    if not getattr(test_no_request_value_reaches_a_path_or_url, "hooked", False):
        sys.addaudithook(_audit)  # audit hooks cannot be removed: it is gated by _watching
        test_no_request_value_reaches_a_path_or_url.hooked = True  # type: ignore[attr-defined]
    value = f"../../{MARKER}/../etc/passwd"
    url_value = f"http://127.0.0.1:9/{MARKER}.pt"
    image = ("../" + MARKER + ".png", SMALL_PNG, "image/png")
    _watching.set()
    try:
        with pytest.raises(OSError):  # the watch itself works: a path with the marker is seen
            open(f"/nonexistent/{MARKER}")  # noqa: SIM115
        assert _seen and _seen[0][0] == "open"
        _seen.clear()
        answers = [
            http.post("/v1/explain", data={"model": value}, files={"image": image}),
            http.post("/v1/explain", data={"model": url_value}, files={"image": image}),
            http.post("/v1/explain", data={"layer": value}, files={"image": image}),
            http.post("/v1/explain", data={"method": value}, files={"image": image}),
            http.post("/v1/explain", data={"target": value}, files={"image": image}),
            http.post("/v1/explain", data={"output": value}, files={"image": image}),
            http.post(
                "/v1/explain", data={"params": json.dumps({value: {}})}, files={"image": image}
            ),
            http.post("/v1/compare", data={"model": value}, files={"image": image}),
            http.post("/v1/feature-maps", data={"layer": value}, files={"image": image}),
            http.get(f"/v1/models/{MARKER}"),
            http.get(f"/v1/models/..%2F{MARKER}"),
            http.get(f"/v1/audits/{MARKER}"),
            http.get(f"/web/{MARKER}.js"),
            http.get(f"/web/../{MARKER}"),
        ]
        ok = http.post("/v1/explain", files={"image": image})  # the filename is never used
    finally:
        _watching.clear()
    assert all(400 <= answer.status_code < 500 for answer in answers), [
        (answer.request.url.path, answer.status_code) for answer in answers
    ]
    assert ok.status_code == 200
    assert not _seen, _seen
