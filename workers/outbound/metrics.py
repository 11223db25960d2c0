"""Prometheus metrics of the outbound path (module-level, one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SENDS = Counter(
    "adsapp_outbound_sends_total",
    "Send jobs by outcome: sent, failed, retried, exhausted, ambiguous, refused, deferred, skipped",
    ["outcome"],
)
PERMANENT_ERRORS = Counter(
    "adsapp_outbound_permanent_errors_total", "Sends failed for good, by Meta error code", ["code"]
)
DEFERRALS = Counter(
    "adsapp_outbound_deferrals_total",
    "Send jobs put off without an attempt: throughput, pair rate, circuit open, in flight",
    ["reason"],
)
CALL_SECONDS = Histogram(
    "adsapp_outbound_call_seconds",
    "Graph API send calls, request to answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_TO_SENT_SECONDS = Histogram(
    "adsapp_outbound_queue_to_sent_seconds",
    "From the message row's creation to its wamid being recorded",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
SWEPT = Counter(
    "adsapp_outbound_swept_total",
    "Messages the outbound sweeps repaired: ambiguous (stuck sending), requeued (job lost)",
    ["action"],
)
TEMPLATES_SYNCED = Counter("adsapp_templates_synced_total", "Templates written by a sync from the Graph API")
