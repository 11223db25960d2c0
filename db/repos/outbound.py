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
from typing import Any, Final
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.engine import Connection, RowMapping

from db.repos.billing import MESSAGES_METRIC, period_of
from db.tables import (
    contacts,
    conversations,
    event_store,
    message_status_events,
    messages,
    outbox,
    usage_counters,
    whatsapp_numbers,
)
from db.uow import Statement
from domain.outbound import AMBIGUOUS, FAILED, OUTBOUND, QUEUED, REACTION_TYPE, SENDING, SENT

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
        direction=OUTBOUND,
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
        .where(messages.c.direction == OUTBOUND)
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(messages.c.status == status)
    if after is not None:
        stmt = stmt.where(sa.tuple_(messages.c.created_at, messages.c.id) < sa.tuple_(*after))
    return list(conn.execute(stmt).mappings())


# --- the send worker ----------------------------------------------------------------------------
# The send worker claims and settles many messages of one organization per statement: at a
# thousand sends a second the statements, not the rows, are what Postgres and the worker pay for.


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
        .where(messages.c.id == message_id, messages.c.direction == OUTBOUND)
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


def _ids(values: Sequence[UUID]) -> sa.BindParameter[Any]:
    ids: list[Any] = list(values)
    return sa.bindparam("ids", ids, type_=ARRAY(sa.Uuid()))


# The batched statements of the send path are built once, with their values as array
# parameters: a statement of a fixed shape has one compiled form whatever the batch size, and a
# module-level one keeps its cache key, so a batch costs its round trip and little Python.
_IDS = sa.bindparam("ids", type_=ARRAY(sa.Uuid()))


_ORGS = sa.bindparam("orgs", type_=ARRAY(sa.Uuid()))


def _claim_statement() -> sa.Select[Any]:
    given = (
        sa.func.unnest(_IDS, _ORGS)
        .table_valued(sa.column("id", sa.Uuid()), sa.column("org", sa.Uuid()), name="given")
        .render_derived()
    )
    claimed = (
        sa.update(messages)
        # Each message with the organization its job named: under a send batch's scope (several
        # organizations), a job naming the wrong one must still claim nothing.
        .where(messages.c.id == given.c.id, messages.c.organization_id == given.c.org)
        # The ids again as an array: the rows are found by their primary key (the planner cannot
        # see into the function's rows).
        .where(messages.c.id == sa.any_(_IDS), messages.c.status == QUEUED)
        .where(messages.c.wamid.is_(None))
        .values(status=SENDING, attempts=messages.c.attempts + 1, updated_at=sa.func.now())
        .returning(messages.c.id, messages.c.organization_id, messages.c.attempts, messages.c.raw,
                   messages.c.created_at)
        .cte("claimed")
    )  # fmt: skip
    first = (
        sa.select(
            claimed.c.organization_id,
            sa.bindparam("period", type_=sa.Text()).label("period"),
            sa.literal(MESSAGES_METRIC).label("metric"),
            sa.func.count().label("value"),
        )
        .where(claimed.c.attempts == 1)
        .group_by(claimed.c.organization_id)
        # Each organization's counter row locked in one order: two batches never wait in a cycle.
        .order_by(claimed.c.organization_id)
    )
    counted = insert(usage_counters).from_select(["organization_id", "period", "metric", "value"], first)
    counted = counted.on_conflict_do_update(
        index_elements=[usage_counters.c.organization_id, usage_counters.c.period, usage_counters.c.metric],
        set_={"value": usage_counters.c.value + counted.excluded.value},
    )
    # One statement, one round trip: the claim and the count of first attempts.
    return sa.select(
        claimed.c.id, claimed.c.organization_id, claimed.c.attempts, claimed.c.raw, claimed.c.created_at
    ).add_cte(counted.cte("counted"))


# The send path runs these through the driver's pipeline (`UnitOfWork.pipeline`: a batch's
# statements, BEGIN and COMMIT in one round trip), so they are compiled to driver text once,
# with the constants SQLAlchemy bound; callers add the values.
def _driver_sql(statement: sa.ClauseElement) -> tuple[str, dict[str, Any]]:
    compiled = statement.compile(dialect=psycopg_dialect())  # type: ignore[no-untyped-call]
    return compiled.string, dict(compiled.params)


_CLAIM, _CLAIM_CONSTANTS = _driver_sql(_claim_statement())


