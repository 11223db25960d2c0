"""The billing actor: one Stripe event per message, as the ingress queued it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import lru_cache

import dramatiq

from config.logging import request_id_var
from domain import jobs
from domain.billing.ports import SubscriptionSource
from domain.billing.state import Outcome
from domain.errors import InvalidPayload, PermanentError
from workers import resources
from workers.billing.handler import handle_stripe_event
from workers.billing.metrics import count_event
from workers.billing.stripe_source import StripeSubscriptionSource

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _source(api_key: str | None) -> SubscriptionSource | None:
    return StripeSubscriptionSource(api_key) if api_key else None


# A malformed event will be malformed on every attempt: straight to the dead letters, no retries.
@dramatiq.actor(actor_name=jobs.STRIPE_EVENT_ACTOR, queue_name=jobs.BILLING_QUEUE, throws=(PermanentError,))
def process_stripe_event(body: str, received_at: float | None = None, request_id: str | None = None) -> None:
    res = resources.current()
    key = res.settings.stripe_api_key
    token = request_id_var.set(request_id)
    try:
        handle_stripe_event(
            res.engine,
            body,
            received_at=datetime.fromtimestamp(received_at, UTC) if received_at is not None else None,
            source=_source(key.get_secret_value() if key else None),
            on_outcome=lambda h: count_event(h.event_type, h.outcome),
        )
    except InvalidPayload:
        count_event(None, Outcome.MALFORMED)
        log.warning("malformed Stripe event sent to the dead letters", exc_info=True)
        raise
    finally:
        request_id_var.reset(token)
