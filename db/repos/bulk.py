"""Bulk jobs, their items and chunks: planning writes, execution claims and settles, reads for
the API and the CLI. Every function runs on the caller's connection, in its unit of work (tenant
scope, except the stale-chunk sweep, which needs the system scope); none commits.

Items are written with COPY and updated in sets (`unnest` of arrays), never one statement per
item; the job's counters move once per settled chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.engine import Connection, RowMapping

from db.tables import (
    bulk_job_chunks,
    bulk_job_items,
    bulk_jobs,
    contacts,
    conversations,
    messages,
    profiles,
    whatsapp_numbers,
)
from domain import bulk as rules

_BATCH = 10_000


# --- planning -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewJob:
    id: UUID
    organization_id: UUID
    kind: str
    phone_number_id: str | None
    params: Mapping[str, Any]
    total: int
    chunk_size: int
    chunks: int
    idempotency_key: str | None
    fingerprint: str | None


@dataclass(frozen=True, slots=True)
class EncodedJson:
    """Params already encoded as JSON text (planning fills per-recipient values into the job's
    encoded components rather than encoding each recipient's again)."""

    text: str


class NewItem(NamedTuple):
    """One planned item (a tuple: planning makes 100,000 of them, and a frozen dataclass's
    construction costs it about four times as much)."""

    seq: int
    chunk: int
    recipient: str
    contact_id: UUID | None
    params: Mapping[str, Any] | EncodedJson
    status: str = rules.ITEM_PENDING
    error_code: str | None = None
    error_title: str | None = None


@dataclass(frozen=True, slots=True)
class KeyedJob:
    id: UUID
    fingerprint: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ContactRow:
    id: UUID
    wa_id: str
    profile_name: str | None
    opted_out: bool
    last_inbound_at: datetime | None


@dataclass(frozen=True, slots=True)
class NumberFacts:
    phone_number_id: str
    mps: int
    messaging_limit: int | None


def insert_job(conn: Connection, job: NewJob) -> bool:
    """False when a concurrent request took the same idempotency key."""
    stmt = (
        insert(bulk_jobs)
        .values(
            id=job.id,
            organization_id=job.organization_id,
            kind=job.kind,
            status=rules.PENDING,
            phone_number_id=job.phone_number_id,
            params=dict(job.params),
            total=job.total,
            chunk_size=job.chunk_size,
            chunks=job.chunks,
            idempotency_key=job.idempotency_key,
            request_fingerprint=job.fingerprint,
        )
        .on_conflict_do_nothing(
            index_elements=[bulk_jobs.c.organization_id, bulk_jobs.c.idempotency_key],
            index_where=bulk_jobs.c.idempotency_key.is_not(None),
        )
        .returning(bulk_jobs.c.id)
    )
    return conn.execute(stmt).scalar() is not None


# Row-level security refuses COPY into the items table itself, so the rows are copied into a
# bare temporary table of the transaction and moved with one INSERT ... SELECT, which the
# tenant's policy checks like any other insert.
STAGE_ITEMS = sa.text(
    "CREATE TEMP TABLE bulk_items_in (seq int, chunk int, recipient text, contact_id uuid, "
    "params jsonb, status text, error_code text, error_title text) ON COMMIT DROP"
)
COPY_ITEMS = (
    "COPY bulk_items_in (seq, chunk, recipient, contact_id, params, status, error_code, error_title) "
    "FROM STDIN"
)
MOVE_ITEMS = sa.text(
    """
    INSERT INTO bulk_job_items
        (organization_id, bulk_job_id, seq, chunk, recipient, contact_id, params, status,
         error_code, error_title, settled_at)
    SELECT :org, :job, seq, chunk, recipient, contact_id, params, status, error_code, error_title,
           CASE WHEN status = 'pending' THEN NULL ELSE now() END
    FROM bulk_items_in
    """
)
# COPY's text format: a backslash, tab, newline or carriage return inside a value is escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"
_PENDING_TAIL = f"{rules.ITEM_PENDING}\t{_NULL}\t{_NULL}\n"
_COPY_BLOCK = 5_000


def item_copy_lines(items: Sequence[NewItem]) -> Iterable[bytes]:
    """The items as lines of COPY's text format (`COPY_ITEMS`' columns), in blocks; items sharing
    one `params` mapping (a broadcast without per-recipient variables) share its JSON, encoded once."""
    encoded: dict[int, str] = {}
    lines: list[str] = []
    for i in items:
        if isinstance(i.params, EncodedJson):
            params = _json_text(i.params.text)
        else:
            cached = encoded.get(id(i.params))
            if cached is None:
                cached = encoded[id(i.params)] = _json_text(orjson.dumps(i.params).decode())
            params = cached
        if i.status == rules.ITEM_PENDING:
            tail = _PENDING_TAIL
        else:
            tail = f"{i.status}\t{_text(i.error_code)}\t{_text(i.error_title)}\n"
        contact = _NULL if i.contact_id is None else str(i.contact_id)
        recipient = i.recipient if i.recipient.isdigit() else i.recipient.translate(_COPY_ESCAPES)
        lines.append(f"{i.seq}\t{i.chunk}\t{recipient}\t{contact}\t{params}\t{tail}")
        if len(lines) == _COPY_BLOCK:
            yield "".join(lines).encode()
            lines.clear()
    if lines:
        yield "".join(lines).encode()


def _json_text(text: str) -> str:
    # JSON text holds no raw tab, newline or carriage return (they are escaped): only backslashes.
    return text.replace("\\", "\\\\") if "\\" in text else text


def _text(value: str | None) -> str:
    return _NULL if value is None else value.translate(_COPY_ESCAPES)


def copy_rows(conn: Connection, copy_sql: str, lines: Iterable[bytes]) -> None:
    """Stream COPY text-format lines through the connection's own transaction."""
    dbapi: Any = conn.connection.dbapi_connection
    with dbapi.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for block in lines:
            copy.write(block)


def insert_items(conn: Connection, organization_id: UUID, job_id: UUID, items: Sequence[NewItem]) -> None:
    """Write the items with COPY, in the caller's transaction (skipped items settled at the
    transaction's time, as the job's other rows are)."""
    if not items:
        return
    conn.execute(STAGE_ITEMS)
    copy_rows(conn, COPY_ITEMS, item_copy_lines(items))
    conn.execute(MOVE_ITEMS, {"org": organization_id, "job": job_id})
    conn.execute(sa.text("DROP TABLE bulk_items_in"))


def insert_chunks(conn: Connection, organization_id: UUID, job_id: UUID, chunks: int) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO bulk_job_chunks (organization_id, bulk_job_id, chunk) "
            "SELECT :org, :job, n FROM generate_series(0, :last) AS n"
        ),
        {"org": organization_id, "job": job_id, "last": chunks - 1},
    )


