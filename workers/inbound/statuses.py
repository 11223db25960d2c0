"""Status webhooks: every event kept, the message moved forward by rank only, early ones parked.

- Each status is a `message_status_events` row (unique on wamid, status, time, so a redelivery adds
  nothing), with its errors, conversation and pricing objects.
- The message's status only advances (`domain.status.advances`, mirrored in SQL below): a late
  `delivered` never undoes `read`, and `failed` wins over sent/delivered. Within one batch the
  highest rank is applied. Each status's own time column (`sent_at`, ...) is filled whatever the
  order of arrival.
- A status whose message is not stored yet (the send path records the wamid after Meta answered,
  and Meta can be faster) is kept with `applied = false` and applied when the send path records
  that wamid (`CATCH_UP`, sent with the record; `apply_pending_statuses` in a unit of work). Both
  sides take a transaction-scoped advisory lock on the wamid first, so one of them always sees the
  other's committed row.
- A status for an unknown wamid whose `biz_opaque_callback_data` names one of this organization's
  `ambiguous` sends (the call timed out or its answer was lost, so the wamid was never recorded)
  settles it: the message adopts the wamid, and the status applies as to any other send. Meta
  reporting on the message is the proof it was sent; nothing is sent again either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection

from db.prepared import Prepared
from domain.status import MessageStatus, parse_webhook_status, rank
from domain.whatsapp import StatusUpdate
from workers.inbound.params import json_text, run


def _rank_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{s.value}' THEN {rank(s)}" for s in MessageStatus)
    # An ambiguous send is as far as `sending`: any webhook status settles it.
    return f"(CASE {column} {cases} WHEN 'ambiguous' THEN {rank(MessageStatus.SENDING)} ELSE -1 END)"


_TERMINAL = (MessageStatus.READ.value, MessageStatus.FAILED.value)

_LOCK = """
SELECT pg_advisory_xact_lock(hashtextextended(w, 0)) FROM unnest(%(wamids)s::text[]) AS w
"""

_FIND = """
SELECT wamid, id FROM messages WHERE wamid = ANY(%(wamids)s::text[]) AND direction = 'outbound'
"""

# Only an `ambiguous` send adopts a wamid: one still `sending` is mid-call and will record its own.
_ADOPT = """
UPDATE messages m SET wamid = a.wamid, error_code = NULL, error_title = NULL, error_details = NULL,
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(wamids)s::text[]) AS a(id, wamid)
WHERE m.id = a.id AND m.direction = 'outbound' AND m.status = 'ambiguous' AND m.wamid IS NULL
RETURNING m.wamid, m.id
"""

_RECORD = """
INSERT INTO message_status_events (
    organization_id, message_id, wamid, status, occurred_at, recipient_id, errors, conversation,
    pricing, raw, applied
)
SELECT %(org)s::uuid, s.message_id, s.wamid, s.status, to_timestamp(s.ts), s.recipient,
       s.errors::jsonb, s.conversation::jsonb, s.pricing::jsonb, s.raw::jsonb, s.message_id IS NOT NULL
FROM unnest(
    %(message_ids)s::uuid[], %(wamids)s::text[], %(statuses)s::text[], %(ts)s::bigint[],
    %(recipients)s::text[], %(errors)s::text[], %(conversations)s::text[], %(pricings)s::text[],
    %(raws)s::text[]
) AS s(message_id, wamid, status, ts, recipient, errors, conversation, pricing, raw)
ON CONFLICT (wamid, status, occurred_at) DO NOTHING
RETURNING id, message_id, wamid, status, occurred_at, errors
"""

# Built from constants of `domain.status` only; no input reaches the text.
_APPLY = f"""
WITH incoming AS (
    SELECT * FROM unnest(
        %(message_ids)s::uuid[], %(statuses)s::text[], %(sent)s::timestamptz[],
        %(delivered)s::timestamptz[], %(read)s::timestamptz[], %(failed)s::timestamptz[],
        %(codes)s::int[], %(titles)s::text[], %(details)s::text[]
    ) AS i(message_id, status, sent, delivered, read, failed, code, title, details)
), current AS (
    SELECT m.id, m.status FROM messages m JOIN incoming i ON i.message_id = m.id FOR UPDATE OF m
), decided AS (
    SELECT i.*, c.status AS old_status,
           (c.status NOT IN {_TERMINAL!r} AND {_rank_sql("i.status")} > {_rank_sql("c.status")}) AS advances
    FROM incoming i JOIN current c ON c.id = i.message_id
)
UPDATE messages m SET
    status = CASE WHEN d.advances THEN d.status ELSE m.status END,
    sent_at = LEAST(m.sent_at, d.sent),
    delivered_at = LEAST(m.delivered_at, d.delivered),
    read_at = LEAST(m.read_at, d.read),
    failed_at = LEAST(m.failed_at, d.failed),
    error_code = CASE WHEN d.advances AND d.status = 'failed' THEN d.code ELSE m.error_code END,
    error_title = CASE WHEN d.advances AND d.status = 'failed' THEN d.title ELSE m.error_title END,
    error_details = CASE WHEN d.advances AND d.status = 'failed' THEN d.details ELSE m.error_details END,
    updated_at = now()
