"""Compare a phase's ledger with the facts: rows in Postgres and the fake Graph API's send log.

Read as the database superuser over a plain connection (no row-level security, no unit of work of
the fleet's), so the check does not depend on the code it checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from devkit.load import Ledger

FINAL_WITH_REASON = ("failed", "ambiguous")
JOB_FINAL = ("completed", "completed_with_errors", "failed", "cancelled")
# The scheduler sweeps transient letters every 30 s and republishes a retry unconfirmed for 60 s;
# one overdue past that (with a margin for a loaded machine) is one the sweep failed to redrive.
SWEEP_OVERDUE_SECONDS = 45
RETRYING_OVERDUE_SECONDS = 100


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
    at_meta = _at_meta(fake_url) if ledger.sends or ledger.bulk_jobs else {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        _webhooks(conn, ledger, v)
        _media(conn, ledger, v)
        _stripe(conn, ledger, v)
        _sends(conn, at_meta, ledger, v)
        _broadcasts(conn, at_meta, ledger, v)
        v.stuck += int(
            conn.execute("SELECT count(*) FROM messages WHERE status IN ('queued', 'sending')").fetchone()[0]  # type: ignore[index]
        )
        _overdue_dead_letters(conn, v)
    return v


def _at_meta(fake_url: str) -> dict[str, int]:
    """Sends at the fake per biz_opaque_callback_data (the fleet puts its message id there)."""
    # The fake answers its control routes on the loop that serves the fleet's sends; right after a
    # frozen group resumes, a burst of sends and their status webhooks can keep it busy a while.
    for attempt in range(3):
        try:
            log = httpx.get(f"{fake_url}/_fake/log?sends=0", timeout=60).json()
            break
        except httpx.TimeoutException:
            if attempt == 2:
                raise
    at_meta: dict[str, int] = {}
    for row in log["counts"]:
        at_meta[row["marker"]] = at_meta.get(row["marker"], 0) + int(row["count"])
    return at_meta


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


def _sends(conn: psycopg.Connection[Any], at_meta: dict[str, int], ledger: Ledger, v: Verdict) -> None:
    if not ledger.sends:
        return
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


def _broadcasts(conn: psycopg.Connection[Any], at_meta: dict[str, int], ledger: Ledger, v: Verdict) -> None:
    """Every item of a broadcast that got a 202: sent exactly once at the fake, or failed or skipped
    with a reason; the job in a final state with nothing left pending."""
    if not ledger.bulk_jobs:
        return
    ids = [job_id for job_id, _ in ledger.bulk_jobs]
    jobs = {
        str(r[0]): str(r[1])
        for r in conn.execute("SELECT id, status FROM bulk_jobs WHERE id::text = ANY(%s)", (ids,)).fetchall()
    }
    items: dict[str, list[tuple[Any, ...]]] = {job_id: [] for job_id in ids}
    for row in conn.execute(
        "SELECT i.bulk_job_id::text, i.status, i.message_id::text, i.error_code, i.error_title, m.status "
        "FROM bulk_job_items i LEFT JOIN messages m ON m.id = i.message_id WHERE i.bulk_job_id::text = ANY(%s)",
        (ids,),
    ).fetchall():
        items[row[0]].append(row[1:])
    for job_id, total in ledger.bulk_jobs:
        v.accepted += total
        status = jobs.get(job_id)
        if status is None:
            v.lost += total
            v.problems.append(f"bulk job {job_id} accepted but has no row")
            continue
        if status not in JOB_FINAL:
            v.stuck += 1
            v.problems.append(f"bulk job {job_id} still {status}")
        if len(items[job_id]) != total:
            v.lost += max(0, total - len(items[job_id]))
            v.problems.append(f"bulk job {job_id}: {len(items[job_id])} items of {total}")
        for item_status, message_id, code, title, message_status in items[job_id]:
            _bulk_item(
                v, job_id, item_status, at_meta.get(message_id or "", 0), code or title, message_status
            )


def _bulk_item(
    v: Verdict, job_id: str, status: str, sent: int, reason: str | None, message: str | None
) -> None:
    if sent > 1:
        v.duplicates += sent - 1
    if status == "succeeded":
        if sent == 0 or message not in ("sent", "delivered", "read"):
            v.lost += 1
            v.problems.append(f"bulk job {job_id}: an item succeeded, its message {message}, {sent} at Meta")
        else:
            v.stored += 1
    elif status in ("failed", "skipped", "cancelled"):
        if not reason:
            v.problems.append(f"bulk job {job_id}: an item {status} without a reason")
        elif sent and reason != "ambiguous" and message != "ambiguous":
            v.problems.append(f"bulk job {job_id}: an item {status} ({reason}) although Meta accepted it")
        else:
            v.stored += 1
    else:
        v.stuck += 1


def _overdue_dead_letters(conn: psycopg.Connection[Any], v: Verdict) -> None:
    """A letter the redrive sweep should have taken by now: transient and due, or retried and never
    confirmed. Counted over every letter, not only this phase's."""
    overdue = int(
        conn.execute(
            "SELECT count(*) FROM dead_letters WHERE (status = 'dead' AND transient "
            "AND next_sweep_at < now() - make_interval(secs => %s)) "
            "OR (status = 'retrying' AND retried_at < now() - make_interval(secs => %s))",
            (SWEEP_OVERDUE_SECONDS, RETRYING_OVERDUE_SECONDS),
        ).fetchone()[0]  # type: ignore[index]
    )
    if overdue:
        v.problems.append(f"{overdue} dead letters the sweep should have redriven")