def find_job_by_key(conn: Connection, key: str) -> KeyedJob | None:
    row = conn.execute(
        sa.select(bulk_jobs.c.id, bulk_jobs.c.request_fingerprint, bulk_jobs.c.created_at).where(
            bulk_jobs.c.idempotency_key == key
        )
    ).one_or_none()
    return None if row is None else KeyedJob(row.id, row.request_fingerprint, row.created_at)


def release_idempotency_key(conn: Connection, job_id: UUID) -> None:
    conn.execute(
        sa.update(bulk_jobs)
        .where(bulk_jobs.c.id == job_id)
        .values(idempotency_key=None, request_fingerprint=None, updated_at=sa.func.now())
    )


def set_messaging_limit(conn: Connection, phone_number_id: str, limit: int | None) -> bool:
    """Set a number's messaging limit (None: unlimited); False when there is no such number."""
    return bool(
        conn.execute(
            sa.update(whatsapp_numbers)
            .where(whatsapp_numbers.c.phone_number_id == phone_number_id)
            .values(messaging_limit=limit, updated_at=sa.func.now())
        ).rowcount
    )


def number_facts(conn: Connection, phone_number_id: str) -> NumberFacts:
    row = conn.execute(
        sa.select(whatsapp_numbers.c.mps, whatsapp_numbers.c.messaging_limit).where(
            whatsapp_numbers.c.phone_number_id == phone_number_id
        )
    ).one()
    return NumberFacts(phone_number_id, int(row.mps), row.messaging_limit)


_CONTACT_COLUMNS = (
    contacts.c.id,
    contacts.c.wa_id,
    contacts.c.profile_name,
    contacts.c.opted_out,
    contacts.c.last_inbound_at,
)


# The scope's own organization named as a condition the planner can use: the row-level security
# policy alone (this organization OR the system scope) is no index condition, and a lookup of
# 10,000 wa_ids then scans every tenant's contacts.
_THIS_ORGANIZATION = contacts.c.organization_id == sa.func.app_current_org()


def _contact_rows(result: sa.Result[Any]) -> list[ContactRow]:
    # Fetched at once: iterating a result fetches row by row, a tenth of a second per 100,000.
    return [ContactRow(r.id, r.wa_id, r.profile_name, r.opted_out, r.last_inbound_at) for r in result.all()]