FROM decided d
WHERE m.id = d.message_id
RETURNING m.id, m.wamid, m.status, d.advances
"""  # noqa: S608

_LOCK_ONE = "SELECT pg_advisory_xact_lock(hashtextextended(%(wamid)s, 0))"

# The customer's reaction to the message (kept on it once its wamid is known), and the statuses
# parked for it, claimed in one statement: a send records a wamid a thousand times a second, and
# nearly always neither is there.
_CATCH_UP_AND_CLAIM_PENDING = """
WITH reaction AS (
    UPDATE messages t SET reaction_emoji = r.text, reaction_at = r.sent_at, updated_at = now()
    FROM (
        SELECT text, sent_at FROM messages
        WHERE type = 'reaction' AND context_wamid = %(wamid)s
        ORDER BY sent_at DESC, created_at DESC LIMIT 1
    ) r
    WHERE t.wamid = %(wamid)s AND (t.reaction_at IS NULL OR t.reaction_at <= r.sent_at)
)
UPDATE message_status_events e SET message_id = m.id, applied = true, updated_at = now()
FROM messages m
WHERE e.wamid = %(wamid)s AND NOT e.applied AND m.wamid = %(wamid)s
RETURNING e.id, e.message_id, e.wamid, e.status, e.occurred_at, e.errors
"""


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    recorded: int = 0
    applied: int = 0
    stale: int = 0
    pending: int = 0
    reconciled: int = 0  # ambiguous sends settled by a status naming them
    # (message id, wamid, status now on the message) for each message that moved forward.
    changed: tuple[tuple[UUID, str, str], ...] = ()
    # (event id, wamid, status, message id or None) for each new status event.
    events: tuple[tuple[int | str, str, str, UUID | None], ...] = ()


def record_statuses(
    conn: Connection, organization_id: UUID, statuses: Sequence[StatusUpdate]
) -> StatusOutcome:
    wamids = sorted({s.wamid for s in statuses})
    known = _find(conn, wamids)
    missing = [w for w in wamids if w not in known]
    reconciled = 0
    if missing:
        # Serialise with a send path recording one of these wamids right now (see module doc).
        run(conn, _LOCK, {"wamids": missing})
        known.update(_find(conn, missing))
        adopted = _adopt(conn, [s for s in statuses if s.wamid not in known])
        known.update(adopted)
        reconciled = len(adopted)
    rows = run(
        conn,
        _RECORD,
        {
            "org": str(organization_id),
            "message_ids": [_str(known.get(s.wamid)) for s in statuses],
            "wamids": [s.wamid for s in statuses],
            "statuses": [s.status for s in statuses],
            "ts": [s.timestamp for s in statuses],
            "recipients": [s.recipient_id for s in statuses],
            "errors": [json_text([dict(e.raw) for e in s.errors]) if s.errors else None for s in statuses],
            "conversations": [json_text(s.conversation) for s in statuses],
            "pricings": [json_text(s.pricing) for s in statuses],
            "raws": [json_text(s.raw) for s in statuses],
        },
    ).all()
    pending = sum(1 for r in rows if r.message_id is None)
    changed, stale = _apply(conn, [r for r in rows if r.message_id is not None])
    return StatusOutcome(
        recorded=len(rows),
        applied=len(changed),
        stale=stale,
        pending=pending,
        reconciled=reconciled,
        changed=tuple(changed),
        events=tuple((r.id, r.wamid, r.status, r.message_id) for r in rows),
    )


# What the send path sends right after recording a wamid, in the same round trip: the wamid's lock
# (taken after the record, before the claim's snapshot: each statement of a query takes its own),
# then the claim. `apply_caught_up` applies what it returns.
CATCH_UP = (
    Prepared.of("lock_wamid", _LOCK_ONE, wamid="text"),
    Prepared.of("catch_up", _CATCH_UP_AND_CLAIM_PENDING, wamid="text"),
)


def apply_pending_statuses(conn: Connection, wamid: str) -> StatusOutcome:
    """Apply what arrived for `wamid` before its message row existed (statuses, and the customer's
    reaction to it), in a unit of work that has just stored the wamid: the same statements the send
    path sends along with its record (`CATCH_UP`), one by one."""
    run(conn, _LOCK_ONE, {"wamid": wamid})
    return apply_caught_up(conn, run(conn, _CATCH_UP_AND_CLAIM_PENDING, {"wamid": wamid}).all())


def apply_caught_up(conn: Connection, rows: Sequence[Any]) -> StatusOutcome:
    """Apply the parked statuses `CATCH_UP` claimed (nearly always none)."""
    changed, stale = _apply(conn, rows) if rows else ([], 0)
    return StatusOutcome(
        recorded=0,
        applied=len(changed),
        stale=stale,
        changed=tuple(changed),
        events=tuple((r.id, r.wamid, r.status, r.message_id) for r in rows),
    )


def _adopt(conn: Connection, statuses: Iterable[StatusUpdate]) -> dict[str, UUID]:
    """Ambiguous sends named by these statuses' callback data take their wamids (see module doc)."""
    claims: dict[str, UUID] = {}
    for status in statuses:
        message_id = _callback_message_id(status)
        if message_id is not None and message_id not in claims.values():
            claims.setdefault(status.wamid, message_id)
    if not claims:
        return {}
    rows = run(conn, _ADOPT, {"ids": [str(i) for i in claims.values()], "wamids": list(claims)})
    return {r.wamid: r.id for r in rows}