def claim_queued(jobs: Sequence[tuple[UUID, UUID]]) -> Statement:
    """The statement that marks the `queued` ones of these messages, each `(organization, message)`,
    `sending` with their next attempt number and counts first attempts against the month's usage
    (`claimed` reads its rows: the others are left out). One organization's under its own scope,
    or several organizations' under a send batch's.

    It does not name the direction (a check constraint keeps `queued` outbound-only): with it, the
    conditions match the partial index of pending sends, which the planner then prefers to the
    primary key whenever its statistics predate a burst of queued sends."""
    return _CLAIM, {
        **_CLAIM_CONSTANTS,
        "ids": [message_id for _, message_id in jobs],
        "orgs": [org for org, _ in jobs],
        "period": period_of(),
    }


def claimed(rows: Sequence[Any]) -> dict[tuple[UUID, UUID], Claimed]:
    return {(r.organization_id, r.id): Claimed(int(r.attempts), r.raw or {}, r.created_at) for r in rows}


@dataclass(frozen=True, slots=True)
class SentRecord:
    organization_id: UUID
    message_id: UUID
    attempt: int
    wamid: str


@dataclass(frozen=True, slots=True)
class RecordedSent:
    created_at: datetime
    wamid: str
    # A status or the customer's reaction arrived for the wamid before it was known.
    has_arrivals: bool


def _record_sent_statement() -> sa.Select[Any]:
    given = (
        sa.func.unnest(
            _IDS,
            sa.bindparam("attempt_numbers", type_=ARRAY(sa.Integer())),
            sa.bindparam("given_wamids", type_=ARRAY(sa.Text())),
            _ORGS,
        )
        .table_valued(sa.column("id", sa.Uuid()), sa.column("attempt", sa.Integer()),
                      sa.column("wamid", sa.Text()), sa.column("org", sa.Uuid()), name="given")
        .render_derived()
    )  # fmt: skip
    reactions = messages.alias("reactions")
    parked = sa.exists().where(
        message_status_events.c.wamid == given.c.wamid, message_status_events.c.applied.is_(False)
    )
    reacted = sa.exists().where(reactions.c.type == REACTION_TYPE, reactions.c.context_wamid == given.c.wamid)
    recorded = (
        sa.update(messages)
        .where(messages.c.id == given.c.id, messages.c.attempts == given.c.attempt)
        .where(messages.c.organization_id == given.c.org)
        # The ids again as an array: the rows are found by their primary key, never by scanning
        # every row without a wamid (the planner cannot see into the function's rows).
        .where(messages.c.id == sa.any_(_IDS))
        # Not `IN (...)`: an expanding parameter has no fixed driver text.
        .where(messages.c.wamid.is_(None))
        .where(sa.or_(messages.c.status == SENDING, messages.c.status == AMBIGUOUS))
        .values(
            wamid=given.c.wamid,
            status=SENT,
            sent_at=sa.func.coalesce(messages.c.sent_at, sa.func.now()),
            error_code=None,
            error_title=None,
            error_details=None,
            updated_at=sa.func.now(),
        )
        .returning(messages.c.id, messages.c.organization_id, messages.c.attempts, messages.c.wamid,
                   messages.c.created_at, (parked | reacted).label("has_arrivals"))
        .cte("recorded")
    )  # fmt: skip
    # `message.sent` for exactly the rows this statement stored: an attempt settled before (by a
    # duplicate job, or a newer attempt) is not in `recorded`, and an UPDATE changes a row once
    # even when two given rows name it, so each stored wamid is audited once.
    audited = insert(event_store).from_select(
        ["organization_id", "aggregate_type", "aggregate_id", "event_type", "payload"],
        sa.select(
            recorded.c.organization_id,
            sa.literal("message"),
            sa.cast(recorded.c.id, sa.Text()),
            sa.literal("message.sent"),
            sa.func.jsonb_build_object("attempt", recorded.c.attempts, "wamid", recorded.c.wamid),
        ),
    )
    return sa.select(
        recorded.c.id, recorded.c.organization_id, recorded.c.wamid, recorded.c.created_at,
        recorded.c.has_arrivals,
    ).add_cte(audited.cte("audited"))  # fmt: skip


_RECORD_SENT, _RECORD_SENT_CONSTANTS = _driver_sql(_record_sent_statement())


def record_sent(records: Sequence[SentRecord]) -> Statement:
    """The statement that stores each wamid and `sent` where its attempt is still current (the
    others were settled by a newer attempt or by a status webhook) and its message belongs to the
    organization named with it, with `message.sent` for each one stored; `recorded` reads its
    rows. Take the wamids' locks first (`lock_wamids`, in an earlier statement of the
    transaction): the status path takes them too, so one of the two always sees the other's
    committed row (this statement's snapshot is taken once the locks are held)."""
    return _RECORD_SENT, {
        **_RECORD_SENT_CONSTANTS,
        "ids": [r.message_id for r in records],
        "attempt_numbers": [r.attempt for r in records],
        "given_wamids": [r.wamid for r in records],
        "orgs": [r.organization_id for r in records],
    }


