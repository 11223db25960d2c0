from __future__ import annotations

import pytest

from domain.billing.plans import FALLBACK_PLAN, Plan, PlanCatalog
from domain.billing.policy import RefusalCode, Usage, can_send

FREE = Plan("free", 1000, False)
PRO = Plan("pro", 100_000, True)
ENTERPRISE = Plan("enterprise", None, True)


@pytest.mark.parametrize("status", [None, "trialing", "active", "past_due"])
def test_sending_statuses_are_allowed(status: str | None) -> None:
    assert can_send(status, PRO, Usage(0)).allowed


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("canceled", RefusalCode.SUBSCRIPTION_CANCELED),
        ("incomplete_expired", RefusalCode.SUBSCRIPTION_CANCELED),
        ("unpaid", RefusalCode.SUBSCRIPTION_UNPAID),
        ("paused", RefusalCode.SUBSCRIPTION_PAUSED),
        ("incomplete", RefusalCode.SUBSCRIPTION_INCOMPLETE),
        ("something_new", RefusalCode.SUBSCRIPTION_INACTIVE),
    ],
)
def test_refused_statuses_carry_a_stable_code(status: str, code: RefusalCode) -> None:
    decision = can_send(status, ENTERPRISE, Usage(0))
    assert not decision.allowed
    assert decision.code is code
    assert decision.as_error()["code"] == code.value and decision.message


def test_status_is_checked_before_bulk_and_quota() -> None:
    assert can_send("canceled", FREE, Usage(5000), bulk=True).code is RefusalCode.SUBSCRIPTION_CANCELED


def test_bulk_needs_a_plan_with_bulk() -> None:
    assert can_send("active", FREE, Usage(0), bulk=True).code is RefusalCode.BULK_NOT_ALLOWED
    assert can_send("active", PRO, Usage(0), bulk=True).allowed


def test_quota_counts_the_messages_being_sent() -> None:
    assert can_send("active", FREE, Usage(999)).allowed
    assert can_send("active", FREE, Usage(1000)).code is RefusalCode.QUOTA_EXCEEDED
    assert can_send("active", FREE, Usage(990), n=11).code is RefusalCode.QUOTA_EXCEEDED
    assert can_send("active", ENTERPRISE, Usage(10**12), n=10**6).allowed


def test_catalog_lookup_and_fallbacks() -> None:
    catalog = PlanCatalog({"free": FREE, "pro": PRO}, {"pro_monthly": "pro", "pro_yearly": "pro"})
    assert catalog.plan_for_lookup_keys(["addon_seats", "pro_yearly"]) == "pro"
    assert catalog.plan_for_lookup_keys(["addon_seats"]) is None
    assert catalog.get("pro") is PRO
    assert catalog.get(None) is FREE
    assert catalog.get("legacy_gold") is FREE
    assert PlanCatalog().get("pro") is FALLBACK_PLAN
    assert not can_send(None, FALLBACK_PLAN, Usage(0)).allowed
