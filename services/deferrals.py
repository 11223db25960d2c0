"""Sends put off by pacing, per WhatsApp number, counted fleet-wide over `fleet_counters`.

The send path adds one when it re-enqueues a send for lack of a send slot (`throughput`: the
number's tier is spent) or of its recipient's pair token (`pair_rate`). The addition is in memory,
written with the process's other counts once a second, so a deferral costs no Redis round trip of
its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from redis import Redis

from services import fleet_counters
from services.fleet_counters import Counts

FAMILY: Final = "deferrals"
PACING_REASONS: Final = frozenset({"throughput", "pair_rate"})


def count_deferral(counters: Counts, phone_number_id: str, reason: str) -> None:
    counters.add(FAMILY, f"{phone_number_id}:{reason}")


@dataclass(frozen=True, slots=True)
class Deferrals:
    last_minute: int
    last_hour: int
    by_reason_last_hour: dict[str, int]


_NONE = Deferrals(0, 0, {})


def pacing_deferrals(
    redis: Redis,
    phone_number_ids: Iterable[str],
    namespace: str = fleet_counters.DEFAULT_NAMESPACE,
    *,
    now: float | None = None,
) -> dict[str, Deferrals]:
    """For each number asked for (and only those: the caller's tenant scope), its pacing deferrals
    over the last minute and the last hour."""
    wanted = set(phone_number_ids)
    minute = _by_number(fleet_counters.totals(redis, namespace, FAMILY, 60, now=now), wanted)
    hour = _by_number(fleet_counters.totals(redis, namespace, FAMILY, 3600, now=now), wanted)
    return {
        number: Deferrals(
            sum(minute.get(number, {}).values()), sum(hour.get(number, {}).values()), hour.get(number, {})
        )
        if number in hour or number in minute
        else _NONE
        for number in wanted
    }


def _by_number(counted: dict[str, int], wanted: set[str]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for field, n in counted.items():
        number, _, reason = field.rpartition(":")
        if number in wanted and reason in PACING_REASONS:
            found.setdefault(number, {})[reason] = n
    return found
