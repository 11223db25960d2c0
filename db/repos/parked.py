"""Parked webhook changes: kept raw, found again by the number (or account) they name.

Every statement here needs the system scope (the table belongs to no tenant). A change is parked
and a number's parked changes are claimed under the same transaction-level advisory lock, keyed by
the number, so a change parked just as its number is added is either seen by the replay or sees
the number itself (`lock`, then read the route, then write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from db.tables import parked_changes, whatsapp_numbers
from domain.whatsapp import ParkReason


@dataclass(frozen=True, slots=True)
class ParkedChange:
    id: int
    phone_number_id: str | None
    waba_id: str | None
    change: Mapping[str, Any]
    received_at: datetime


def lock(conn: Connection, *keys: str) -> None:
    """Hold the parking lock of each key (a number, or an account) until the transaction ends."""
    for key in sorted(set(keys)):
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"parked:{key}", 0))))


def park(
    conn: Connection,
    *,
    digest: str,
    phone_number_id: str | None,
    waba_id: str | None,
    field: str | None,
    change: object,
    reason: ParkReason,
    detail: str | None,
    received_at: datetime,
) -> bool:
    """Whether it was parked now (False: this exact change is parked already)."""
    row = conn.execute(
        insert(parked_changes)
        .values(
            digest=digest,
            phone_number_id=phone_number_id,
            waba_id=waba_id or None,
            field=field,
            change=change,
            reason=reason.value,
            detail=detail,
            received_at=received_at,
        )
        .on_conflict_do_nothing(index_elements=[parked_changes.c.digest])
        .returning(parked_changes.c.id)
    ).first()
    return row is not None


def claim_for(
    conn: Connection, phone_number_id: str | None, waba_id: str | None, limit: int
) -> list[ParkedChange]:
    """The oldest changes waiting for this number (or, without a number, for its account), locked."""
    c = parked_changes.c
    names: list[sa.ColumnElement[bool]] = []
    if phone_number_id:
        names.append(c.phone_number_id == phone_number_id)
    if waba_id:
        names.append(sa.and_(c.phone_number_id.is_(None), c.waba_id == waba_id))
    if not names:
        return []
    rows = conn.execute(
        sa.select(c.id, c.phone_number_id, c.waba_id, c.change, c.received_at)
        .where(c.reason == ParkReason.UNKNOWN_NUMBER.value, sa.or_(*names))
        .order_by(c.received_at, c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [ParkedChange(r.id, r.phone_number_id, r.waba_id, r.change, r.received_at) for r in rows]


def remove(conn: Connection, ids: Sequence[int]) -> None:
    conn.execute(sa.delete(parked_changes).where(parked_changes.c.id.in_(ids)))


def now_owned(conn: Connection, limit: int) -> list[tuple[str | None, str | None]]:
    """(phone_number_id, waba_id) of parked changes whose number or account some tenant now has."""
    c, n = parked_changes.c, whatsapp_numbers.c
    # An account shared by several organizations routes nowhere: it would only be parked again.
    account_owners = (
        sa.select(sa.func.count(sa.distinct(n.organization_id)))
        .where(n.waba_id == c.waba_id)
        .scalar_subquery()
    )
    owned = sa.or_(
        sa.exists().where(n.phone_number_id == c.phone_number_id),
        sa.and_(c.phone_number_id.is_(None), account_owners == 1),
    )
    rows = conn.execute(
        sa.select(c.phone_number_id, c.waba_id)
        .where(c.reason == ParkReason.UNKNOWN_NUMBER.value, owned)
        .group_by(c.phone_number_id, c.waba_id)
        .limit(limit)
    )
    return [(r.phone_number_id, r.waba_id) for r in rows]


def expire(conn: Connection, older_than_seconds: float) -> dict[str, int]:
    """Delete what was received longer ago than the retention; how many, by reason."""
    c = parked_changes.c
    rows = conn.execute(
        sa.delete(parked_changes)
        .where(c.received_at < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds))
        .returning(c.reason)
    )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts
