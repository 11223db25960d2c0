"""Signing in with an API key, and checking on each request that the key still holds.

The key is checked exactly as `/api/v1` checks it (`ingress.api.auth.authenticate`); the console
then keeps only the key's id in its session and re-reads the key's row on every request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine

from db.tables import api_keys
from db.uow import UnitOfWork
from ingress.api.auth import authenticate
from ingress.api.errors import ApiError
from ingress.console.session import ConsoleSession, SessionCodec


class SignInRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sign_in(engine: Engine, redis: Redis, codec: SessionCodec, key: str, namespace: str) -> ConsoleSession:
    try:
        principal = authenticate(engine, redis, f"Bearer {key.strip()}", namespace)
    except ApiError as exc:
        raise SignInRefused(exc.message) from exc
    with UnitOfWork(engine, organization_id=principal.organization_id) as uow:
        name = uow.conn.execute(
            sa.select(api_keys.c.name).where(api_keys.c.id == principal.key_id)
        ).scalar_one()
    return codec.new(principal.key_id, name, principal.organization_id, operator=principal.operator)


def still_valid(engine: Engine, session: ConsoleSession) -> bool:
    """The session's key exists, is not revoked, has not expired, and is still (or still not) an
    operator key: a key whose operator flag changed must sign in again."""
    k = api_keys.c
    with UnitOfWork(engine, organization_id=session.organization_id) as uow:
        row = uow.conn.execute(
            sa.select(k.revoked_at, k.expires_at, k.operator).where(k.id == UUID(str(session.key_id)))
        ).one_or_none()
    if row is None or bool(row.operator) != session.operator:
        return False
    now = datetime.now(UTC)
    revoked = row.revoked_at is not None and row.revoked_at <= now
    expired = row.expires_at is not None and row.expires_at <= now
    return not (revoked or expired)
