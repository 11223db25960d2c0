"""API keys: random secrets shown once, stored as a SHA-256 hash with a visible prefix.

A fast hash is right here (unlike passwords): the key has 256 bits of entropy, so there is nothing
to brute-force, and every API request must look its key up cheaply.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

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
    operator: bool = False  # spans tenants for dead letters

    def usable_at(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.expires_at is None or self.expires_at > now

    def allows(self, scope: str) -> bool:
        return scope in self.scopes
