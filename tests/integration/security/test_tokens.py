"""Graph access tokens are encrypted at rest, handed to callers decrypted by the db lookups, and
rotated by `adsapp tokens reencrypt`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.engine import Engine

from config import get_settings
from config.settings import DEV_TOKEN_KEY
from db import tables as t
from db.repos import templates
from db.tenants import resolve_phone_number
from db.token_cipher import PREFIX, TokenUndecryptable
from db.uow import UnitOfWork
from devkit.tenants import make_tenant
from workers.cli.main import main

pytestmark = pytest.mark.integration


@contextmanager
def token_keys(*keys: bytes) -> Iterator[None]:
    saved = os.environ.get("TOKEN_ENCRYPTION_KEYS")
    os.environ["TOKEN_ENCRYPTION_KEYS"] = ",".join(k.decode() for k in keys)
    get_settings.cache_clear()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TOKEN_ENCRYPTION_KEYS")
        else:
            os.environ["TOKEN_ENCRYPTION_KEYS"] = saved
        get_settings.cache_clear()


def _stored(owner_engine: Engine, phone_number_id: str) -> str:
    with owner_engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(t.whatsapp_numbers.c.access_token).where(
                    t.whatsapp_numbers.c.phone_number_id == phone_number_id
                )
            ).scalar_one()
        )


def _route_token(engine: Engine, phone_number_id: str) -> str | None:
    with engine.connect() as conn:
        route = resolve_phone_number(conn, phone_number_id)
    assert route is not None
    return route.access_token


def test_access_tokens_are_encrypted_at_rest_and_looked_up_plain(
    engine: Engine, owner_engine: Engine
) -> None:
    token = f"EAAG{uuid.uuid4().hex}"
    tenant = make_tenant(engine, token=token)
    stored = _stored(owner_engine, tenant.number)
    assert stored.startswith(PREFIX) and token not in stored
    assert _route_token(engine, tenant.number) == token
    with engine.connect() as conn:
        route = resolve_phone_number(conn, tenant.number)
    assert token not in repr(route)
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        assert templates.accounts(uow.conn) == [(tenant.waba_id, token)]


def test_tokens_reencrypt_moves_every_token_to_the_first_key(
    engine: Engine, owner_engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    with token_keys(old):
        tenant = make_tenant(engine, token="token-under-old-key")
    legacy = make_tenant(engine, token=None)
    with owner_engine.begin() as conn:  # a row written before tokens were encrypted
        conn.execute(
            sa.update(t.whatsapp_numbers)
            .where(t.whatsapp_numbers.c.phone_number_id == legacy.number)
            .values(access_token="legacy-plain-token")
        )
    before = _stored(owner_engine, tenant.number)
    # The session's other tenants were written under the development key: it stays in the list.
    with token_keys(new, old, DEV_TOKEN_KEY.encode()):
        assert _route_token(engine, tenant.number) == "token-under-old-key"  # every key decrypts
        assert main(["tokens", "reencrypt"]) == 0
    try:
        assert "re-encrypted" in capsys.readouterr().out
        after = _stored(owner_engine, tenant.number)
        assert after != before and after.startswith(PREFIX)
        assert _stored(owner_engine, legacy.number).startswith(PREFIX)
        with token_keys(new):  # the old keys can go now
            assert _route_token(engine, tenant.number) == "token-under-old-key"
            assert _route_token(engine, legacy.number) == "legacy-plain-token"
        with token_keys(old):  # ...and a key that no longer encrypts them decrypts nothing
            with pytest.raises(TokenUndecryptable, match="TOKEN_ENCRYPTION_KEYS") as caught:
                _route_token(engine, tenant.number)
            assert "token-under-old-key" not in str(caught.value)
            assert main(["tokens", "reencrypt"]) == 2  # and changes nothing
        assert _stored(owner_engine, tenant.number) == after
    finally:
        with token_keys(DEV_TOKEN_KEY.encode(), new):  # back to the key the rest of the run uses
            assert main(["tokens", "reencrypt"]) == 0
