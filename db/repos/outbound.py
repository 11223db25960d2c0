"""Outbound message rows: what the send API writes and what the send worker claims and settles.

Every function runs on the caller's connection, inside its unit of work (tenant scope, except the
sweeps, which need the system scope). A send job settles only the attempt it made: each update
after the call names the attempt number the claim returned, so a late or duplicate job can never
overwrite another attempt's outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine, RowMapping

from db.prepared import Prepared
from db.repos.billing import MESSAGES_METRIC, period_of
from db.tables import contacts, conversations, messages, whatsapp_numbers
from db.uow import BatchedWork
from domain.outbound import AMBIGUOUS, FAILED, QUEUED, SENDING

# --- the send API -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactFacts:
    id: UUID
    opted_out: bool
    last_inbound_at: datetime | None


@dataclass(frozen=True, slots=True)
class KeyedMessage:
    id: UUID
    fingerprint: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewOutbound:
    id: UUID
    organization_id: UUID
    contact_id: UUID
    conversation_id: UUID
    phone_number_id: str
    type: str
    text: str | None
    context_wamid: str | None
    payload: Mapping[str, Any]
    idempotency_key: str | None
    fingerprint: str | None


def phone_numbers(conn: Connection) -> list[str]:
    """The scoped organization's phone number ids."""
    rows = conn.execute(sa.select(whatsapp_numbers.c.phone_number_id).order_by(whatsapp_numbers.c.created_at))
    return [str(r) for r in rows.scalars()]


def find_contact(conn: Connection, wa_id: str) -> ContactFacts | None:
    row = conn.execute(
        sa.select(contacts.c.id, contacts.c.opted_out, contacts.c.last_inbound_at).where(
            contacts.c.wa_id == wa_id
        )
    ).one_or_none()
    return None if row is None else ContactFacts(row.id, row.opted_out, row.last_inbound_at)


def ensure_contact(conn: Connection, organization_id: UUID, wa_id: str) -> UUID:
    """The contact for `wa_id`, created (without an inbound time) when the business writes first."""
    conn.execute(
        insert(contacts)
        .values(organization_id=organization_id, wa_id=wa_id, phone=wa_id)
        .on_conflict_do_nothing(index_elements=[contacts.c.organization_id, contacts.c.wa_id])
    )
    return UUID(str(conn.execute(sa.select(contacts.c.id).where(contacts.c.wa_id == wa_id)).scalar_one()))


def ensure_open_conversation(conn: Connection, organization_id: UUID, contact_id: UUID) -> UUID:
    """The contact's open conversation; opened when there is none (one per contact, by index)."""
    # A literal, not a parameter: Postgres must see the partial index's own predicate to infer it,
    # and a prepared statement's parameter would hide it.
    open_ = sa.text("status <> 'resolved'")
    conn.execute(
        insert(conversations)
        .values(organization_id=organization_id, contact_id=contact_id, last_message_at=sa.func.now())
        .on_conflict_do_nothing(index_elements=[conversations.c.contact_id], index_where=open_)
    )
    conversation_id = conn.execute(
        sa.update(conversations)
        .where(conversations.c.contact_id == contact_id, open_)
        .values(last_message_at=sa.func.now(), updated_at=sa.func.now())
        .returning(conversations.c.id)
    ).scalar_one()
    return UUID(str(conversation_id))


def find_by_idempotency_key(conn: Connection, key: str) -> KeyedMessage | None:
    row = conn.execute(
        sa.select(messages.c.id, messages.c.request_fingerprint, messages.c.created_at).where(
            messages.c.idempotency_key == key
        )
    ).one_or_none()
    return None if row is None else KeyedMessage(row.id, row.request_fingerprint, row.created_at)


def release_idempotency_key(conn: Connection, message_id: UUID) -> None:
    """Free a key whose retention ended, so a new request may use it (the message stays)."""
    conn.execute(
        sa.update(messages)
        .where(messages.c.id == message_id)
        .values(idempotency_key=None, request_fingerprint=None, updated_at=sa.func.now())
    )


