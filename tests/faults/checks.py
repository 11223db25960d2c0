"""Compare a phase's ledger with the facts: rows in Postgres and the fake Graph API's send log.

Read as the database superuser over a plain connection (no row-level security, no unit of work of
the fleet's), so the check does not depend on the code it checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from tests.faults.load import Ledger

FINAL_WITH_REASON = ("failed", "ambiguous")


@dataclass
class Verdict:
    accepted: int = 0
    stored: int = 0
    duplicates: int = 0
    lost: int = 0
    stuck: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and self.stuck == 0 and not self.problems


def _counts(conn: psycopg.Connection[Any], sql: str, keys: list[str]) -> dict[str, int]:
    if not keys:
        return {}
    return {str(k): int(n) for k, n in conn.execute(sql, (keys,)).fetchall()}


def evaluate(dsn: str, fake_url: str, ledger: Ledger) -> Verdict:
    v = Verdict(accepted=ledger.accepted + len(ledger.media_wamids))
    with psycopg.connect(dsn, autocommit=True) as conn:
        _webhooks(conn, ledger, v)
        _media(conn, ledger, v)
        _stripe(conn, ledger, v)
        _sends(conn, fake_url, ledger, v)
        v.stuck = int(
            conn.execute("SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')").fetchone()[0]  # type: ignore[index]
        )
    return v


def _webhooks(conn: psycopg.Connection[Any], ledger: Ledger, v: Verdict) -> None:
    stored = _counts(
        conn, "SELECT wamid, count(*) FROM messages WHERE wamid = ANY(%s) GROUP BY wamid", ledger.wamids
    )
    v.stored += len(stored)
    v.duplicates += sum(n - 1 for n in stored.values())
    v.lost += len(set(ledger.wamids) - set(stored))
    keys = [f"{w}|{s}|{t}" for w, s, t in ledger.statuses]
    events = _counts(
        conn,
        "SELECT wamid || '|' || status || '|' || extract(epoch FROM occurred_at)::bigint, count(*) "
        "FROM message_status_events WHERE wamid = ANY(%s) GROUP BY 1",
        [w for w, _, _ in ledger.statuses],
    )
    found = [k for k in keys if k in events]
    v.stored += len(found)
    v.duplicates += sum(events[k] - 1 for k in set(found))
    v.lost += len(set(keys) - set(events))


def _media(conn: psycopg.Connection[Any], ledger: Ledger, v: Verdict) -> None:
    if not ledger.media_wamids:
        return
    rows = conn.execute(
        "SELECT m.wamid, count(*) FILTER (WHERE md.status = 'stored'), count(md.id) FROM messages m "
        "LEFT JOIN media md ON md.message_id = m.id WHERE m.wamid = ANY(%s) GROUP BY m.wamid",
        (ledger.media_wamids,),
    ).fetchall()
    stored = {str(w): (int(ok), int(total)) for w, ok, total in rows}
    v.stored += sum(1 for ok, _ in stored.values() if ok == 1)
    v.duplicates += sum(max(0, total - 1) for _, total in stored.values())
    missing = [w for w in ledger.media_wamids if stored.get(w, (0, 0))[0] == 0]
    v.lost += len(missing)
    if missing:
        v.problems.append(f"{len(missing)} media not stored")


def _stripe(conn: psycopg.Connection[Any], ledger: Ledger, v: Verdict) -> None:
    recorded = _counts(
        conn,
        "SELECT event_id, count(*) FROM webhook_events WHERE source = 'stripe' AND event_id = ANY(%s) "
        "AND outcome IS NOT NULL GROUP BY event_id",
        ledger.stripe_events,
    )
    applied = _counts(
        conn,
        "SELECT payload->>'stripe_event_id', count(*) FROM event_store "
        "WHERE payload->>'stripe_event_id' = ANY(%s) GROUP BY 1",
        ledger.stripe_events,
    )
    v.stored += len(recorded)
    v.duplicates += sum(n - 1 for n in recorded.values()) + sum(n - 1 for n in applied.values() if n > 1)
    v.lost += len(set(ledger.stripe_events) - set(recorded))


def _sends(conn: psycopg.Connection[Any], fake_url: str, ledger: Ledger, v: Verdict) -> None:
    if not ledger.sends:
        return
    log = httpx.get(f"{fake_url}/_fake/log", timeout=30).json()
    at_meta: dict[str, int] = {}
    for row in log["counts"]:
        at_meta[row["marker"]] = at_meta.get(row["marker"], 0) + int(row["count"])
    rows = conn.execute(
        "SELECT id::text, status, error_code, error_title, error_details FROM messages WHERE id::text = ANY(%s)",
        (ledger.sends,),
    ).fetchall()
    by_id = {r[0]: r for r in rows}
    for message_id in ledger.sends:
        row = by_id.get(message_id)
        sent = at_meta.get(message_id, 0)
        if sent > 1:
            v.duplicates += sent - 1
        if row is None:
            v.lost += 1
            v.problems.append(f"send {message_id} accepted but has no row")
            continue
        status = row[1]
        if status in ("sent", "delivered", "read"):
            if sent == 0:
                v.lost += 1
                v.problems.append(f"send {message_id} is {status} but Meta never got it")
            else:
                v.stored += 1
        elif status in FINAL_WITH_REASON:
            if not (row[3] or row[4] or row[2]):
                v.problems.append(f"send {message_id} {status} without a reason")
            elif status == "failed" and sent:
                v.problems.append(f"send {message_id} failed although Meta accepted it")
            else:
                v.stored += 1
        else:
            v.lost += 1