def contacts_by_wa_id(conn: Connection, wa_ids: Sequence[str]) -> dict[str, ContactRow]:
    found: dict[str, ContactRow] = {}
    for start in range(0, len(wa_ids), _BATCH):
        batch = sa.cast(sa.bindparam("wa_ids", list(wa_ids[start : start + _BATCH])), ARRAY(sa.Text))
        rows = conn.execute(
            sa.select(*_CONTACT_COLUMNS).where(_THIS_ORGANIZATION, contacts.c.wa_id == sa.any_(batch))
        )
        found.update({c.wa_id: c for c in _contact_rows(rows)})
    return found


def contacts_by_id(conn: Connection, ids: Sequence[UUID]) -> dict[UUID, ContactRow]:
    found: dict[UUID, ContactRow] = {}
    for start in range(0, len(ids), _BATCH):
        batch = sa.cast(sa.bindparam("ids", list(ids[start : start + _BATCH])), ARRAY(PgUUID(as_uuid=True)))
        rows = conn.execute(
            sa.select(*_CONTACT_COLUMNS).where(_THIS_ORGANIZATION, contacts.c.id == sa.any_(batch))
        )
        found.update({c.id: c for c in _contact_rows(rows)})
    return found


@dataclass(frozen=True, slots=True)
class ContactFilter:
    tags: Sequence[str] = ()  # every one of them
    any_tags: Sequence[str] = ()  # at least one of them
    last_inbound_before: datetime | None = None
    last_inbound_after: datetime | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None


def contacts_matching(conn: Connection, where: ContactFilter, limit: int) -> list[ContactRow]:
    """The scoped organization's contacts matching the filter, never opted-out ones, by creation."""
    stmt = sa.select(*_CONTACT_COLUMNS).where(_THIS_ORGANIZATION, contacts.c.opted_out.is_(False))
    if where.tags:
        stmt = stmt.where(contacts.c.tags.contains(list(where.tags)))
    if where.any_tags:
        stmt = stmt.where(contacts.c.tags.overlap(list(where.any_tags)))
    if where.last_inbound_before is not None:
        stmt = stmt.where(contacts.c.last_inbound_at < where.last_inbound_before)
    if where.last_inbound_after is not None:
        stmt = stmt.where(contacts.c.last_inbound_at > where.last_inbound_after)
    if where.created_before is not None:
        stmt = stmt.where(contacts.c.created_at < where.created_before)
    if where.created_after is not None:
        stmt = stmt.where(contacts.c.created_at > where.created_after)
    return _contact_rows(conn.execute(stmt.order_by(contacts.c.created_at, contacts.c.id).limit(limit)))


_RECENT_RECIPIENTS = sa.text(
    """
    SELECT count(DISTINCT m.contact_id) AS used,
           count(DISTINCT m.contact_id) FILTER (WHERE c.wa_id = ANY(CAST(:wa_ids AS text[]))) AS overlap
    FROM messages m JOIN contacts c ON c.id = m.contact_id
    WHERE m.direction = 'outbound' AND m.phone_number_id = :number
      AND m.created_at > now() - interval '24 hours'
    """
)


def recent_recipients(conn: Connection, phone_number_id: str, wa_ids: Sequence[str]) -> tuple[int, int]:
    """Unique recipients this number messaged in the last 24 hours, and how many of `wa_ids` are
    among them (they do not count again against the messaging limit)."""
    row = conn.execute(_RECENT_RECIPIENTS, {"number": phone_number_id, "wa_ids": list(wa_ids)}).one()
    return int(row.used), int(row.overlap)


# --- reads --------------------------------------------------------------------------------------


def get_job(conn: Connection, job_id: UUID, *, lock: bool = False) -> RowMapping | None:
    stmt = sa.select(bulk_jobs).where(bulk_jobs.c.id == job_id)
    if lock:
        stmt = stmt.with_for_update()
    return conn.execute(stmt).mappings().one_or_none()


