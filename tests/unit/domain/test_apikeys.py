from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.apikeys import ApiKeyRecord, generate_key, hash_key, key_state, parse_expiry, parse_scopes


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


def test_expiry_is_a_future_time_or_a_duration() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_expiry("90d", now) == now + timedelta(days=90)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("2027-01-31T00:00:00", now) == datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_expiry("2027-01-31T01:00:00+01:00", now) == datetime(2027, 1, 31, tzinfo=UTC)
    for bad in ("0m", "2026-11-30", "tomorrow", "-1d"):
        with pytest.raises(ValueError, match="--expires"):
            parse_expiry(bad, now)
    assert key_state(None, None, now) == "active"
    assert key_state(now, None, now) == "expired"
    assert key_state(None, now - timedelta(seconds=1), now) == "revoked"
