"""The scheduler's own metrics: each sweep's runs, failures and last success (for "not sweeping")."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

SWEEPS = Counter(
    "adsapp_scheduler_sweeps_total", "Scheduler task runs, by task and result (ok, error)", ["task", "result"]
)
SWEPT = Counter(
    "adsapp_scheduler_swept_total", "Items a scheduler task handled (rows published, repaired...)", ["task"]
)
LAST_SUCCESS = Gauge(
    "adsapp_scheduler_last_success_timestamp_seconds",
    "When each scheduler task last ran without error",
    ["task"],
)


def observe_sweep(task: str, *, ok: bool, count: int) -> None:
    SWEEPS.labels(task, "ok" if ok else "error").inc()
    if ok:
        SWEPT.labels(task).inc(count)
        LAST_SUCCESS.labels(task).set(time.time())