def recorded(rows: Sequence[Any]) -> dict[tuple[UUID, UUID], RecordedSent]:
    """Each `(organization, message)` whose wamid was stored: its creation time, the wamid, and
    whether something arrived for the wamid before it was known."""
    return {
        (r.organization_id, r.id): RecordedSent(r.created_at, r.wamid, bool(r.has_arrivals)) for r in rows
    }


_LOCK_WAMIDS, _LOCK_WAMIDS_CONSTANTS = _driver_sql(
    sa.select(
        sa.func.pg_advisory_xact_lock(
            sa.func.hashtextextended(
                sa.func.unnest(sa.bindparam("wamids", type_=ARRAY(sa.Text()))).column_valued("w"), 0
            )
        )
    )
)


def lock_wamids(wamids: Sequence[str]) -> Statement:
    """The wamids' transaction locks (in one order, so concurrent callers never wait in a cycle),
    whatever the tenant scope: one statement for the wamids of every organization of a batch."""
    return _LOCK_WAMIDS, {**_LOCK_WAMIDS_CONSTANTS, "wamids": sorted(set(wamids))}


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


def touch_queued(conn: Connection, message_ids: Sequence[UUID]) -> int:
    """A deferred send is alive: its fresh delayed job is on the way, so the orphan sweep (which
    looks for `queued` rows untouched for a long time) must not enqueue another one."""
    return int(
        conn.execute(
            sa.update(messages)
            .where(messages.c.id == sa.any_(_ids(message_ids)), messages.c.status == QUEUED)
            .values(updated_at=sa.func.now())
        ).rowcount
    )


def _attempt(message_id: UUID, attempt: int | None) -> list[sa.ColumnElement[bool]]:
    conditions = [messages.c.id == message_id, messages.c.wamid.is_(None)]
    if attempt is None:
        conditions.append(messages.c.status == QUEUED)
    else:
        conditions += [messages.c.attempts == attempt, messages.c.status.in_((SENDING, AMBIGUOUS))]
    return conditions


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


STUCK_SENDING_TITLE: Final = "outcome unknown: the send was interrupted mid-call"


# --- sweeps (system scope) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expired:
    organization_id: UUID
    message_id: UUID
    attempt: int | None


def expire_stuck_sending(conn: Connection, older_than_seconds: float, limit: int) -> list[Expired]:
    """Sends left in `sending` past the lease (their worker died mid-call) become `ambiguous`."""
    stuck = (
        sa.select(messages.c.id)
        .where(
            messages.c.direction == OUTBOUND,
            messages.c.status == SENDING,
            messages.c.wamid.is_(None),
            messages.c.updated_at < sa.func.now() - _seconds(older_than_seconds),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.update(messages)
        .where(messages.c.id.in_(stuck))
        .values(
            status=AMBIGUOUS,
            error_title=STUCK_SENDING_TITLE,
            error_details="no outcome was recorded within the send lease",
            updated_at=sa.func.now(),
        )
        .returning(messages.c.organization_id, messages.c.id, messages.c.attempts)
    ).all()
    return [Expired(r.organization_id, r.id, r.attempts) for r in rows]


@dataclass(frozen=True, slots=True)
class Orphan:
    organization_id: UUID
    message_id: UUID
    phone_number_id: str
    to: str


def claim_orphaned_queued(conn: Connection, older_than_seconds: float, limit: int) -> list[Orphan]:
    """Queued sends untouched for a long time with no outbox row left: their job may be lost.

    The rows are touched, so the next sweep waits a full period before looking at them again.
    """
    pending_job = sa.exists().where(outbox.c.kwargs["message_id"].astext == sa.cast(messages.c.id, sa.Text))
    rows = conn.execute(
        sa.select(
            messages.c.id,
            messages.c.organization_id,
            messages.c.phone_number_id,
            messages.c.raw["to"].astext.label("recipient"),
        )
        .where(messages.c.direction == OUTBOUND, messages.c.status == QUEUED, messages.c.wamid.is_(None))
        .where(messages.c.updated_at < sa.func.now() - _seconds(older_than_seconds), ~pending_job)
        .order_by(messages.c.updated_at)
        .limit(limit)
        .with_for_update(of=messages, skip_locked=True)
    ).all()
    if rows:
        conn.execute(
            sa.update(messages)
            .where(messages.c.id.in_([r.id for r in rows]))
            .values(updated_at=sa.func.now())
        )
    return [Orphan(r.organization_id, r.id, r.phone_number_id or "", r.recipient or "") for r in rows]


def _seconds(seconds: float) -> sa.ColumnElement[Any]:
    return sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)