def list_jobs(
    conn: Connection,
    *,
    after: tuple[datetime, UUID] | None,
    limit: int,
    kind: str | None = None,
    status: str | None = None,
) -> list[RowMapping]:
    """Newest first, by keyset (created_at, id)."""
    stmt = sa.select(bulk_jobs).order_by(bulk_jobs.c.created_at.desc(), bulk_jobs.c.id.desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(bulk_jobs.c.kind == kind)
    if status is not None:
        stmt = stmt.where(bulk_jobs.c.status == status)
    if after is not None:
        stmt = stmt.where(sa.tuple_(bulk_jobs.c.created_at, bulk_jobs.c.id) < sa.tuple_(*after))
    return list(conn.execute(stmt).mappings())


@dataclass(frozen=True, slots=True)
class Progress:
    delivered: int
    read: int
    settled_last_minute: int
    submitted: int
    failed_after_sent: int  # counted as succeeded when their chunk settled; Meta failed them later


_PROGRESS = sa.text(
    """
    SELECT count(*) FILTER (WHERE m.status IN ('delivered', 'read')) AS delivered,
           count(*) FILTER (WHERE m.status = 'read') AS read,
           count(*) FILTER (WHERE i.settled_at > now() - interval '60 seconds'
                            AND i.status IN ('succeeded', 'failed')) AS recent,
           count(*) FILTER (WHERE i.status = 'submitted') AS submitted,
           count(*) FILTER (WHERE i.status = 'succeeded' AND m.status = 'failed') AS late
    FROM bulk_job_items i LEFT JOIN messages m ON m.id = i.message_id
    WHERE i.bulk_job_id = :job
    """
)


def progress(conn: Connection, job_id: UUID) -> Progress:
    row = conn.execute(_PROGRESS, {"job": job_id}).one()
    return Progress(int(row.delivered), int(row.read), int(row.recent), int(row.submitted), int(row.late))


@dataclass(frozen=True, slots=True)
class ItemFilter:
    status: str | None = None
    error_code: str | None = None


def list_items(
    conn: Connection, job_id: UUID, *, after_seq: int | None, limit: int, where: ItemFilter
) -> list[RowMapping]:
    """A job's items in plan order, with their message's wamid and status."""
    stmt = (
        sa.select(
            bulk_job_items.c.seq,
            bulk_job_items.c.recipient,
            bulk_job_items.c.status,
            bulk_job_items.c.message_id,
            bulk_job_items.c.error_code,
            bulk_job_items.c.error_title,
            bulk_job_items.c.settled_at,
            messages.c.wamid,
            messages.c.status.label("message_status"),
        )
        .select_from(bulk_job_items.outerjoin(messages, messages.c.id == bulk_job_items.c.message_id))
        .where(bulk_job_items.c.bulk_job_id == job_id)
        .order_by(bulk_job_items.c.seq)
        .limit(limit)
    )
    if after_seq is not None:
        stmt = stmt.where(bulk_job_items.c.seq > after_seq)
    if where.status is not None:
        stmt = stmt.where(bulk_job_items.c.status == where.status)
    if where.error_code is not None:
        stmt = stmt.where(bulk_job_items.c.error_code == where.error_code)
    return list(conn.execute(stmt).mappings())


def organization_of(conn: Connection, job_id: UUID) -> UUID | None:
    """The organization a job belongs to (system scope: for operators who know only the job)."""
    value = conn.execute(sa.select(bulk_jobs.c.organization_id).where(bulk_jobs.c.id == job_id)).scalar()
    return None if value is None else UUID(str(value))


# --- state changes ------------------------------------------------------------------------------


def set_status(conn: Connection, job_id: UUID, status: str, **values: Any) -> None:
    conn.execute(
        sa.update(bulk_jobs)
        .where(bulk_jobs.c.id == job_id)
        .values(status=status, updated_at=sa.func.now(), **values)
    )


def mark_running(conn: Connection, job_id: UUID) -> None:
    """`pending` → `running` (the first chunk ran); other states are left as they are."""
    conn.execute(
        sa.update(bulk_jobs)
        .where(bulk_jobs.c.id == job_id, bulk_jobs.c.status == rules.PENDING)
        .values(status=rules.RUNNING, started_at=sa.func.now(), updated_at=sa.func.now())
    )


def add_counts(conn: Connection, job_id: UUID, counts: Mapping[str, int]) -> None:
    """Add a chunk's tallies (by item status) to the job's counters: once per settled chunk."""
    columns = {
        rules.ITEM_SUCCEEDED: bulk_jobs.c.succeeded,
        rules.ITEM_FAILED: bulk_jobs.c.failed,
        rules.ITEM_SKIPPED: bulk_jobs.c.skipped,
        rules.ITEM_CANCELLED: bulk_jobs.c.cancelled,
    }
    values: dict[str, Any] = {
        column.name: column + counts[status] for status, column in columns.items() if counts.get(status)
    }
    conn.execute(
        sa.update(bulk_jobs)
        .where(bulk_jobs.c.id == job_id)
        .values(updated_at=sa.func.now(), heartbeat_at=sa.func.now(), **values)
    )


def lock_chunk(conn: Connection, job_id: UUID, chunk: int) -> str | None:
    """The chunk's status, its row locked until commit (a concurrent run of it waits, then sees
    what this one did); None when there is no such chunk."""
    value = conn.execute(
        sa.select(bulk_job_chunks.c.status)
        .where(bulk_job_chunks.c.bulk_job_id == job_id, bulk_job_chunks.c.chunk == chunk)
        .with_for_update()
    ).scalar()
    return None if value is None else str(value)


def set_chunk(conn: Connection, job_id: UUID, chunk: int, status: str | None = None, **values: Any) -> None:
    if status is not None:
        values["status"] = status
    conn.execute(
        sa.update(bulk_job_chunks)
        .where(bulk_job_chunks.c.bulk_job_id == job_id, bulk_job_chunks.c.chunk == chunk)
        .values(updated_at=sa.func.now(), **values)
    )


@dataclass(frozen=True, slots=True)
class ChunkItem:
    id: UUID
    recipient: str
    contact_id: UUID | None
    params: Mapping[str, Any]


def pending_items(conn: Connection, job_id: UUID, chunk: int) -> list[ChunkItem]:
    rows = conn.execute(
        sa.select(
            bulk_job_items.c.id,
            bulk_job_items.c.recipient,
            bulk_job_items.c.contact_id,
            bulk_job_items.c.params,
        )
        .where(
            bulk_job_items.c.bulk_job_id == job_id,
            bulk_job_items.c.chunk == chunk,
            bulk_job_items.c.status == rules.ITEM_PENDING,
        )
        .order_by(bulk_job_items.c.seq)
    )
    return [ChunkItem(r.id, r.recipient, r.contact_id, r.params or {}) for r in rows]


@dataclass(frozen=True, slots=True)
class ItemResult:
    id: UUID
    status: str
    message_id: UUID | None = None
    contact_id: UUID | None = None
    error_code: str | None = None
    error_title: str | None = None


_SET_ITEMS = sa.text(
    """
    UPDATE bulk_job_items i
    SET status = r.status, message_id = coalesce(r.message_id, i.message_id),
        contact_id = coalesce(r.contact_id, i.contact_id), error_code = r.error_code,
        error_title = r.error_title,
        settled_at = CASE WHEN r.status IN ('submitted', 'pending') THEN NULL ELSE now() END,
        updated_at = now()
    FROM unnest(CAST(:id AS uuid[]), CAST(:status AS text[]), CAST(:message_id AS uuid[]),
                CAST(:contact_id AS uuid[]), CAST(:error_code AS text[]), CAST(:error_title AS text[]))
         AS r(id, status, message_id, contact_id, error_code, error_title)
    WHERE i.id = r.id
    """
)


def set_items(conn: Connection, results: Sequence[ItemResult]) -> None:
    """Record many items' results in one statement."""
    if not results:
        return
    conn.execute(
        _SET_ITEMS,
        {
            "id": [r.id for r in results],
            "status": [r.status for r in results],
            "message_id": [r.message_id for r in results],
            "contact_id": [r.contact_id for r in results],
            "error_code": [r.error_code for r in results],
            "error_title": [r.error_title[:1000] if r.error_title else None for r in results],
        },
    )


_SETTLE_FROM_MESSAGES = sa.text(
    """
    UPDATE bulk_job_items i
    SET status = CASE WHEN m.status IN ('failed', 'ambiguous') THEN 'failed' ELSE 'succeeded' END,
        error_code = CASE WHEN m.status = 'ambiguous' THEN 'ambiguous'
                          WHEN m.status = 'failed' THEN coalesce(m.error_code::text, m.error_details)
                     END,
        error_title = CASE WHEN m.status IN ('failed', 'ambiguous') THEN m.error_title END,
        settled_at = now(), updated_at = now()
    FROM messages m
    WHERE i.bulk_job_id = :job AND i.chunk = :chunk AND i.status = 'submitted'
      AND m.id = i.message_id AND m.status = ANY(CAST(:settled AS text[]))
    """
)


def settle_from_messages(conn: Connection, job_id: UUID, chunk: int) -> None:
    """Items whose message has an outcome take it: sent/delivered/read succeed, failed and
    ambiguous fail with the message's code (Meta's, or the billing refusal's) and title."""
    conn.execute(
        _SETTLE_FROM_MESSAGES,
        {"job": job_id, "chunk": chunk, "settled": list(rules.SETTLED_MESSAGE_STATUSES)},
    )
    # A message deleted meanwhile (the foreign key set the item's to NULL) has no outcome to wait for.
    conn.execute(
        sa.update(bulk_job_items)
        .where(
            bulk_job_items.c.bulk_job_id == job_id,
            bulk_job_items.c.chunk == chunk,
            bulk_job_items.c.status == rules.ITEM_SUBMITTED,
            bulk_job_items.c.message_id.is_(None),
        )
        .values(
            status=rules.ITEM_FAILED,
            error_code="message_deleted",
            error_title="The message was deleted.",
            settled_at=sa.func.now(),
            updated_at=sa.func.now(),
        )
    )


def chunk_counts(conn: Connection, job_id: UUID, chunk: int) -> dict[str, int]:
    rows = conn.execute(
        sa.select(bulk_job_items.c.status, sa.func.count())
        .where(bulk_job_items.c.bulk_job_id == job_id, bulk_job_items.c.chunk == chunk)
        .group_by(bulk_job_items.c.status)
    ).all()
    return {str(r[0]): int(r[1]) for r in rows}


def cancel_pending(conn: Connection, job_id: UUID) -> dict[str, int]:
    """Chunks not started (not locked by a running worker) and their items become `cancelled`;
    returns the cancelled item count, for the counters."""
    chunks = (
        sa.select(bulk_job_chunks.c.chunk)
        .where(bulk_job_chunks.c.bulk_job_id == job_id, bulk_job_chunks.c.status == rules.CHUNK_PENDING)
        .with_for_update(skip_locked=True)
    )
    taken = [int(c) for c in conn.execute(chunks).scalars()]
    if not taken:
        return {}
    conn.execute(
        sa.update(bulk_job_chunks)
        .where(bulk_job_chunks.c.bulk_job_id == job_id, bulk_job_chunks.c.chunk.in_(taken))
        .values(status=rules.CHUNK_CANCELLED, settled_at=sa.func.now(), updated_at=sa.func.now())
    )
    cancelled = conn.execute(
        sa.update(bulk_job_items)
        .where(
            bulk_job_items.c.bulk_job_id == job_id,
            bulk_job_items.c.chunk.in_(taken),
            bulk_job_items.c.status == rules.ITEM_PENDING,
        )
        .values(status=rules.ITEM_CANCELLED, settled_at=sa.func.now(), updated_at=sa.func.now())
    ).rowcount
    return {rules.ITEM_CANCELLED: int(cancelled)}


def unsettled_chunks(conn: Connection, job_id: UUID) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                bulk_job_chunks.c.bulk_job_id == job_id,
                bulk_job_chunks.c.status.in_((rules.CHUNK_PENDING, rules.CHUNK_SUBMITTED)),
            )
        ).scalar_one()
    )


