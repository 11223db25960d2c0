"""Targets scaled to the machine a run lands on.

The throughput targets derive from figures measured on a quiet 2-core machine of the kind these
benchmarks run on. Shared machines of that kind run anywhere from that speed to half of it, hour by
hour, so each benchmark measures a like-for-like baseline in the same run and scales the target by
(this run's baseline / the reference baseline). Both the raw target and the scaled one are printed.
"""

from __future__ import annotations

from typing import Any

# Dramatiq no-op drain, 2 processes x 8 threads, on the reference machine (messages/s).
NOOP_DRAIN_PER_S = 9_400.0
# The same drain with one Postgres `INSERT ... ON CONFLICT` (its own commit) per message.
INSERT_DRAIN_PER_S = 3_300.0
# Starlette + HMAC verification, one uvicorn worker, no publish (requests/s). Our plain ceiling runs
# two workers, so the factor it gives overstates this machine's speed: the scaled target is stricter.
PLAIN_WEBHOOK_PER_S = 30_900.0


def scaled_target(target: float, figure: float, baseline: float, reference: float) -> dict[str, Any]:
    factor = baseline / reference
    scaled = target * factor
    return {
        "target": target,
        "reference_baseline": reference,
        "this_run_baseline": round(baseline, 1),
        "machine_factor": round(factor, 3),
        "scaled_target": round(scaled, 1),
        "figure": round(figure, 1),
        "met": figure >= target,
        "met_scaled": figure >= scaled,
    }
