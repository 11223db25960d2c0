"""Plans and the Stripe price lookup keys that buy them (the catalog lives in the `plans` tables)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

FREE_PLAN: Final = "free"


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    monthly_message_quota: int | None  # None: unlimited
    bulk_allowed: bool


# Terms when even the free plan is missing from the catalog: nothing, so a broken catalog cannot
# hand out unlimited sending.
FALLBACK_PLAN: Final = Plan(FREE_PLAN, 0, False)


@dataclass(frozen=True, slots=True)
class PlanCatalog:
    plans: Mapping[str, Plan] = field(default_factory=dict)
    lookup_keys: Mapping[str, str] = field(default_factory=dict)  # lookup key -> plan name

    def plan_for_lookup_keys(self, lookup_keys: Iterable[str]) -> str | None:
        """The plan bought by the first price whose lookup key is known, if any."""
        for key in lookup_keys:
            plan = self.lookup_keys.get(key)
            if plan is not None:
                return plan
        return None

    def get(self, name: str | None) -> Plan:
        """The named plan; the free plan's terms when the name is missing or unknown."""
        return self.plans.get(name or FREE_PLAN) or self.plans.get(FREE_PLAN) or FALLBACK_PLAN