def release(conn: Connection, job_id: UUID, window: int) -> list[int]:
    """Mark up to `window` minus those already in flight of the next pending chunks released;
    returns them, for the caller to enqueue."""
    in_flight = conn.execute(
        sa.select(sa.func.count()).where(
            bulk_job_chunks.c.bulk_job_id == job_id,
            bulk_job_chunks.c.released.is_(True),
            bulk_job_chunks.c.status.in_((rules.CHUNK_PENDING, rules.CHUNK_SUBMITTED)),
        )
    ).scalar_one()
    room = window - int(in_flight)
    if room <= 0:
        return []
    nxt = (
        sa.select(bulk_job_chunks.c.chunk)
        .where(
            bulk_job_chunks.c.bulk_job_id == job_id,
            bulk_job_chunks.c.status == rules.CHUNK_PENDING,
            bulk_job_chunks.c.released.is_(False),
        )
        .order_by(bulk_job_chunks.c.chunk)
        .limit(room)
        .with_for_update(skip_locked=True)
    )
    chunks = [int(c) for c in conn.execute(nxt).scalars()]
    if chunks:
        conn.execute(
            sa.update(bulk_job_chunks)
            .where(bulk_job_chunks.c.bulk_job_id == job_id, bulk_job_chunks.c.chunk.in_(chunks))
            .values(released=True, updated_at=sa.func.now())
        )
    return chunks


