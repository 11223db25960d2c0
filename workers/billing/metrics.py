"""Prometheus counters of the billing worker (default registry, like the rest of the fleet)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

from domain.billing.events import HANDLED_EVENTS

STRIPE_EVENTS: Final = Counter(
    "adsapp_billing_stripe_events",
    "Stripe events processed by the billing worker, by event type and outcome.",
    ["event_type", "outcome"],
)


def count_event(event_type: str | None, outcome: str) -> None:
    # Stripe has hundreds of event types; only the handled ones get a label of their own.
    label = event_type if event_type in HANDLED_EVENTS else "other"
    STRIPE_EVENTS.labels(event_type=label, outcome=outcome).inc()
