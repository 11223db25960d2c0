"""Where the Graph API circuit breakers keep their state in Redis: one key scheme for every reader.

The send path's breakers (pybreaker's `CircuitRedisStorage`) write these keys and the operator
console reads and resets them; both build the names here so they cannot drift apart.
"""

from __future__ import annotations

from typing import Final

DEFAULT_NAMESPACE: Final = "adsapp:graph:breaker"
API_SCOPE: Final = "global"


def number_label(phone_number_id: str) -> str:
    return f"number:{phone_number_id}"


def scope_prefix(namespace: str, label: str) -> str:
    """The prefix of one breaker's keys; `label` is `API_SCOPE` or `number_label(...)`."""
    return f"{namespace}:{label}"


def pybreaker_key(prefix: str, name: str) -> str:
    """pybreaker's own layout under a prefix: `state`, `fail_counter`, `success_counter`, `opened_at`."""
    return f"{prefix}:pybreaker:{name}"


def probe_key(prefix: str) -> str:
    """The lock a half-open breaker's one fleet-wide probe holds."""
    return f"{prefix}:probe"
