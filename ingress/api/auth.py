"""API-key authentication: `Authorization: Bearer <key>`, looked up by its hash, tenant from the key.

The key's organization is the only tenant a request can act for; nothing in a body or a path can
name another. `last_used_at` is written at most once a minute per key (a Redis `SET NX EX` decides
which request writes it), so a busy key costs no extra write per request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import sqlalchemy as sa
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from db.tables import api_keys
from db.tenants import resolve_api_key
from db.uow import UnitOfWork
from domain.apikeys import KEY_PREFIX, hash_key
from ingress.api.errors import ApiError, ErrorCode

log = logging.getLogger(__name__)

LAST_USED_EVERY_SECONDS: Final = 60
_MAX_KEY_LENGTH: Final = 200


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: UUID
    organization_id: UUID
    scopes: frozenset[str]
    # An operator key (`adsapp apikey create --operator`) sees every tenant's dead letters.
    operator: bool = False

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ApiError(
                ErrorCode.SCOPE_MISSING, f"This operation needs the {scope!r} scope.", {"scope": scope}
            )


def bearer_token(header: str | None) -> str:
    if not header or not header.strip():
        raise ApiError(ErrorCode.AUTH_MISSING)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(ErrorCode.AUTH_MISSING)
    if len(token) > _MAX_KEY_LENGTH or not token.startswith(KEY_PREFIX) or not token.isascii():
        raise ApiError(ErrorCode.AUTH_INVALID)
    return token


def authenticate(engine: Engine, redis: Redis, header: str | None, namespace: str) -> Principal:
    token = bearer_token(header)
    with engine.connect() as conn:
        record = resolve_api_key(conn, hash_key(token))
    if record is None:
        raise ApiError(ErrorCode.AUTH_INVALID)
    now = datetime.now(UTC)
    if record.revoked_at is not None and record.revoked_at <= now:
        raise ApiError(ErrorCode.AUTH_REVOKED)
    if not record.usable_at(now):
        raise ApiError(ErrorCode.AUTH_EXPIRED)
    principal = Principal(
        UUID(record.id), UUID(record.organization_id), frozenset(record.scopes), record.operator
    )
    _touch(engine, redis, principal, namespace)
    return principal


def _touch(engine: Engine, redis: Redis, principal: Principal, namespace: str) -> None:
    try:
        due = redis.set(
            f"{namespace}:api:last-used:{principal.key_id}", b"1", nx=True, ex=LAST_USED_EVERY_SECONDS
        )
    except RedisError:
        log.warning("could not throttle last_used_at; skipped", exc_info=True)
        return
    if not due:
        return
    with UnitOfWork(engine, organization_id=principal.organization_id) as uow:
        uow.conn.execute(
            sa.update(api_keys).where(api_keys.c.id == principal.key_id).values(last_used_at=sa.func.now())
        )
        uow.commit()