def record_late_failures(conn: Connection, job_id: UUID) -> int:
    """Items that succeeded (Meta accepted the send) whose message a status webhook later failed
    (131026 arrives so) take the failure, and the counters move with them; returns how many.
    Settled chunks only, as in `reopen_failed`."""
    moved = int(
        conn.execute(
            sa.text(
                """
                UPDATE bulk_job_items i
                SET status = 'failed', error_code = coalesce(m.error_code::text, m.error_details),
                    error_title = m.error_title, updated_at = now()
                FROM messages m
                WHERE i.bulk_job_id = :job AND i.status = 'succeeded' AND m.id = i.message_id
                  AND m.status = 'failed'
                  AND i.chunk IN (SELECT chunk FROM bulk_job_chunks
                                  WHERE bulk_job_id = :job AND status = 'done')
                """
            ),
            {"job": job_id},
        ).rowcount
    )
    if moved:
        conn.execute(
            sa.update(bulk_jobs)
            .where(bulk_jobs.c.id == job_id)
            .values(succeeded=bulk_jobs.c.succeeded - moved, failed=bulk_jobs.c.failed + moved)
        )
    return moved


def reopen_failed(conn: Connection, job_id: UUID, permanent: Iterable[str]) -> int:
    """Failed items whose error is not permanent for their recipient go back to `pending` (a new
    message will be sent) and their chunks with them; returns how many. The job's counters lose
    those chunks' tallies, which their next settle counts again."""
    # Only chunks already settled (done): a chunk still settling is locked by its settle, which
    # waits for the job's row this caller holds, and its tallies are not counted yet.
    settled = sa.select(bulk_job_chunks.c.chunk).where(
        bulk_job_chunks.c.bulk_job_id == job_id, bulk_job_chunks.c.status == rules.CHUNK_DONE
    )
    reopenable = sa.and_(
        bulk_job_items.c.bulk_job_id == job_id,
        bulk_job_items.c.status == rules.ITEM_FAILED,
        bulk_job_items.c.chunk.in_(settled),
        sa.or_(bulk_job_items.c.error_code.is_(None), bulk_job_items.c.error_code.not_in(list(permanent))),
    )
    chunks = sorted(
        int(c) for c in conn.execute(sa.select(bulk_job_items.c.chunk).where(reopenable).distinct()).scalars()
    )
    if not chunks:
        return 0
    tallies = conn.execute(
        sa.select(bulk_job_items.c.status, sa.func.count())
        .where(bulk_job_items.c.bulk_job_id == job_id, bulk_job_items.c.chunk.in_(chunks))
        .group_by(bulk_job_items.c.status)
    ).all()
    add_counts(conn, job_id, {str(status): -int(n) for status, n in tallies})
    reopened = conn.execute(
        sa.update(bulk_job_items)
        .where(reopenable)
        .values(status=rules.ITEM_PENDING, settled_at=None, updated_at=sa.func.now())
    ).rowcount
    conn.execute(
        sa.update(bulk_job_chunks)
        .where(bulk_job_chunks.c.bulk_job_id == job_id, bulk_job_chunks.c.chunk.in_(chunks))
        .values(status=rules.CHUNK_PENDING, released=False, settled_at=None, updated_at=sa.func.now())
    )
    return int(reopened)


