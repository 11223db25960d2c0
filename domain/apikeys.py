"""API keys: random secrets shown once, stored as a SHA-256 hash with a visible prefix.

A fast hash is right here (unlike passwords): the key has 256 bits of entropy, so there is nothing
to brute-force, and every API request must look its key up cheaply.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

KEY_PREFIX = "ads_"
VISIBLE_CHARS = 8

KNOWN_SCOPES = frozenset(
    {"messages:write", "messages:read", "bulk:write", "bulk:read", "dead-letters:read", "dead-letters:write"}
)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    plaintext: str
    prefix: str
    key_hash: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key() -> NewApiKey:
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewApiKey(plaintext, plaintext[: len(KEY_PREFIX) + VISIBLE_CHARS], hash_key(plaintext))


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in KNOWN_SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN_SCOPES))}")
    if not scopes:
        raise ValueError("at least one scope is required")
    return scopes


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    organization_id: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or self.expires_at > now

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


_DURATION = re.compile(r"(\d+)([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_expiry(text: str, now: datetime) -> datetime:
    """`--expires`: an ISO 8601 time (UTC unless it names its zone) or a duration from now
    (`90d`, `12h`, `30m`); it must lie in the future."""
    value = text.strip()
    duration = _DURATION.fullmatch(value)
    if duration:
        at = now + timedelta(**{_UNITS[duration.group(2)]: int(duration.group(1))})
    else:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"--expires {text!r} is neither an ISO 8601 time (2027-01-31T00:00:00Z) "
                "nor a duration (90d, 12h, 30m)"
            ) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    if at <= now:
        raise ValueError(f"--expires {text!r} is not in the future")
    return at


def key_state(expires_at: datetime | None, revoked_at: datetime | None, now: datetime) -> str:
    if revoked_at is not None and revoked_at <= now:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "active"
