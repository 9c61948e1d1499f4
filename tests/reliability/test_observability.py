"""Observability: X-Request-ID (a sane client id echoed, else a fresh one), one JSON log
line per request carrying it, and the Prometheus metrics: requests by route and status,
latency histograms, queue depth, batch sizes, rejections."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from benchmarks._service_load import metric_value  # noqa: I001  (the load test's parser)
from cnnlens.models import LoadedModel
from cnnlens.service.logs import JsonFormatter
from tests.pinned import pinned_app, pinned_settings
from tests.reliability.conftest import LiveServer, start_server
from tests.reliability.test_hostile_requests import SMALL_PNG

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("offered", ["abc-123", "trace.7f:span_01", "A" * 128])
def test_sane_request_ids_are_echoed(offered: str, http: httpx.Client) -> None:
    response = http.get("/healthz", headers={"X-Request-ID": offered})
    assert response.headers["X-Request-ID"] == offered


@pytest.mark.parametrize(
    "offered",
    [b"", b"has space", b"A" * 129, b"semi;colon", b'quote"', "caf\u00e9".encode()],
)
def test_other_request_ids_are_replaced(offered: bytes, http: httpx.Client) -> None:
    response = http.get("/healthz", headers={b"X-Request-ID": offered})
    assert GENERATED_ID.match(response.headers["X-Request-ID"])


def test_generated_ids_are_unique_and_on_errors_too(http: httpx.Client) -> None:
    ids = {http.get("/healthz").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5
    error = http.post("/v1/explain", files={"image": ("x.txt", b"not an image")})
    assert error.status_code == 415 and GENERATED_ID.match(error.headers["X-Request-ID"])


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def access_log() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("cnnlens.service.access")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_one_json_log_line_per_request_with_its_id(
    http: httpx.Client, access_log: _Records
) -> None:
    response = http.post(
        "/v1/explain", files={"image": ("p.png", SMALL_PNG)}, headers={"X-Request-ID": "log-42"}
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 5
    while not access_log.lines and time.monotonic() < deadline:
        time.sleep(0.01)
    entries = [json.loads(line) for line in access_log.lines]
    mine = [entry for entry in entries if entry.get("request_id") == "log-42"]
    assert len(mine) == 1
    entry = mine[0]
    assert entry["route"] == "/v1/explain" and entry["method"] == "POST"
    assert entry["status"] == 200 and entry["level"] == "info"
    assert 0 < entry["elapsed_ms"] < 60_000
    assert entry["time"].endswith("Z")


def test_metrics_count_requests_latency_and_batches(
    http: httpx.Client, live_server: LiveServer
) -> None:
    def scrape() -> str:
        return http.get("/metrics").text

    before = scrape()
    for _ in range(2):
        assert http.post("/v1/explain", files={"image": ("p.png", SMALL_PNG)}).status_code == 200
    assert (
        http.post(
            "/v1/explain", data={"method": "nope"}, files={"image": ("p.png", SMALL_PNG)}
        ).status_code
        == 422
    )
    for index in range(20):  # unknown paths share one label value: no unbounded series
        http.get(f"/no/such/path/{index}")
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    route = {"route": "/v1/explain", "method": "POST"}
    assert delta("cnnlens_requests_total", status="200", **route) == 2
    assert delta("cnnlens_requests_total", status="422", **route) == 1
    assert delta("cnnlens_request_duration_seconds_count", **route) == 3
    assert delta("cnnlens_request_duration_seconds_bucket", le="+Inf", **route) == 3
    assert delta("cnnlens_requests_total", route="unmatched", status="404") == 20
    assert "/no/such/path" not in after
    model = live_server.model.name
    assert delta("cnnlens_batch_size_count", model=model) == 2
    assert delta("cnnlens_batch_size_sum", model=model) == 2  # one request per batch here
    assert delta("cnnlens_compute_seconds_count", model=model) == 2
    assert f'cnnlens_queue_depth{{model="{model}"}} 0.0' in after


def test_a_full_queue_answers_503_with_retry_after_and_is_counted(
    default_model: LoadedModel,
) -> None:
    # One job runs (its batch waits 3 s for companions), one waits: the third is refused.
    settings = pinned_settings(
        {
            "warmup": False,
            "limits": {
                "queue_size": 1,
                "max_batch": 2,
                "max_batch_delay_ms": 3000,
                "retry_after_s": 3,
            },
        }
    )
    app = pinned_app(settings, default_model)
    server, thread, url = start_server(app)
    try:
        answers: list[httpx.Response] = []

        def post(target: str) -> None:
            answers.append(
                httpx.post(
                    f"{url}/v1/explain",
                    data={"target": target},
                    files={"image": ("p.png", SMALL_PNG)},
                    timeout=60,
                )
            )

        # The first request's batch waits 3 s for a companion with the same plan; the
        # second (top-1, not explicit targets: another plan) waits in the queue behind it.
        worker = app.state.service.worker(default_model.name)
        submitted: list[object] = []
        submit = worker.submit

        def counting_submit(*args: Any, **kwargs: Any) -> Any:
            job = submit(*args, **kwargs)
            submitted.append(job)
            return job

        worker.submit = counting_submit
        running = threading.Thread(target=post, args=("1",))
        running.start()
        _until(lambda: len(submitted) == 1 and worker.depth == 0)  # taken by the worker
        queued = threading.Thread(target=post, args=("",))
        queued.start()
        _until(lambda: worker.depth == 1)
        refused = httpx.post(f"{url}/v1/explain", files={"image": ("p.png", SMALL_PNG)}, timeout=60)
        depth = metric_value(httpx.get(f"{url}/metrics").text, "cnnlens_queue_depth")
        running.join(30)
        queued.join(30)
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "queue_full"
    assert refused.headers["Retry-After"] == "3"
    assert depth == 1
    assert [answer.status_code for answer in answers] == [200, 200]
    assert metric_value(metrics, "cnnlens_rejected_jobs_total", reason="queue_full") == 1
    # (/readyz may have answered 503 while the models loaded)
    assert metric_value(metrics, "cnnlens_requests_total", route="/v1/explain", status="503") == 1


def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
