"""Faults: a client that leaves mid-request, a batch that runs out of memory, SIGTERM while
a request is in flight, and weights files that must stop the service from starting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from cnnlens.methods.base import get_method
from cnnlens.models.weights import sha256_of_file
from cnnlens.service.server import main as server_main
from tests.pinned import PINNED_ENVIRONMENT
from tests.reliability import hostile_images as hostile
from tests.reliability.conftest import LiveServer, free_port

CNNLENS = [sys.executable, "-m", "cnnlens"]  # this checkout's console script
PHOTO = hostile.encode(
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (64, 64, 3), np.uint8)), "PNG"
)
SIXTEEN_TARGETS = [str(index) for index in range(16)]  # 16 rows x 3 methods: seconds of work


def _slow_request_bytes(url: str) -> bytes:
    request = httpx.Request(
        "POST",
        f"{url}/v1/explain",
        data={"target": SIXTEEN_TARGETS, "method": "grad_cam,saliency,guided_backprop"},
        files={"image": ("p.png", PHOTO, "image/png")},
    )
    head = f"POST /v1/explain HTTP/1.1\r\nHost: {request.url.host}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "host")
    return head.encode() + b"\r\n" + request.read()


def _requests_counted(http: httpx.Client, status: str) -> float:
    total = 0.0
    for line in http.get("/metrics").text.splitlines():
        counted = line.startswith("cnnlens_requests_total{") and f'status="{status}"' in line
        if counted and 'route="/v1/explain"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_client_disconnecting_mid_request_drops_the_work(
    live_server: LiveServer, http: httpx.Client
) -> None:
    live_server.wait_idle()
    before = _requests_counted(http, "499")
    with socket.create_connection(("127.0.0.1", int(live_server.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(_slow_request_bytes(live_server.url))
        deadline = time.monotonic() + 10
        while not live_server.worker.busy:  # the batch is running: now leave
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.1)
    left = time.monotonic()
    live_server.wait_idle()
    stopped_after = time.monotonic() - left
    # the whole batch takes 5-15 s on CPU: stopped between two torch operations instead
    assert stopped_after < 2.0, f"the abandoned batch ran on for {stopped_after:.2f} s"
    assert live_server.hooks() == 0
    deadline = time.monotonic() + 5
    while _requests_counted(http, "499") < before + 1:  # logged as "client closed request"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    response = http.post("/v1/explain", files={"image": ("p.png", PHOTO)})
    assert response.status_code == 200 and response.json()["explanations"]


def test_an_unhurried_request_is_not_cancelled(live_server: LiveServer, http: httpx.Client) -> None:
    """The disconnect watch must not cut a client that simply waits for a slow answer."""
    response = http.post(
        "/v1/explain",
        data={"target": SIXTEEN_TARGETS[:4], "method": "grad_cam"},
        files={"image": ("p.png", PHOTO)},
    )
    assert response.status_code == 200
    assert [e["target"]["index"] for e in response.json()["explanations"]] == [0, 1, 2, 3]


@pytest.mark.parametrize("error", [torch.OutOfMemoryError, MemoryError])
def test_out_of_memory_in_a_batch_is_a_503_and_the_service_recovers(
    error: type[BaseException],
    live_server: LiveServer,
    http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    method = get_method("grad_cam")
    calls = []

    def exhausted(*args: object, **kwargs: object) -> None:
        calls.append(live_server.hooks())  # raised while the session's hooks are in place
        raise error("simulated: tried to allocate 80.00 GiB")

    monkeypatch.setattr(type(method), "compute", exhausted)
    response = http.post("/v1/explain", files={"image": ("p.png", PHOTO)})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "out_of_memory"
    assert int(response.headers["Retry-After"]) >= 1
    assert calls and calls[0] > 0  # the failure happened inside a hook session...
    assert live_server.hooks() == 0  # ...and no hook outlived it
    monkeypatch.undo()
    response = http.post("/v1/explain", files={"image": ("p.png", PHOTO)})
    assert response.status_code == 200


def _environment(**variables: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CNNLENS_")}
    pinned = {"OMP_NUM_THREADS": "1", "CNNLENS_WARMUP": "false", **PINNED_ENVIRONMENT}
    return {**environment, **pinned, **variables}


def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A batch waits 4 s for companions: the request is surely in flight at SIGTERM.
    environment = _environment(CNNLENS_MAX_BATCH_DELAY_MS="4000")
    server = subprocess.Popen(
        [*CNNLENS, "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_ready(url, server)
        answers: list[httpx.Response] = []
        client = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{url}/v1/explain", files={"image": ("p.png", PHOTO)}, timeout=60)
            )
        )
        client.start()
        time.sleep(1.5)
        server.send_signal(signal.SIGTERM)
        refused_at = _wait_refused(port)
        client.join(timeout=60)
        code = server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    stderr = server.stderr.read().decode() if server.stderr else ""
    assert refused_at < 2.0, "new connections were still accepted after SIGTERM"
    assert answers and answers[0].status_code == 200, stderr[-2000:]
    assert answers[0].json()["explanations"]
    assert code == 0, stderr[-2000:]


def _wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "the service exited during start-up"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the service never became ready")


def _wait_refused(port: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 10:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def _start_with(weights: Path, sha256: str) -> tuple[int, str, int]:
    port = free_port()
    models = f"efficientnet_lite0={weights}@{sha256}"
    result = subprocess.run(
        [*CNNLENS, "serve", "--port", str(port)],
        env=_environment(CNNLENS_MODELS=models),
        capture_output=True,
        timeout=120,
    )
    return result.returncode, result.stderr.decode(errors="replace"), port


def _assert_never_listened(port: int) -> None:
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_corrupted_weights_file_is_a_startup_error(tmp_path: Path) -> None:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"PK\x03\x04" + os.urandom(4096))  # a torch zip header, then garbage
    code, stderr, port = _start_with(weights, sha256_of_file(weights))
    assert code != 0
    assert "cannot read weights file 'model.pt'" in stderr
    _assert_never_listened(port)


def test_weights_of_another_architecture_are_a_startup_error(tmp_path: Path) -> None:
    weights = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(10)}, weights)
    code, stderr, port = _start_with(weights, sha256_of_file(weights))
    assert code != 0
    assert "other.pt" in stderr and "bad_weights" in stderr
    _assert_never_listened(port)


def test_weights_with_another_sha256_are_a_startup_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process (the two tests above cover the real `cnnlens serve` exit): the file's
    digest is checked before it is parsed, and the port is never bound."""
    weights = tmp_path / "model.pt"
    torch.save({"anything": torch.zeros(1)}, weights)
    monkeypatch.setenv("CNNLENS_MODELS", f"efficientnet_lite0={weights}@{'0' * 64}")
    parsed: list[Path] = []

    def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
        parsed.append(path)
        return {}

    monkeypatch.setattr("cnnlens.models.registry.read_state_dict", read_state_dict)
    # serve() installs a JSON handler on the root logger; not in this shared test process
    monkeypatch.setattr("cnnlens.service.server.configure_logging", lambda level: None)
    port = free_port()
    with pytest.raises(SystemExit) as exited:
        server_main(["--port", str(port)])
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    assert f"has sha256 {sha256_of_file(weights)}" in stderr and "expects " + "0" * 64 in stderr
    assert not parsed
    _assert_never_listened(port)
