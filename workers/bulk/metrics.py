"""Prometheus metrics of bulk jobs (module-level, one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.bulk_run import ChunkOutcome

JOBS = Counter(
    "adsapp_bulk_jobs_total", "Bulk jobs that finished, by kind and final status", ["kind", "status"]
)
ITEMS = Counter("adsapp_bulk_items_total", "Bulk job items settled, by kind and outcome", ["kind", "outcome"])
CHUNKS = Counter("adsapp_bulk_chunks_total", "Chunk runs and settles, by what they did", ["action"])
JOB_SECONDS = Histogram(
    "adsapp_bulk_job_duration_seconds",
    "From a bulk job's first chunk to its end",
    ["kind"],
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
ITEMS_PENDING = Gauge(
    "adsapp_bulk_items_pending",
    "Items of unfinished bulk jobs without an outcome yet (set by the scheduler)",
    multiprocess_mode="max",
)


def observe(outcome: ChunkOutcome) -> None:
    CHUNKS.labels(outcome.action).inc()
    kind = outcome.kind or "unknown"
    if outcome.action in ("settled", "cancelled"):
        for status, n in outcome.counts.items():
            if n:
                ITEMS.labels(kind, status).inc(n)
    if outcome.finished is not None:
        JOBS.labels(kind, outcome.finished).inc()
        if outcome.duration_seconds is not None:
            JOB_SECONDS.labels(kind).observe(outcome.duration_seconds)
