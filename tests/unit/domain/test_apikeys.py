from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.apikeys import ApiKeyRecord, generate_key, hash_key, parse_scopes


def test_generated_keys_are_unique_and_stored_as_hashes() -> None:
    a, b = generate_key(), generate_key()
    assert a.plaintext != b.plaintext
    assert a.key_hash == hash_key(a.plaintext) and a.plaintext not in a.key_hash
    assert a.plaintext.startswith(a.prefix) and len(a.prefix) == 12


def test_scopes_are_validated() -> None:
    assert parse_scopes("messages:write, messages:read,messages:write") == ("messages:write", "messages:read")
    with pytest.raises(ValueError, match="unknown scope"):
        parse_scopes("messages:write,admin")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")


def test_expiry_and_revocation() -> None:
    now = datetime.now(UTC)
    live = ApiKeyRecord("k", "o", ("messages:write",), None, None)
    assert live.usable_at(now) and live.allows("messages:write") and not live.allows("bulk:write")
    assert not ApiKeyRecord("k", "o", (), now - timedelta(seconds=1), None).usable_at(now)
    assert not ApiKeyRecord("k", "o", (), None, now - timedelta(seconds=1)).usable_at(now)
