"""What billing needs from Stripe's API, as a port (the stripe SDK adapter lives in workers/billing)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class SubscriptionSource(Protocol):
    """The subscription as Stripe holds it now, to use instead of what an event body implies.

    Returns the subscription object (the same JSON shape as in events) or None when Stripe does not
    know it. Raises TransientError when Stripe cannot answer now.
    """

    def fetch_subscription(self, subscription_id: str) -> Mapping[str, Any] | None: ...
