"""Whether an organization may send: the rule the send API and the send workers apply.

Refusal codes (stable: API clients and the web app match on them):

| code                      | when                                                                 |
|---------------------------|----------------------------------------------------------------------|
| `subscription_canceled`   | the subscription ended (`canceled`, `incomplete_expired`)            |
| `subscription_unpaid`     | Stripe gave up retrying payment (`unpaid`)                           |
| `subscription_paused`     | the subscription is paused (a trial ended without a payment method)  |
| `subscription_incomplete` | the first payment has not succeeded yet (`incomplete`)               |
| `subscription_inactive`   | any other status Stripe may introduce: refused until understood      |
| `bulk_not_allowed`        | a bulk job on a plan without bulk sending                            |
| `quota_exceeded`          | the month's message quota would be exceeded by this send             |

Allowed statuses: none yet (an organization on the free plan), `trialing`, `active`, and
`past_due` (Stripe is still retrying the payment: sending continues while it does).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from domain.billing.plans import Plan


class RefusalCode(StrEnum):
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    SUBSCRIPTION_UNPAID = "subscription_unpaid"
    SUBSCRIPTION_PAUSED = "subscription_paused"
    SUBSCRIPTION_INCOMPLETE = "subscription_incomplete"
    SUBSCRIPTION_INACTIVE = "subscription_inactive"
    BULK_NOT_ALLOWED = "bulk_not_allowed"
    QUOTA_EXCEEDED = "quota_exceeded"


SENDING_STATUSES: Final = frozenset({None, "trialing", "active", "past_due"})

_STATUS_REFUSALS: Final = {
    "canceled": (RefusalCode.SUBSCRIPTION_CANCELED, "The subscription has been canceled."),
    "incomplete_expired": (RefusalCode.SUBSCRIPTION_CANCELED, "The subscription was never completed."),
    "unpaid": (RefusalCode.SUBSCRIPTION_UNPAID, "The subscription is unpaid: update the payment method."),
    "paused": (RefusalCode.SUBSCRIPTION_PAUSED, "The subscription is paused."),
    "incomplete": (
        RefusalCode.SUBSCRIPTION_INCOMPLETE,
        "The subscription's first payment has not succeeded yet.",
    ),
}


@dataclass(frozen=True, slots=True)
class SendDecision:
    allowed: bool
    code: RefusalCode | None = None
    message: str | None = None

    def as_error(self) -> dict[str, str]:
        """The API's error body for a refusal: `{"code": ..., "message": ...}`."""
        return {"code": str(self.code), "message": self.message or ""}


ALLOWED: Final = SendDecision(True)


@dataclass(frozen=True, slots=True)
class Usage:
    messages_this_month: int


def can_send(
    subscription_status: str | None, plan: Plan, usage: Usage, *, n: int = 1, bulk: bool = False
) -> SendDecision:
    """May this organization send `n` more messages now (as a bulk job when `bulk`)?"""
    if n < 0:
        raise ValueError("n must not be negative")
    if subscription_status not in SENDING_STATUSES:
        assert subscription_status is not None  # None is a sending status
        code, message = _STATUS_REFUSALS.get(
            subscription_status,
            (RefusalCode.SUBSCRIPTION_INACTIVE, f"The subscription is {subscription_status}."),
        )
        return SendDecision(False, code, message)
    if bulk and not plan.bulk_allowed:
        return SendDecision(
            False,
            RefusalCode.BULK_NOT_ALLOWED,
            f"The {plan.name} plan does not include bulk sending.",
        )
    quota = plan.monthly_message_quota
    if quota is not None and usage.messages_this_month + n > quota:
        return SendDecision(
            False,
            RefusalCode.QUOTA_EXCEEDED,
            f"The {plan.name} plan allows {quota} messages a month; "
            f"{usage.messages_this_month} have been sent this month.",
        )
    return ALLOWED
