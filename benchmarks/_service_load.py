"""Shared by the load test and the soak: a mix of valid explain requests, a service started
on a free loopback port (subprocess or in-process thread), RSS and metrics readers."""

from __future__ import annotations

import io
import os
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ExplainRequest:
    """One valid POST /v1/explain: multipart fields, the image, the Accept header."""

    name: str
    image: bytes
    filename: str
    fields: dict[str, str | list[str]]
    accept: str = "application/json"

    def send_kwargs(self) -> dict[str, Any]:
        return {
            "data": self.fields,
            "files": {"image": (self.filename, self.image, "application/octet-stream")},
            "headers": {"Accept": self.accept},
        }


def _encode(array: np.ndarray, fmt: str, size: int | None = None) -> bytes:
    image = Image.fromarray(array)
    if size is not None:
        image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def request_mix() -> list[ExplainRequest]:
    """Photos of scikit-image in several formats, sizes, methods, targets and outputs."""
    from skimage import data

    chelsea, coffee, astronaut, rocket = (
        data.chelsea(),
        data.coffee(),
        data.astronaut(),
        data.rocket(),
    )
    return [
        ExplainRequest("grad_cam-jpeg", _encode(chelsea, "JPEG"), "chelsea.jpg", {}),
        ExplainRequest(
            "saliency-png-target",
            _encode(coffee, "PNG", 320),
            "coffee.png",
            {"method": "saliency", "target": "967"},
        ),
        ExplainRequest(
            "two-methods-webp",
            _encode(astronaut, "WEBP", 256),
            "astronaut.webp",
            {"method": "grad_cam,guided_backprop", "output": "overlay"},
        ),
        ExplainRequest(
            "cam-two-targets",
            _encode(rocket, "JPEG", 400),
            "rocket.jpg",
            {"method": "cam", "target": ["285", "espresso"]},
        ),
        ExplainRequest(
            "guided_grad_cam-array",
            _encode(chelsea, "PNG", 200),
            "chelsea.png",
            {"method": "guided_grad_cam", "output": "array"},
        ),
        ExplainRequest(
            "overlay-png",
            _encode(coffee, "JPEG", 480),
            "coffee.jpg",
            {"method": "grad_cam"},
            accept="image/png",
        ),
    ]


def pick(mix: list[ExplainRequest], rng: random.Random) -> ExplainRequest:
    return mix[rng.randrange(len(mix))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size from /proc (Linux); 0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def wait_ready(
    url: str, timeout: float = 180.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited during start-up ({process.returncode})")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} never became ready")


def start_subprocess(
    port: int, environment: dict[str, str], cwd: str | None = None
) -> subprocess.Popen[bytes]:
    """`python -m cnnlens.service` on 127.0.0.1:port; its JSON logs are discarded. `-m`
    imports from the working directory first: `cwd` picks the checkout that serves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNNLENS_")} | environment
    return subprocess.Popen(
        [sys.executable, "-m", "cnnlens.service", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_in_thread(app: Any) -> tuple[Any, threading.Thread, str]:
    """uvicorn serving `app` on a free loopback port, in a daemon thread of this process."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="cnnlens-bench-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    return server, thread, url


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (Prometheus text)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head != name and not head.startswith(name + "{"):
            continue
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            total += float(value)
    return total


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")