def insert_queued(conn: Connection, new: NewOutbound) -> bool:
    """Insert the `queued` row; False when a concurrent request took the same idempotency key."""
    stmt = insert(messages).values(
        id=new.id,
        organization_id=new.organization_id,
        contact_id=new.contact_id,
        conversation_id=new.conversation_id,
        phone_number_id=new.phone_number_id,
        direction="outbound",
        type=new.type,
        text=new.text,
        context_wamid=new.context_wamid,
        status=QUEUED,
        raw=dict(new.payload),
        idempotency_key=new.idempotency_key,
        request_fingerprint=new.fingerprint,
    )
    if new.idempotency_key is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=[messages.c.organization_id, messages.c.idempotency_key],
            index_where=messages.c.idempotency_key.is_not(None),
        )
    return conn.execute(stmt.returning(messages.c.id)).scalar() is not None


_VIEW_COLUMNS = (
    messages.c.id,
    messages.c.direction,
    messages.c.type,
    messages.c.status,
    messages.c.phone_number_id,
    messages.c.wamid,
    messages.c.text,
    messages.c.context_wamid,
    messages.c.error_code,
    messages.c.error_title,
    messages.c.error_details,
    messages.c.attempts,
    messages.c.created_at,
    messages.c.sent_at,
    messages.c.delivered_at,
    messages.c.read_at,
    messages.c.failed_at,
    contacts.c.wa_id.label("to"),
)


def get_message(conn: Connection, message_id: UUID) -> RowMapping | None:
    return (
        conn.execute(
            sa.select(*_VIEW_COLUMNS)
            .select_from(messages.outerjoin(contacts, contacts.c.id == messages.c.contact_id))
            .where(messages.c.id == message_id)
        )
        .mappings()
        .one_or_none()
    )


