"""Bulk jobs: planning, reading and controlling them. The HTTP API (`/api/v1/bulk-jobs`), the CLI
(`adsapp bulk ...`) and the console call these; the chunks run in `services.bulk_run`.

A job is planned once, in one transaction: every item written (variables frozen per recipient),
its chunks created, and the first few chunks' jobs put in the outbox. Refusals raise
`services.errors.Refused` with the API's code (nothing is written):

- `bulk_not_allowed`, `quota_exceeded` (402): the plan has no bulk sending, or the month's quota
  cannot hold every recipient of the job;
- `template_not_found`, `template_language_missing`, `template_not_approved`,
  `template_parameters_mismatch` (422): checked once for the job;
- `messaging_limit_exceeded` (422): the number's unique recipients in the last 24 hours plus this
  job's new ones exceed its messaging limit; the details carry the counts. Refused at planning,
  never held: a job either fits the window or is not started;
- `no_recipients`, `too_many_recipients` (422), `idempotency_conflict` (409).

Recipients that cannot be sent to are not fatal: they become `skipped` items with the reason
(`invalid_wa_id`, `duplicate_recipient`, `contact_not_found`, `contact_opted_out`,
`template_parameters_mismatch`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID, uuid4

import orjson
from sqlalchemy.engine import Connection, Engine, RowMapping

from db.repos import bulk as repo
from db.repos import templates
from db.repos.billing import check_send_allowed
from db.uow import UnitOfWork
from domain import bulk as rules
from domain.idempotency import RETENTION
from domain.ports import JobPublisher
from domain.templates import check_template_send
from services.errors import Conflict, NotFound, Refused
from services.sends import sending_number

MAX_RECIPIENTS: Final = 100_000
_WA_ID = re.compile(r"^[0-9]{6,20}$")
# Per-contact values a broadcast's text parameters may name; frozen into each item at planning.
_CONTACT_FIELDS = re.compile(r"\{\{\s*contact\.(name|wa_id)\s*\}\}")

PARAMETERS_MISMATCH = "template_parameters_mismatch"

# The audiences' filters, for callers of these use cases.
ContactFilter = repo.ContactFilter
ConversationFilter = repo.ConversationFilter


@dataclass(frozen=True, slots=True)
class BulkPorts:
    engine: Engine
    jobs: JobPublisher


@dataclass(frozen=True, slots=True)
class Recipient:
    """One recipient of a broadcast: a wa_id or a contact id, and optionally its own template
    components (the job's are used otherwise)."""

    wa_id: str | None = None
    contact_id: UUID | None = None
    components: Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class BroadcastPlan:
    template_name: str
    language: str
    components: Sequence[Mapping[str, Any]] = ()
    recipients: Sequence[Recipient] | None = None
    filter: repo.ContactFilter | None = None
    phone_number_id: str | None = None


@dataclass(frozen=True, slots=True)
class Idempotency:
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int
    pending: int
    delivered: int | None = None
    read: int | None = None


@dataclass(frozen=True, slots=True)
class JobSummary:
    id: UUID
    kind: str
    status: str
    phone_number_id: str | None
    counts: Counts
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rate_per_second: float | None = None
    eta_seconds: float | None = None
    error: Mapping[str, str] | None = None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class ItemView:
    seq: int
    recipient: str
    status: str
    message_id: UUID | None
    wamid: str | None
    error_code: str | None
    error_title: str | None
    settled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Page:
    rows: Sequence[Any]
    next_after: Any = None


@dataclass
class _Planned:
    items: list[repo.NewItem] = field(default_factory=list)
    sendable: list[str] = field(default_factory=list)


# --- planning -----------------------------------------------------------------------------------


def plan_broadcast(
    ports: BulkPorts, organization_id: UUID, plan: BroadcastPlan, idempotency: Idempotency | None
) -> JobSummary:
    """Check and plan a template broadcast; answers the job (or, for a replayed idempotency key,
    the job that key made). Raises `Refused` when the job cannot start (nothing is written)."""
    for _ in range(2):
        with UnitOfWork(ports.engine, organization_id=organization_id, publisher=ports.jobs) as uow:
            conn = uow.conn
            prior = replay(conn, idempotency)
            if prior is not None:
                return prior
            number = sending_number(conn, plan.phone_number_id)
            facts = repo.number_facts(conn, number)
            known = templates.named(conn, plan.template_name)
            _check_template_once(plan, known)
            planned = _plan_items(conn, plan, known, rules.chunk_size_for(facts.mps))
            _check_billing(conn, organization_id, len(planned.sendable))
            _check_messaging_limit(conn, facts, planned.sendable)
            job_id = uuid4()
            chunk_size = rules.chunk_size_for(facts.mps)
            params = {
                "template": {"name": plan.template_name, "language": {"code": plan.language}},
                "filter": _filter_params(plan.filter),
            }
            kind = rules.BROADCAST
            if not insert_planned(
                conn,
                uow,
                organization_id,
                job_id,
                kind,
                number,
                params,
                planned.items,
                chunk_size,
                idempotency,
            ):
                continue
            uow.commit()
            return summary_of(load_job(ports.engine, organization_id, job_id))
    raise Refused("internal_error", "Could not settle the idempotency key; retry.")


def replay(conn: Connection, idempotency: Idempotency | None) -> JobSummary | None:
    if idempotency is None:
        return None
    prior = repo.find_job_by_key(conn, idempotency.key)
    if prior is None:
        return None
    if datetime.now(UTC) - prior.created_at >= RETENTION:
        repo.release_idempotency_key(conn, prior.id)
        return None
    if prior.fingerprint != idempotency.fingerprint:
        raise Conflict("idempotency_conflict", details={"bulk_job_id": str(prior.id)})
    row = repo.get_job(conn, prior.id)
    assert row is not None
    summary = summary_of(row)
    return JobSummary(**{**_fields(summary), "replayed": True})


def _fields(summary: JobSummary) -> dict[str, Any]:
    return {name: getattr(summary, name) for name in JobSummary.__dataclass_fields__}


def _check_template_once(plan: BroadcastPlan, known: Sequence[Any]) -> None:
    problem = check_template_send(plan.template_name, plan.language, known, plan.components)
    if problem is None:
        return
    overridden = plan.recipients is not None and all(r.components is not None for r in plan.recipients)
    if problem.code == PARAMETERS_MISMATCH and overridden:
        return  # every recipient brings its own components: each is checked on its own
    raise Refused(problem.code, problem.message, dict(problem.details))


def _plan_items(conn: Connection, plan: BroadcastPlan, known: Sequence[Any], chunk_size: int) -> _Planned:
    planned = _Planned()
    if plan.recipients is not None:
        targets = _resolve_list(conn, plan.recipients)
    else:
        assert plan.filter is not None
        matching = repo.contacts_matching(conn, plan.filter, MAX_RECIPIENTS + 1)
        targets = [(c.wa_id, c, None, None) for c in matching]
    if not targets:
        raise Refused("no_recipients", "No recipient matches: nothing to send.")
    if len(targets) > MAX_RECIPIENTS:
        raise Refused("too_many_recipients", details={"limit": MAX_RECIPIENTS})
    seen: set[str] = set()
    # The job's own components are checked once; filling in contact fields keeps their counts.
    shared = check_template_send(plan.template_name, plan.language, known, plan.components)
    filler = _Filler.of(plan.components)
    # Items without variables of their own share one params mapping (written once by the COPY).
    shared_params: Mapping[str, Any] = {"components": [dict(c) for c in plan.components]}
    items, sendable = planned.items, planned.sendable
    for seq, (wa_id, contact, components, reason) in enumerate(targets):
        params: Mapping[str, Any] | repo.EncodedJson
        if components is None:
            params = shared_params if filler is None else filler.params(contact, wa_id)
            problem = shared
        else:
            frozen = _personalised(components, contact, wa_id)
            params = {"components": frozen}
            problem = check_template_send(plan.template_name, plan.language, known, frozen)
        skip = reason or _skip_reason(wa_id, contact, seen)
        if skip is None and problem is not None:
            skip = (problem.code, problem.message)
        contact_id = contact.id if contact else None
        if skip is None:
            seen.add(wa_id)
            sendable.append(wa_id)
            items.append(repo.NewItem(seq, seq // chunk_size, wa_id, contact_id, params))
        else:
            items.append(
                repo.NewItem(seq, seq // chunk_size, wa_id, contact_id, params, rules.ITEM_SKIPPED, *skip)
            )
    return planned


_Target = tuple[str, "repo.ContactRow | None", "Sequence[Mapping[str, Any]] | None", "tuple[str, str] | None"]


def _resolve_list(conn: Connection, recipients: Sequence[Recipient]) -> list[_Target]:
    wa_ids = [r.wa_id.removeprefix("+") for r in recipients if r.wa_id is not None]
    ids = [r.contact_id for r in recipients if r.contact_id is not None]
    by_wa_id = repo.contacts_by_wa_id(conn, wa_ids) if wa_ids else {}
    by_id = repo.contacts_by_id(conn, ids) if ids else {}
    targets: list[_Target] = []
    for r in recipients:
        if r.contact_id is not None:
            contact = by_id.get(r.contact_id)
            if contact is None:
                targets.append(
                    (str(r.contact_id), None, r.components, ("contact_not_found", "No such contact."))
                )
            else:
                targets.append((contact.wa_id, contact, r.components, None))
        else:
            wa_id = (r.wa_id or "").removeprefix("+")
            targets.append((wa_id, by_wa_id.get(wa_id), r.components, None))
    return targets


def _skip_reason(wa_id: str, contact: repo.ContactRow | None, seen: set[str]) -> tuple[str, str] | None:
    if not _WA_ID.fullmatch(wa_id):
        return ("invalid_wa_id", "A WhatsApp id is 6 to 20 digits (E.164 without '+').")
    if wa_id in seen:
        return ("duplicate_recipient", "This recipient appears earlier in the job.")
    if contact is not None and contact.opted_out:
        return ("contact_opted_out", "The customer opted out of messages from this business.")
    return None


_SLOT = re.compile(r'"\\u0000(\d+)\\u0000"')


class _Filler:
    """The job's components encoded once as JSON with a slot for each text naming contact
    fields: a recipient's params are the slots filled in (`_personalised`'s result, encoded),
    with no walk of the structure per recipient. Each slot's text is split once around its
    fields and its literal pieces JSON-escaped then (JSON escapes character by character, so the
    escaped pieces and values joined are the escaped text): per recipient only its values are
    escaped and the pieces joined."""

    def __init__(self, components: Sequence[Mapping[str, Any]], texts: list[str], parts: list[str]) -> None:
        self._components = components
        slots = [(int(parts[k]), parts[k + 1]) for k in range(1, len(parts), 2)]
        # A text that itself looks like a slot marker (NUL characters) is filled the slow way.
        self._walk = [index for index, _ in slots] != list(range(len(texts)))
        self._pieces: list[str] = [parts[0]]
        self._fields: list[tuple[int, str]] = []  # (position in pieces, contact field)
        for index, after in slots:
            split = _CONTACT_FIELDS.split(texts[index])  # literal, field, literal, ..., literal
            self._pieces.append('"' + _escaped(split[0]))
            for k in range(1, len(split), 2):
                self._fields.append((len(self._pieces), split[k]))
                self._pieces.append("")
                self._pieces.append(_escaped(split[k + 1]))
            self._pieces.append('"' + after)
        self._names = any(name == "name" for _, name in self._fields)

    @classmethod
    def of(cls, components: Sequence[Mapping[str, Any]]) -> _Filler | None:
        """None when no value names a contact field (most broadcasts: nothing to fill in)."""
        texts: list[str] = []

        def mark(value: Any) -> Any:
            if isinstance(value, str) and _CONTACT_FIELDS.search(value):
                texts.append(value)
                return f"\x00{len(texts) - 1}\x00"
            if isinstance(value, Mapping):
                return {k: mark(v) for k, v in value.items()}
            if isinstance(value, list):
                return [mark(v) for v in value]
            return value

        marked = {"components": [mark(dict(c)) for c in components]}
        if not texts:
            return None
        return cls(components, texts, _SLOT.split(orjson.dumps(marked).decode()))

    def params(self, contact: repo.ContactRow | None, wa_id: str) -> Mapping[str, Any] | repo.EncodedJson:
        if self._walk:
            return {"components": _personalised(self._components, contact, wa_id)}
        values = {"wa_id": wa_id if wa_id.isdigit() else _escaped(wa_id)}
        if self._names:
            values["name"] = _escaped((contact.profile_name if contact else None) or "")
        out = self._pieces.copy()
        for position, name in self._fields:
            out[position] = values[name]
        return repo.EncodedJson("".join(out))


def _escaped(text: str) -> str:
    """`text` as inside a JSON string (orjson's escapes, without the quotes)."""
    return orjson.dumps(text).decode()[1:-1]


def _personalised(
    components: Sequence[Mapping[str, Any]], contact: repo.ContactRow | None, wa_id: str
) -> list[dict[str, Any]]:
    values = {"name": (contact.profile_name if contact else None) or "", "wa_id": wa_id}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return _CONTACT_FIELDS.sub(lambda m: values[m.group(1)], value)
        if isinstance(value, Mapping):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return [fill(dict(c)) for c in components]


def _check_billing(conn: Connection, organization_id: UUID, sendable: int) -> None:
    decision = check_send_allowed(conn, organization_id, sendable, bulk=True)
    if not decision.allowed:
        raise Refused(
            str(decision.code), decision.message, {"billing": str(decision.code), "messages": sendable}
        )


def _check_messaging_limit(conn: Connection, facts: repo.NumberFacts, sendable: Sequence[str]) -> None:
    if facts.messaging_limit is None or not sendable:
        return
    used, overlap = repo.recent_recipients(conn, facts.phone_number_id, sendable)
    new = len(sendable) - overlap
    if used + new > facts.messaging_limit:
        raise Refused(
            "messaging_limit_exceeded",
            f"The number may reach {facts.messaging_limit} unique recipients per 24 hours; "
            f"{used} were reached and this job adds {new}.",
            {
                "phone_number_id": facts.phone_number_id,
                "limit": facts.messaging_limit,
                "used": used,
                "requested": new,
                "over": used + new - facts.messaging_limit,
            },
        )


def _filter_params(where: repo.ContactFilter | None) -> dict[str, Any] | None:
    if where is None:
        return None
    return {
        "tags": list(where.tags),
        "any_tags": list(where.any_tags),
        **{
            name: value.isoformat()
            for name in ("last_inbound_before", "last_inbound_after", "created_before", "created_after")
            if (value := getattr(where, name)) is not None
        },
    }


def insert_planned(
    conn: Connection,
    uow: UnitOfWork,
    organization_id: UUID,
    job_id: UUID,
    kind: str,
    number: str | None,
    params: Mapping[str, Any],
    items: Sequence[repo.NewItem],
    chunk_size: int,
    idempotency: Idempotency | None,
) -> bool:
    chunks = max(1, rules.chunks_of(len(items), chunk_size))
    inserted = repo.insert_job(
        conn,
        repo.NewJob(
            id=job_id,
            organization_id=organization_id,
            kind=kind,
            phone_number_id=number,
            params=params,
            total=len(items),
            chunk_size=chunk_size,
            chunks=chunks,
            idempotency_key=idempotency.key if idempotency else None,
            fingerprint=idempotency.fingerprint if idempotency else None,
        ),
    )
    if not inserted:
        return False
    repo.insert_items(conn, organization_id, job_id, items)
    repo.insert_chunks(conn, organization_id, job_id, chunks)
    release(uow, organization_id, job_id, window_of(conn, kind, number, chunk_size))
    return True


def window_of(conn: Connection, kind: str, number: str | None, chunk_size: int) -> int:
    """The chunks of a job released at once: a broadcast's from the first release on keep about
    `rules.RELEASE_SECONDS` of its number's sends released (three chunks at the start left a
    1,000-mps number idle until the first of them settled)."""
    if kind != rules.BROADCAST:
        return rules.RELEASE_WINDOW
    return rules.release_window(chunk_size, number_mps(conn, number))


def number_mps(conn: Connection, number: str | None) -> int:
    return repo.number_facts(conn, number).mps if number else 80


def release(
    uow: UnitOfWork, organization_id: UUID, job_id: UUID, window: int = rules.RELEASE_WINDOW
) -> list[int]:
    """Release the job's next chunks (up to `window` released and unsettled) and enqueue them
    through the outbox."""
    chunks = repo.release(uow.conn, job_id, window)
    for chunk in chunks:
        uow.enqueue(rules.run_chunk_job(str(organization_id), str(job_id), chunk))
    return chunks


# --- reading ------------------------------------------------------------------------------------


def load_job(engine: Engine, organization_id: UUID, job_id: UUID) -> RowMapping:
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        row = repo.get_job(uow.conn, job_id)
    if row is None:
        raise NotFound("No bulk job with this id.")
    return row


def summary_of(row: RowMapping, progress: repo.Progress | None = None) -> JobSummary:
    late = progress.failed_after_sent if progress else 0
    succeeded, failed = int(row["succeeded"]) - late, int(row["failed"]) + late
    settled = succeeded + failed + int(row["skipped"]) + int(row["cancelled"])
    pending = max(0, int(row["total"]) - settled)
    rate = eta = None
    if progress is not None and row["status"] not in rules.FINISHED:
        rate = progress.settled_last_minute / 60.0
        eta = pending / rate if rate > 0 else None
    error = {"code": row["error_code"], "message": row["error_message"] or ""} if row["error_code"] else None
    return JobSummary(
        id=row["id"],
        kind=row["kind"],
        status=row["status"],
        phone_number_id=row["phone_number_id"],
        counts=Counts(
            total=int(row["total"]),
            succeeded=succeeded,
            failed=failed,
            skipped=int(row["skipped"]),
            cancelled=int(row["cancelled"]),
            pending=pending,
            delivered=progress.delivered if progress and row["kind"] == rules.BROADCAST else None,
            read=progress.read if progress and row["kind"] == rules.BROADCAST else None,
        ),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        rate_per_second=rate,
        eta_seconds=eta,
        error=error,
    )


def get_job(engine: Engine, organization_id: UUID, job_id: UUID) -> JobSummary:
    """A job with its counts (delivered and read as status webhooks arrive), rate over the last
    minute and ETA. Raises `NotFound` for a job of another organization or none."""
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        row = repo.get_job(uow.conn, job_id)
        if row is None:
            raise NotFound("No bulk job with this id.")
        return summary_of(row, repo.progress(uow.conn, job_id))


def list_jobs(
    engine: Engine,
    organization_id: UUID | None,
    *,
    after: tuple[datetime, UUID] | None,
    limit: int,
    kind: str | None = None,
    status: str | None = None,
) -> Page:
    """Newest first. `after` is the (created_at, id) of the last job of the previous page;
    `Page.next_after` is the one for the next page (None on the last). `organization_id` None
    lists every organization's jobs (operators)."""
    with UnitOfWork(engine, organization_id=organization_id, system=organization_id is None) as uow:
        rows = repo.list_jobs(uow.conn, after=after, limit=limit + 1, kind=kind, status=status)
    page = [summary_of(r) for r in rows[:limit]]
    next_after = (rows[limit - 1]["created_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return Page(page, next_after)


def list_items(
    engine: Engine,
    organization_id: UUID,
    job_id: UUID,
    *,
    after_seq: int | None,
    limit: int,
    status: str | None = None,
    error_code: str | None = None,
) -> Page:
    """A job's items in plan order; an item that succeeded and whose message Meta failed later
    shows as failed with the message's code. `Page.next_after` is the last seq of the page."""
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        if repo.get_job(uow.conn, job_id) is None:
            raise NotFound("No bulk job with this id.")
        rows = repo.list_items(
            uow.conn, job_id, after_seq=after_seq, limit=limit + 1,
            where=repo.ItemFilter(status=status, error_code=error_code),
        )  # fmt: skip
    page = [_item_of(r) for r in rows[:limit]]
    return Page(page, rows[limit - 1]["seq"] if len(rows) > limit else None)


MESSAGING_LIMITS: Final = (250, 2_000, 10_000, 100_000)


def set_messaging_limit(engine: Engine, phone_number_id: str, limit: int | None) -> None:
    """Record Meta's messaging limit of a number (unique recipients per rolling 24 hours; None:
    unlimited), which planning checks broadcasts against. Raises `NotFound` for an unknown number."""
    if limit is not None and limit not in MESSAGING_LIMITS:
        raise Refused("validation_failed", f"A messaging limit is one of {MESSAGING_LIMITS} or unlimited.")
    with UnitOfWork(engine, system=True) as uow:
        if not repo.set_messaging_limit(uow.conn, phone_number_id, limit):
            raise NotFound("No WhatsApp number with this phone_number_id.")
        uow.commit()


def organization_of(engine: Engine, job_id: UUID) -> UUID:
    """The organization of a job, for operators who name only the job. Raises `NotFound`."""
    with UnitOfWork(engine, system=True) as uow:
        org = repo.organization_of(uow.conn, job_id)
    if org is None:
        raise NotFound("No bulk job with this id.")
    return org


def _item_of(row: RowMapping) -> ItemView:
    status = row["status"]
    if status == rules.ITEM_SUCCEEDED and row["message_status"] == "failed":
        status = rules.ITEM_FAILED
    return ItemView(
        seq=int(row["seq"]),
        recipient=row["recipient"],
        status=status,
        message_id=row["message_id"],
        wamid=row["wamid"],
        error_code=row["error_code"],
        error_title=row["error_title"],
        settled_at=row["settled_at"],
    )


# --- control ------------------------------------------------------------------------------------


def pause(ports: BulkPorts, organization_id: UUID, job_id: UUID) -> JobSummary:
    """Stop releasing chunks: those already submitted settle, the rest wait for `resume`.
    Raises `Conflict` (`bulk_job_not_pausable`) unless the job is pending or running."""
    with UnitOfWork(ports.engine, organization_id=organization_id) as uow:
        row = _locked(uow.conn, job_id)
        if not rules.can_pause(row["status"]):
            raise Conflict("bulk_job_not_pausable", details={"status": row["status"]})
        repo.set_status(uow.conn, job_id, rules.PAUSED)
        uow.commit()
    return get_job(ports.engine, organization_id, job_id)


def resume(ports: BulkPorts, organization_id: UUID, job_id: UUID, scope: str = "pending") -> JobSummary:
    """`pending`: carry on with a paused job. `failed`: re-plan the failed items whose error is
    not permanent for their recipient (undeliverable, opted out, ambiguous are not resent) and
    run them. Raises `Conflict` (`bulk_job_not_resumable`) when the job's state does not allow it."""
    with UnitOfWork(ports.engine, organization_id=organization_id, publisher=ports.jobs) as uow:
        row = _locked(uow.conn, job_id)
        if not rules.can_resume(row["status"], scope):
            raise Conflict("bulk_job_not_resumable", details={"status": row["status"], "scope": scope})
        if scope == "failed":
            repo.record_late_failures(uow.conn, job_id)
            if not repo.reopen_failed(uow.conn, job_id, rules.PERMANENT_FOR_RECIPIENT):
                raise Conflict("bulk_job_not_resumable", "No failed item may be sent again.")
        status = rules.RUNNING if row["started_at"] is not None else rules.PENDING
        repo.set_status(uow.conn, job_id, status, finished_at=None)
        window = window_of(uow.conn, row["kind"], row["phone_number_id"], int(row["chunk_size"]))
        release(uow, organization_id, job_id, window)
        uow.commit()
    return get_job(ports.engine, organization_id, job_id)


def cancel(ports: BulkPorts, organization_id: UUID, job_id: UUID) -> JobSummary:
    """Items not started become `cancelled` now; chunks already submitted settle, then the job
    is `cancelled`. Raises `Conflict` (`bulk_job_finished`) for a finished job."""
    with UnitOfWork(ports.engine, organization_id=organization_id) as uow:
        row = _locked(uow.conn, job_id)
        if not rules.can_cancel(row["status"]):
            raise Conflict("bulk_job_finished", details={"status": row["status"]})
        counts = repo.cancel_pending(uow.conn, job_id)
        repo.add_counts(uow.conn, job_id, counts)
        if repo.unsettled_chunks(uow.conn, job_id) == 0:
            repo.set_status(uow.conn, job_id, rules.CANCELLED, finished_at=datetime.now(UTC))
        else:
            repo.set_status(uow.conn, job_id, rules.CANCELLING)
        uow.commit()
    return get_job(ports.engine, organization_id, job_id)


def _locked(conn: Connection, job_id: UUID) -> RowMapping:
    row = repo.get_job(conn, job_id, lock=True)
    if row is None:
        raise NotFound("No bulk job with this id.")
    return row
