"""Status webhooks in SQL: status events recorded, messages moved forward by rank, ambiguous sends
settled, and what waited for a wamid claimed (see `workers.inbound.statuses` for the rules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy.engine import Connection

from db.repos.inbound.runner import run
from domain.inbox import OUTBOUND, REACTION_TYPE
from domain.outbound import AMBIGUOUS
from domain.status import MessageStatus, rank


def _rank_sql(column: str) -> str:
    cases = " ".join(f"WHEN '{s.value}' THEN {rank(s)}" for s in MessageStatus)
    # An ambiguous send is as far as `sending`: any webhook status settles it.
    return f"(CASE {column} {cases} WHEN '{AMBIGUOUS}' THEN {rank(MessageStatus.SENDING)} ELSE -1 END)"


_TERMINAL = (MessageStatus.READ.value, MessageStatus.FAILED.value)
_FAILED = MessageStatus.FAILED.value

# In one order for every transaction (and the rows below by id): two deliveries carrying statuses
# of the same messages in different orders would otherwise each hold what the other waits for.
# The rows are locked FOR NO KEY UPDATE (what the UPDATE takes anyway): the status events'
# foreign key has already taken KEY SHARE on them, in each delivery's own order, which a plain
# FOR UPDATE would wait on.
_LOCK = """
SELECT pg_advisory_xact_lock(hashtextextended(w, 0))
FROM (SELECT DISTINCT w FROM unnest(%(wamids)s::text[]) AS w ORDER BY w) AS sorted
"""

_FIND = f"""
SELECT wamid, id FROM messages WHERE wamid = ANY(%(wamids)s::text[]) AND direction = '{OUTBOUND}'
"""  # noqa: S608

# Only an `ambiguous` send adopts a wamid: one still `sending` is mid-call and will record its own.
_ADOPT = f"""
UPDATE messages m SET wamid = a.wamid, error_code = NULL, error_title = NULL, error_details = NULL,
    updated_at = now()
FROM unnest(%(ids)s::uuid[], %(wamids)s::text[]) AS a(id, wamid)
WHERE m.id = a.id AND m.direction = '{OUTBOUND}' AND m.status = '{AMBIGUOUS}' AND m.wamid IS NULL
RETURNING m.wamid, m.id
"""  # noqa: S608

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
    SELECT m.id, m.status FROM messages m JOIN incoming i ON i.message_id = m.id
    ORDER BY m.id FOR NO KEY UPDATE OF m
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
    error_code = CASE WHEN d.advances AND d.status = '{_FAILED}' THEN d.code ELSE m.error_code END,
    error_title = CASE WHEN d.advances AND d.status = '{_FAILED}' THEN d.title ELSE m.error_title END,
    error_details = CASE WHEN d.advances AND d.status = '{_FAILED}' THEN d.details ELSE m.error_details END,
    updated_at = now()
FROM decided d
WHERE m.id = d.message_id
RETURNING m.id, m.wamid, m.status, d.advances
"""  # noqa: S608

_LOCK_ONE = "SELECT pg_advisory_xact_lock(hashtextextended(%(wamid)s, 0))"

# The customer's reaction to the message (kept on it once its wamid is known), and the statuses
# parked for it, claimed in one statement: a send records a wamid a thousand times a second, and
# nearly always neither is there.
_CATCH_UP_AND_CLAIM_PENDING = f"""
WITH reaction AS (
    UPDATE messages t SET reaction_emoji = r.text, reaction_at = r.sent_at, updated_at = now()
    FROM (
        SELECT text, sent_at FROM messages
        WHERE type = '{REACTION_TYPE}' AND context_wamid = %(wamid)s
        ORDER BY sent_at DESC, created_at DESC LIMIT 1
    ) r
    WHERE t.wamid = %(wamid)s AND (t.reaction_at IS NULL OR t.reaction_at <= r.sent_at)
)
UPDATE message_status_events e SET message_id = m.id, applied = true, updated_at = now()
FROM messages m
WHERE e.wamid = %(wamid)s AND NOT e.applied AND m.wamid = %(wamid)s
RETURNING e.id, e.message_id, e.wamid, e.status, e.occurred_at, e.errors
"""  # noqa: S608

# What the send path sends right after recording a wamid, in the same round trip: the wamid's lock
# (taken after the record, before the claim's snapshot: each statement of a query takes its own),
# then the claim (each taking `wamid`, for `UnitOfWork.pipeline`). Its rows are what `catch_up`
# returns.
CATCH_UP = (_LOCK_ONE, _CATCH_UP_AND_CLAIM_PENDING)


def lock_wamids(conn: Connection, wamids: Sequence[str]) -> None:
    """Serialise with a send path recording one of these wamids right now (transaction-scoped)."""
    run(conn, _LOCK, {"wamids": list(wamids)})


def find_outbound(conn: Connection, wamids: Sequence[str]) -> dict[str, UUID]:
    """The outbound messages stored under these wamids, by wamid."""
    if not wamids:
        return {}
    return {r.wamid: r.id for r in run(conn, _FIND, {"wamids": list(wamids)})}


def adopt(conn: Connection, claims: Mapping[str, UUID]) -> dict[str, UUID]:
    """Ambiguous sends (message id) take the wamids that name them; those that did, by wamid."""
    rows = run(conn, _ADOPT, {"ids": [str(i) for i in claims.values()], "wamids": list(claims)})
    return {r.wamid: r.id for r in rows}


def record(conn: Connection, organization_id: UUID, columns: Mapping[str, Sequence[Any]]) -> list[Any]:
    """New status events (`id`, `message_id`, `wamid`, `status`, `occurred_at`, `errors`); a
    redelivered one is not returned. `columns`: parallel arrays message_ids, wamids, statuses, ts,
    recipients, and JSON texts errors, conversations, pricings, raws."""
    return run(conn, _RECORD, {"org": str(organization_id), **columns}).all()


def apply(conn: Connection, columns: Mapping[str, Sequence[Any]]) -> list[Any]:
    """One folded status per message; rows (`id`, `wamid`, `status`, `advances`). `columns`:
    parallel arrays message_ids, statuses, sent, delivered, read, failed, codes, titles, details."""
    return run(conn, _APPLY, dict(columns)).all()


def catch_up(conn: Connection, wamid: str) -> list[Any]:
    """`CATCH_UP`, one statement at a time, in a unit of work that has just stored `wamid`."""
    run(conn, _LOCK_ONE, {"wamid": wamid})
    return run(conn, _CATCH_UP_AND_CLAIM_PENDING, {"wamid": wamid}).all()
