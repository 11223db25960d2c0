"""Status webhooks: every event kept, the message moved forward by rank only, early ones parked.

- Each status is a `message_status_events` row (unique on wamid, status, time, so a redelivery adds
  nothing), with its errors, conversation and pricing objects.
- The message's status only advances (`domain.status.advances`, mirrored in SQL): a late
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

from db.repos.inbound import statuses as repo
from db.repos.inbound.runner import json_text
from domain.status import MessageStatus, parse_webhook_status, rank
from domain.whatsapp import StatusUpdate

# What the send path sends right after recording a wamid (see `db.repos.inbound.statuses`);
# `apply_caught_up` applies what it returns.
CATCH_UP = repo.CATCH_UP


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
    known = repo.find_outbound(conn, wamids)
    missing = [w for w in wamids if w not in known]
    reconciled = 0
    if missing:
        # Serialise with a send path recording one of these wamids right now (see module doc).
        repo.lock_wamids(conn, missing)
        known.update(repo.find_outbound(conn, missing))
        adopted = _adopt(conn, [s for s in statuses if s.wamid not in known])
        known.update(adopted)
        reconciled = len(adopted)
    rows = repo.record(
        conn,
        organization_id,
        {
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
    )
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


def apply_pending_statuses(conn: Connection, wamid: str) -> StatusOutcome:
    """Apply what arrived for `wamid` before its message row existed (statuses, and the customer's
    reaction to it), in a unit of work that has just stored the wamid: the same statements the send
    path sends along with its record (`CATCH_UP`), one by one."""
    return apply_caught_up(conn, repo.catch_up(conn, wamid))


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
    return repo.adopt(conn, claims)


def _callback_message_id(status: StatusUpdate) -> UUID | None:
    marker = status.raw.get("biz_opaque_callback_data")
    if not isinstance(marker, str):
        return None
    try:
        return UUID(marker)
    except ValueError:
        return None  # another sender's marker, not one of our message ids


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
    rows = repo.apply(conn, params)
    changed = [(r.id, r.wamid, r.status) for r in rows if r.advances]
    # Recorded but not applied: they would have moved the message backwards.
    stale_count = sum(1 for r in rows if not r.advances)
    return changed, stale_count


def _str(value: UUID | None) -> str | None:
    return None if value is None else str(value)
