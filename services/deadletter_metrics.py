"""Prometheus metrics of dead letters (module-level, one registry per process).

Counters move where things happen (the workers record deaths, the scheduler and the API redrive);
the gauges are set by the scheduler's `dead-letter-gauges` task from Postgres and RabbitMQ.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DEAD_LETTERS = Counter(
    "adsapp_dead_letters_total",
    "Messages that became dead letters, by queue, actor and error class",
    ["queue", "actor", "error_class"],
)
CURRENT = Gauge(
    "adsapp_dead_letters_current",
    "Dead letters waiting (status dead), by queue, actor and error class",
    ["queue", "actor", "error_class"],
)
XQ_DEPTH = Gauge("adsapp_dead_letters_xq_depth", "Messages in RabbitMQ's <queue>.XQ, by queue", ["queue"])
OLDEST_AGE = Gauge(
    "adsapp_dead_letters_oldest_age_seconds", "Age of the oldest dead letter still waiting (0 when none)"
)
REDRIVES = Counter(
    "adsapp_dead_letters_redrives_total",
    "Dead letters put back on their queue or not, by outcome (moved, failed, skipped) and trigger "
    "(api, batch, sweep, republish)",
    ["outcome", "trigger"],
)
PRUNED = Counter("adsapp_dead_letters_pruned_total", "Retried and discarded letters deleted after retention")