def unrelease(conn: Connection, job_id: UUID, chunk: int) -> None:
    """A released chunk of a paused job goes back to wait for the resume."""
    set_chunk(conn, job_id, chunk, released=False)


def items_pending(conn: Connection) -> int:
    """Items of unfinished jobs without an outcome yet, by the jobs' counters (system scope)."""
    value = conn.execute(
        sa.select(
            sa.func.coalesce(
                sa.func.sum(
                    bulk_jobs.c.total
                    - bulk_jobs.c.succeeded
                    - bulk_jobs.c.failed
                    - bulk_jobs.c.skipped
                    - bulk_jobs.c.cancelled
                ),
                0,
            )
        ).where(bulk_jobs.c.status.not_in(list(rules.FINISHED)))
    ).scalar_one()
    return int(value)


# --- the stale-chunk sweep (system scope) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaleChunk:
    organization_id: UUID
    job_id: UUID
    chunk: int
    status: str


def claim_stale_chunks(conn: Connection, older_than_seconds: float, limit: int) -> list[StaleChunk]:
    """Released chunks nobody touched for a while (their job was lost with a worker, or its
    outbox row is still waiting): touched, so the next sweep leaves them a full period."""
    rows = conn.execute(
        sa.text(
            """
            UPDATE bulk_job_chunks c SET updated_at = now(), attempts = c.attempts + 1
            FROM (SELECT bulk_job_id, chunk FROM bulk_job_chunks
                  WHERE released AND status IN ('pending', 'submitted')
                    AND updated_at < now() - make_interval(secs => :older_than)
                  ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED) s
            WHERE c.bulk_job_id = s.bulk_job_id AND c.chunk = s.chunk
            RETURNING c.organization_id, c.bulk_job_id, c.chunk, c.status
            """
        ),
        {"older_than": older_than_seconds, "limit": limit},
    ).all()
    return [StaleChunk(r.organization_id, r.bulk_job_id, int(r.chunk), str(r.status)) for r in rows]


# --- conversations.update and contacts.import ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    status: str | None = None
    assignee: UUID | None = None
    unassigned: bool = False
    tag: str | None = None
    last_message_before: datetime | None = None
    last_message_after: datetime | None = None