def _callback_message_id(status: StatusUpdate) -> UUID | None:
    marker = status.raw.get("biz_opaque_callback_data")
    if not isinstance(marker, str):
        return None
    try:
        return UUID(marker)
    except ValueError:
        return None  # another sender's marker, not one of our message ids


def _find(conn: Connection, wamids: list[str]) -> dict[str, UUID]:
    if not wamids:
        return {}
    return {r.wamid: r.id for r in run(conn, _FIND, {"wamids": wamids})}


@dataclass(slots=True)
class _Fold:
    best: MessageStatus | None = None
    times: dict[MessageStatus, datetime] | None = None
    error: dict[str, Any] | None = None


def _apply(conn: Connection, events: Iterable[Any]) -> tuple[list[tuple[UUID, str, str]], int]:
    """Fold new events per message (highest rank, earliest time per status), then apply in SQL."""
    folds: dict[UUID, _Fold] = {}
    for event in events:
        status = parse_webhook_status(event.status)
        if status is None:
            continue  # kept as an event; not a status a message can be in
        fold = folds.setdefault(event.message_id, _Fold(times={}))
        assert fold.times is not None
        if fold.best is None or rank(status) > rank(fold.best):
            fold.best = status
        at = event.occurred_at or datetime.now(UTC)
        if status not in fold.times or at < fold.times[status]:
            fold.times[status] = at
        if status is MessageStatus.FAILED and event.errors:
            fold.error = event.errors[0] if isinstance(event.errors, list) else None
    if not folds:
        return [], 0
    ids = list(folds)
    params: dict[str, list[Any]] = {
        "message_ids": [str(i) for i in ids],
        "statuses": [],
        "sent": [],
        "delivered": [],
        "read": [],
        "failed": [],
        "codes": [],
        "titles": [],
        "details": [],
    }
    for message_id in ids:
        fold = folds[message_id]
        assert fold.best is not None and fold.times is not None
        params["statuses"].append(fold.best.value)
        for key, status in (
            ("sent", MessageStatus.SENT),
            ("delivered", MessageStatus.DELIVERED),
            ("read", MessageStatus.READ),
            ("failed", MessageStatus.FAILED),
        ):
            params[key].append(fold.times.get(status))
        error = fold.error or {}
        code = error.get("code")
        data = error.get("error_data")
        params["codes"].append(code if isinstance(code, int) else None)
        params["titles"].append(error.get("title") or error.get("message"))
        params["details"].append(data.get("details") if isinstance(data, dict) else None)
    rows = run(conn, _APPLY, params).all()
    changed = [(r.id, r.wamid, r.status) for r in rows if r.advances]
    # Recorded but not applied: they would have moved the message backwards.
    stale_count = sum(1 for r in rows if not r.advances)
    return changed, stale_count


def _str(value: UUID | None) -> str | None:
    return None if value is None else str(value)
