"""Prometheus metrics of one app (its own registry, so several apps never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class Metrics:
    """Requests by route and status, latencies, queue depth, batch sizes and compute time."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cnnlens_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cnnlens_request_duration_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "cnnlens_queue_depth",
            "Jobs waiting for a model's worker",
            ["model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "cnnlens_batch_size",
            "Requests per batched run",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.compute = Histogram(
            "cnnlens_compute_seconds",
            "Time a model's worker spends on one batch",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "cnnlens_rejected_jobs",
            "Jobs refused or dropped, by reason (queue_full, deadline)",
            ["model", "reason"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
