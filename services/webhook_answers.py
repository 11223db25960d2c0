"""Webhook answers of every ingress process, by source and status class, over `fleet_counters`.

Meta and Stripe deliver again after any 5xx, so a burst of them is what an operator must see first;
each ingress process adds its own answers here, and the console sums the fleet's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from redis import Redis

from services import fleet_counters
from services.fleet_counters import Counts

FAMILY: Final = "webhooks"


def count_answer(counters: Counts, source: str, status: int) -> None:
    counters.add(FAMILY, f"{source}:{status // 100}xx")


@dataclass(frozen=True, slots=True)
class WebhookAnswers:
    window_seconds: int
    by_source: dict[str, dict[str, int]]  # source -> status class ("2xx", "4xx", "5xx") -> answers

    @property
    def answered(self) -> int:
        return sum(sum(classes.values()) for classes in self.by_source.values())

    def total(self, status_class: str) -> int:
        return sum(classes.get(status_class, 0) for classes in self.by_source.values())


def answers(
    redis: Redis,
    namespace: str = fleet_counters.DEFAULT_NAMESPACE,
    window_seconds: int = 60,
    *,
    now: float | None = None,
) -> WebhookAnswers:
    by_source: dict[str, dict[str, int]] = {}
    for field, n in fleet_counters.totals(redis, namespace, FAMILY, window_seconds, now=now).items():
        source, _, status_class = field.rpartition(":")
        by_source.setdefault(source, {})[status_class] = n
    return WebhookAnswers(window_seconds, by_source)