def conversations_matching(conn: Connection, where: ConversationFilter, limit: int) -> list[UUID]:
    """The scoped organization's conversations matching the filter (row-level security keeps
    every other tenant's out), oldest first."""
    stmt = sa.select(conversations.c.id)
    if where.status is not None:
        stmt = stmt.where(conversations.c.status == where.status)
    if where.assignee is not None:
        stmt = stmt.where(conversations.c.assigned_to == where.assignee)
    if where.unassigned:
        stmt = stmt.where(conversations.c.assigned_to.is_(None))
    if where.tag is not None:
        stmt = stmt.where(conversations.c.tags.contains([where.tag]))
    if where.last_message_before is not None:
        stmt = stmt.where(conversations.c.last_message_at < where.last_message_before)
    if where.last_message_after is not None:
        stmt = stmt.where(conversations.c.last_message_at > where.last_message_after)
    stmt = stmt.order_by(conversations.c.created_at, conversations.c.id).limit(limit)
    return [UUID(str(v)) for v in conn.execute(stmt).scalars()]


def profile_exists(conn: Connection, profile_id: UUID) -> bool:
    """Whether the scoped organization has this profile (agent)."""
    return conn.execute(sa.select(profiles.c.id).where(profiles.c.id == profile_id)).first() is not None


_UPDATE_CONVERSATIONS = sa.text(
    """
    UPDATE conversations c
    SET status = coalesce(CAST(:status AS text), c.status),
        assigned_to = CASE WHEN :set_assignee THEN CAST(:assignee AS uuid) ELSE c.assigned_to END,
        tags = ARRAY(SELECT DISTINCT t FROM unnest(c.tags || CAST(:add_tags AS text[])) AS t
                     WHERE t <> ALL(CAST(:remove_tags AS text[])) ORDER BY t),
        updated_at = now()
    WHERE c.id = ANY(CAST(:ids AS uuid[]))
      AND NOT (CAST(:status AS text) IS NOT NULL AND CAST(:status AS text) <> 'resolved'
               AND c.status = 'resolved'
               AND EXISTS (SELECT 1 FROM conversations o
                           WHERE o.contact_id = c.contact_id AND o.status <> 'resolved' AND o.id <> c.id))
    RETURNING c.id
    """
)


def update_conversations(conn: Connection, ids: Sequence[UUID], updates: Mapping[str, Any]) -> set[UUID]:
    """Apply `updates` (status, assigned_to, add_tags, remove_tags) to the conversations `ids`;
    returns those changed. A resolved conversation is not reopened while its contact has another
    open one (one open conversation per contact)."""
    rows = conn.execute(
        _UPDATE_CONVERSATIONS,
        {
            "ids": list(ids),
            "status": updates.get("status"),
            "set_assignee": "assigned_to" in updates,
            "assignee": updates.get("assigned_to"),
            "add_tags": list(updates.get("add_tags") or []),
            "remove_tags": list(updates.get("remove_tags") or []),
        },
    ).scalars()
    return {UUID(str(v)) for v in rows}


# Tags travel comma-joined (a tag is validated to hold no comma): unnest cannot take an array of
# arrays of different lengths.
_UPSERT_CONTACTS = sa.text(
    """
    WITH r AS (
        SELECT r.wa_id, r.name, r.opted_out,
               CASE WHEN r.tags = '' THEN '{}'::text[] ELSE string_to_array(r.tags, ',') END AS tags
        FROM unnest(CAST(:wa_id AS text[]), CAST(:name AS text[]), CAST(:tags AS text[]),
                    CAST(:opted_out AS boolean[])) AS r(wa_id, name, tags, opted_out)
    )
    INSERT INTO contacts AS c (organization_id, wa_id, phone, profile_name, tags, opted_out)
    SELECT :org, r.wa_id, r.wa_id, r.name, r.tags, coalesce(r.opted_out, false) FROM r
    ON CONFLICT (organization_id, wa_id) DO UPDATE
    SET profile_name = coalesce(EXCLUDED.profile_name, c.profile_name),
        tags = ARRAY(SELECT DISTINCT t FROM unnest(c.tags || EXCLUDED.tags) AS t ORDER BY t),
        opted_out = coalesce((SELECT r.opted_out FROM r WHERE r.wa_id = EXCLUDED.wa_id), c.opted_out),
        updated_at = now()
    RETURNING c.wa_id
    """
)


@dataclass(frozen=True, slots=True)
class ImportedContact:
    wa_id: str
    name: str | None
    tags: Sequence[str]
    opted_out: bool | None  # None: leave an existing contact's choice as it is


def upsert_contacts(conn: Connection, organization_id: UUID, rows: Sequence[ImportedContact]) -> set[str]:
    """Create or update contacts by wa_id (tags are added, a name replaces the old one);
    returns the wa_ids written."""
    if not rows:
        return set()
    written = conn.execute(
        _UPSERT_CONTACTS,
        {
            "org": organization_id,
            "wa_id": [r.wa_id for r in rows],
            "name": [r.name for r in rows],
            "tags": [",".join(r.tags) for r in rows],
            "opted_out": [r.opted_out for r in rows],
        },
    ).scalars()
    return {str(v) for v in written}
