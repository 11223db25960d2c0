"""The console's session codec and options: signed, expiring, tamper-evident, configured from Settings."""

from __future__ import annotations

import uuid

import pytest

from config import Settings
from config.settings import DEV_CONSOLE_SECRET
from ingress.console import ConsoleOptions
from ingress.console.session import SessionCodec


def test_a_session_round_trips_and_carries_no_key() -> None:
    codec = SessionCodec("s3cret", max_age=60)
    session = codec.new(uuid.uuid4(), "ops", uuid.uuid4(), operator=True)
    cookie = codec.dumps(session)
    assert codec.loads(cookie) == session
    assert session.scope is None and session.letters.operator
    tenant = codec.new(uuid.uuid4(), "t", uuid.uuid4(), operator=False)
    assert tenant.scope == tenant.organization_id and not tenant.letters.operator


def test_a_tampered_foreign_or_expired_cookie_is_no_session() -> None:
    codec = SessionCodec("s3cret", max_age=60)
    cookie = codec.dumps(codec.new(uuid.uuid4(), "k", uuid.uuid4(), operator=False))
    assert codec.loads(cookie.replace(".", "x.", 1)) is None
    assert SessionCodec("other", max_age=60).loads(cookie) is None
    assert SessionCodec("s3cret", max_age=-1).loads(cookie) is None
    assert codec.loads("") is None and codec.loads("garbage") is None


def test_the_sign_in_token_must_come_back_with_its_cookie() -> None:
    codec = SessionCodec("s3cret", max_age=60)
    token, cookie = codec.login_token()
    assert codec.login_token_matches(cookie, token)
    assert not codec.login_token_matches(cookie, token + "x")
    assert not codec.login_token_matches(None, token)
    assert not SessionCodec("other", max_age=60).login_token_matches(cookie, token)


def test_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSOLE_SECRET", "from-env")
    monkeypatch.setenv("CONSOLE_SESSION_SECONDS", "600")
    monkeypatch.setenv("CONSOLE_SECURE_COOKIES", "true")
    options = ConsoleOptions.from_settings(Settings())
    assert (options.secret, options.session_seconds, options.secure_cookies) == ("from-env", 600, True)
    assert "from-env" not in repr(options)
    monkeypatch.delenv("CONSOLE_SECRET")
    # Unset in development: one fixed secret, so every web process accepts the others' cookies.
    monkeypatch.setenv("APP_ENV", "development")
    first, second = ConsoleOptions.from_settings(Settings()), ConsoleOptions.from_settings(Settings())
    assert first.secret == second.secret == DEV_CONSOLE_SECRET