def list_outbound(
    conn: Connection, *, after: tuple[datetime, UUID] | None, limit: int, status: str | None = None
) -> list[RowMapping]:
    """Outbound messages, newest first, by keyset (created_at, id): stable under concurrent inserts."""
    stmt = (
        sa.select(*_VIEW_COLUMNS)
        .select_from(messages.outerjoin(contacts, contacts.c.id == messages.c.contact_id))
        .where(messages.c.direction == "outbound")
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(messages.c.status == status)
    if after is not None:
        stmt = stmt.where(sa.tuple_(messages.c.created_at, messages.c.id) < sa.tuple_(*after))
    return list(conn.execute(stmt).mappings())


# --- the send worker ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimRow:
    status: str
    wamid: str | None
    attempts: int
    payload: Mapping[str, Any]
    created_at: datetime
    lease_expired: bool
    lease_left_seconds: float


def lock_for_claim(conn: Connection, message_id: UUID, lease_seconds: float) -> ClaimRow | None:
    lease = sa.func.make_interval(0, 0, 0, 0, 0, 0, lease_seconds)
    row = conn.execute(
        sa.select(
            messages.c.status,
            messages.c.wamid,
            messages.c.attempts,
            messages.c.raw,
            messages.c.created_at,
            (messages.c.updated_at + lease <= sa.func.now()).label("lease_expired"),
            sa.func.extract("epoch", messages.c.updated_at + lease - sa.func.now()).label("lease_left"),
        )
        .where(messages.c.id == message_id, messages.c.direction == "outbound")
        .with_for_update()
    ).one_or_none()
    if row is None:
        return None
    return ClaimRow(
        row.status,
        row.wamid,
        row.attempts,
        row.raw or {},
        row.created_at,
        bool(row.lease_expired),
        max(0.0, float(row.lease_left or 0)),
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    attempt: int
    payload: Mapping[str, Any]
    created_at: datetime


# The hot path of every send, so plain SQL, prepared (by psycopg after a few uses through
# SQLAlchemy; by name in `BatchedWork`), in one statement: the claim, and the message counted
# against the month's usage on its first attempt.
# It does not name the direction (a check constraint keeps `queued` outbound-only): with it, the
# conditions match the partial index of pending sends, which the planner then prefers to the
# primary key whenever its statistics predate a burst of queued sends (a bulk campaign), and every
# claim would scan every queued message.
_CLAIM_QUEUED = """
WITH claimed AS (
    UPDATE messages SET status = 'sending', attempts = attempts + 1, updated_at = now()
    WHERE id = %(id)s AND status = 'queued' AND wamid IS NULL
    RETURNING organization_id, attempts, raw, created_at
), counted AS (
    INSERT INTO usage_counters AS u (organization_id, period, metric, value)
    SELECT organization_id, %(period)s, %(metric)s, 1 FROM claimed WHERE attempts = 1
    ON CONFLICT (organization_id, period, metric) DO UPDATE SET value = u.value + 1
)
SELECT attempts, raw, created_at FROM claimed
"""
_CLAIM_QUEUED_PREPARED = (
    Prepared.of("claim_queued", _CLAIM_QUEUED, id="uuid", period="text", metric="text"),
)


def _claim_params(message_id: UUID) -> dict[str, Any]:
    return {"id": message_id, "period": period_of(), "metric": MESSAGES_METRIC}


def claim_queued(conn: Connection, message_id: UUID) -> Claimed | None:
    """Mark a `queued` message `sending` with its next attempt number, and count it against the
    month's usage if that is its first; None if it is not queued."""
    row = conn.exec_driver_sql(_CLAIM_QUEUED, _claim_params(message_id)).one_or_none()
    return None if row is None else Claimed(int(row.attempts), row.raw or {}, row.created_at)


def claim_queued_committed(engine: Engine, organization_id: UUID, message_id: UUID) -> Claimed | None:
    """`claim_queued` in a transaction of its own, committed in the same round trip."""
    with BatchedWork(engine, organization_id) as work:
        row = work.send(_CLAIM_QUEUED_PREPARED, _claim_params(message_id), commit=True).fetchone()
    return None if row is None else Claimed(int(row.attempts), row.raw or {}, row.created_at)


def _attempt(message_id: UUID, attempt: int | None) -> list[sa.ColumnElement[bool]]:
    conditions = [messages.c.id == message_id, messages.c.wamid.is_(None)]
    if attempt is None:
        conditions.append(messages.c.status == QUEUED)
    else:
        conditions += [messages.c.attempts == attempt, messages.c.status.in_((SENDING, AMBIGUOUS))]
    return conditions


_RECORD_SENT = """
UPDATE messages SET wamid = %(wamid)s, status = 'sent', sent_at = coalesce(sent_at, now()),
    error_code = NULL, error_title = NULL, error_details = NULL, updated_at = now()
WHERE id = %(id)s AND wamid IS NULL AND attempts = %(attempt)s AND status IN ('sending', 'ambiguous')
RETURNING created_at
"""
_RECORD_SENT_PREPARED = Prepared.of("record_sent", _RECORD_SENT, wamid="text", id="uuid", attempt="int")


@dataclass(frozen=True, slots=True)
class Recorded:
    created_at: datetime | None  # the message's creation time; None if the attempt was not current
    after: list[Any]  # the rows of the last statement sent along (`then`), if any


def record_sent(
    work: BatchedWork, message_id: UUID, attempt: int, wamid: str, *, then: Sequence[Prepared] = ()
) -> Recorded:
    """Store the wamid and `sent`, with the transaction's BEGIN and scope when it is its first
    statement, and `then` (statements taking `wamid`) in the same round trip, each with its own
    snapshot: the send path's catch-up on what arrived for the wamid before it was known."""
    cursor = work.send(
        (_RECORD_SENT_PREPARED, *then),
        {"id": message_id, "attempt": attempt, "wamid": wamid},
    )
    row = cursor.fetchone()
    after: list[Any] = []
    if then:
        while cursor.nextset():
            after = cursor.fetchall() if cursor.description else []
    created = None if row is None else row.created_at
    return Recorded(created if isinstance(created, datetime) else None, after)


def record_failed(
    conn: Connection,
    message_id: UUID,
    attempt: int | None,
    *,
    code: int | None,
    title: str,
    details: str | None,
) -> bool:
    """`failed` with Meta's code and title (or ours); `attempt` None settles a still-queued message."""
    return _settle(conn, message_id, attempt, FAILED, code, title, details, failed_at=sa.func.now())


def record_ambiguous(conn: Connection, message_id: UUID, attempt: int, detail: str) -> bool:
    title = "outcome unknown: the request may have reached Meta"
    return _settle(conn, message_id, attempt, AMBIGUOUS, None, title, detail)


def release_attempt(
    conn: Connection, message_id: UUID, attempt: int, *, code: int | None, title: str, details: str | None
) -> bool:
    """Back to `queued` after a failure that proves nothing was sent; the error is kept for view."""
    return _settle(conn, message_id, attempt, QUEUED, code, title, details)


def _settle(
    conn: Connection,
    message_id: UUID,
    attempt: int | None,
    status: str,
    code: int | None,
    title: str,
    details: str | None,
    **extra: Any,
) -> bool:
    values = {
        "status": status,
        "error_code": code,
        "error_title": title[:1000],
        "error_details": details[:4000] if details else None,
        "updated_at": sa.func.now(),
        **extra,
    }
    return bool(
        conn.execute(sa.update(messages).where(*_attempt(message_id, attempt)).values(**values)).rowcount
    )


# --- sweeps (system scope) ----------------------------------------------------------------------


def expire_stuck_sending(conn: Connection, older_than_seconds: float, limit: int) -> int:
    """Sends left in `sending` past the lease (their worker died mid-call) become `ambiguous`."""
    stuck = (
        sa.select(messages.c.id)
        .where(
            messages.c.direction == "outbound",
            messages.c.status == SENDING,
            messages.c.wamid.is_(None),
            messages.c.updated_at
            < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return int(
        conn.execute(
            sa.update(messages)
            .where(messages.c.id.in_(stuck))
            .values(
                status=AMBIGUOUS,
                error_title="outcome unknown: the send was interrupted mid-call",
                error_details="no outcome was recorded within the send lease",
                updated_at=sa.func.now(),
            )
        ).rowcount
    )


@dataclass(frozen=True, slots=True)
class Orphan:
    organization_id: UUID
    message_id: UUID
    phone_number_id: str
    to: str


_ORPHANS = """
SELECT m.id, m.organization_id, m.phone_number_id, m.raw ->> 'to' AS recipient
FROM messages m
WHERE m.direction = 'outbound' AND m.status = 'queued' AND m.wamid IS NULL
  AND m.updated_at < now() - make_interval(secs => :older_than)
  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.kwargs ->> 'message_id' = m.id::text)
ORDER BY m.updated_at
LIMIT :limit
FOR UPDATE OF m SKIP LOCKED
"""


def claim_orphaned_queued(conn: Connection, older_than_seconds: float, limit: int) -> list[Orphan]:
    """Queued sends untouched for a long time with no outbox row left: their job may be lost.

    The rows are touched, so the next sweep waits a full period before looking at them again.
    """
    rows = conn.execute(sa.text(_ORPHANS), {"older_than": older_than_seconds, "limit": limit}).all()
    if rows:
        conn.execute(
            sa.update(messages)
            .where(messages.c.id.in_([r.id for r in rows]))
            .values(updated_at=sa.func.now())
        )
    return [Orphan(r.organization_id, r.id, r.phone_number_id or "", r.recipient or "") for r in rows]
