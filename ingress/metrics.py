"""Prometheus metrics of one ingress process, on a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_SIZE_BUCKETS = (256, 512, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "adsapp_ingress_requests_total",
            "HTTP requests answered, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.signature_failures = Counter(
            "adsapp_ingress_signature_failures_total",
            "Webhooks refused with 401, by source and reason (missing, malformed, mismatch, timestamp).",
            ["source", "reason"],
            registry=self.registry,
        )
        self.rejected_bodies = Counter(
            "adsapp_ingress_rejected_bodies_total",
            "Webhooks refused for their body, by source and reason "
            "(too_large, content_type, not_utf8, not_json, too_deep, wrong_shape).",
            ["source", "reason"],
            registry=self.registry,
        )
        self.publish_failures = Counter(
            "adsapp_ingress_publish_failures_total",
            "Publishes answered with 503, by reason (unavailable, timeout, nacked, unroutable).",
            ["queue", "reason"],
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "adsapp_ingress_publish_seconds",
            "Time from publish to the broker's confirm.",
            ["queue"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.body_size = Histogram(
            "adsapp_ingress_body_bytes",
            "Size of webhook bodies read in full.",
            ["source"],
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        # labels() takes a lock and builds a key each call; the hot path reuses the children.
        self._counters: dict[tuple[str, tuple[str, ...]], Counter] = {}
        self._histograms: dict[tuple[str, tuple[str, ...]], Histogram] = {}

    def inc(self, counter: Counter, *labels: str) -> None:
        key = (counter._name, labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = counter.labels(*labels)
        child.inc()

    def observe(self, histogram: Histogram, value: float, *labels: str) -> None:
        key = (histogram._name, labels)
        child = self._histograms.get(key)
        if child is None:
            child = self._histograms[key] = histogram.labels(*labels)
        child.observe(value)

    def count_request(self, route: str, status: int) -> None:
        self.inc(self.requests, route, str(status))
