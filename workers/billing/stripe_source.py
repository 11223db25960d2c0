"""The SubscriptionSource port over the stripe SDK: the subscription as Stripe holds it now."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import stripe

from domain.errors import TransientError

log = logging.getLogger(__name__)


class StripeUnavailable(TransientError):
    pass


class StripeSubscriptionSource:
    def __init__(self, api_key: str, *, timeout_seconds: float = 10.0) -> None:
        self._client = stripe.StripeClient(
            api_key, http_client=stripe.HTTPXClient(timeout=timeout_seconds), max_network_retries=1
        )

    def fetch_subscription(self, subscription_id: str) -> Mapping[str, Any] | None:
        try:
            subscription = self._client.v1.subscriptions.retrieve(subscription_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise StripeUnavailable(f"Stripe did not answer for {subscription_id}: {exc}") from exc
        except stripe.APIError as exc:
            raise StripeUnavailable(f"Stripe failed for {subscription_id}: {exc}") from exc
        return subscription.to_dict()
