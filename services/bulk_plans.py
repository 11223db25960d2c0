"""Planning the two kinds of bulk job that change rows instead of sending: `conversations.update`
over the tenant's conversations matching a filter, and `contacts.import` of rows checked one by one
(a bad row becomes a skipped item with its reason and row number, never fatal to the others)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID, uuid4

from db.repos import bulk as repo
from db.uow import UnitOfWork
from domain import bulk as rules
from services.bulk import (
    MAX_RECIPIENTS,
    BulkPorts,
    Idempotency,
    JobSummary,
    insert_planned,
    load_job,
    replay,
    summary_of,
)
from services.errors import Refused

MAX_ROWS: Final = MAX_RECIPIENTS
CHUNK: Final = 500
_WA_ID = re.compile(r"^\+?([0-9]{6,20})$")
_TAG = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_NAME: Final = 256


@dataclass(frozen=True, slots=True)
class ConversationsUpdatePlan:
    filter: repo.ConversationFilter
    updates: Mapping[str, Any]  # status, assigned_to, add_tags, remove_tags (only those given)


def plan_conversations_update(
    ports: BulkPorts, organization_id: UUID, plan: ConversationsUpdatePlan, idempotency: Idempotency | None
) -> JobSummary:
    """Plan an update of every conversation of the organization matching the filter (row-level
    security keeps other tenants' rows out of the match and of the update)."""
    for _ in range(2):
        with UnitOfWork(ports.engine, organization_id=organization_id, publisher=ports.jobs) as uow:
            prior = replay(uow.conn, idempotency)
            if prior is not None:
                return prior
            assignee = plan.updates.get("assigned_to")
            if assignee is not None and not repo.profile_exists(uow.conn, UUID(str(assignee))):
                raise Refused("assignee_unknown", details={"assigned_to": str(assignee)})
            ids = repo.conversations_matching(uow.conn, plan.filter, MAX_ROWS + 1)
            if not ids:
                raise Refused("no_recipients", "No conversation matches the filter.")
            if len(ids) > MAX_ROWS:
                raise Refused("too_many_recipients", details={"limit": MAX_ROWS})
            items = [repo.NewItem(seq, seq // CHUNK, str(cid), None, {}) for seq, cid in enumerate(ids)]
            job_id = uuid4()
            params = {"updates": dict(plan.updates)}
            if not insert_planned(uow.conn, uow, organization_id, job_id, rules.CONVERSATIONS_UPDATE, None,
                                  params, items, CHUNK, idempotency):  # fmt: skip
                continue
            uow.commit()
            return summary_of(load_job(ports.engine, organization_id, job_id))
    raise Refused("internal_error", "Could not settle the idempotency key; retry.")


def import_row_items(rows: Sequence[Mapping[str, Any]]) -> list[repo.NewItem]:
    """One item per row, in order (`seq` is the row number, from 1): valid rows pending, bad ones
    skipped with the reason."""
    items: list[repo.NewItem] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        number = index + 1
        params, problem = _check_row(row)
        wa_id = str(params.get("wa_id") or row.get("wa_id") or "")[:64]
        if problem is None and wa_id in seen:
            problem = ("duplicate_row", f"wa_id {wa_id} is already on row {seen[wa_id]}.")
        if problem is None:
            seen[wa_id] = number
        chunk = index // CHUNK
        if problem is None:
            items.append(repo.NewItem(number, chunk, wa_id, None, params))
        else:
            items.append(
                repo.NewItem(number, chunk, wa_id or f"row {number}", None, {}, rules.ITEM_SKIPPED, *problem)
            )
    return items


def _check_row(row: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, str] | None]:
    raw = row.get("wa_id")
    match = _WA_ID.fullmatch(str(raw).strip()) if isinstance(raw, str | int) else None
    if match is None:
        return {}, ("invalid_wa_id", "wa_id must be 6 to 20 digits (E.164, '+' optional).")
    params: dict[str, Any] = {"wa_id": match.group(1)}
    name = row.get("name")
    if name is not None and name != "":
        if not isinstance(name, str) or len(name) > MAX_NAME or "\x00" in name:
            return params, ("invalid_name", f"name must be text of at most {MAX_NAME} characters.")
        params["name"] = name.strip()
    tags = row.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in re.split(r"[;|]", tags) if t.strip()]
    if (
        not isinstance(tags, list)
        or len(tags) > 20
        or not all(isinstance(t, str) and _TAG.fullmatch(t) for t in tags)
    ):
        return params, ("invalid_tags", "tags: at most 20, each 1-64 of A-Z a-z 0-9 _ . : -")
    params["tags"] = sorted(set(tags))
    opt_in = row.get("opt_in")
    if isinstance(opt_in, str):
        opt_in = {
            "true": True,
            "yes": True,
            "1": True,
            "false": False,
            "no": False,
            "0": False,
            "": None,
        }.get(opt_in.strip().lower(), "bad")
    if opt_in is not None and not isinstance(opt_in, bool):
        return params, ("invalid_opt_in", "opt_in must be true or false.")
    params["opt_in"] = opt_in
    return params, None


def plan_contacts_import(
    ports: BulkPorts,
    organization_id: UUID,
    rows: Sequence[Mapping[str, Any]],
    idempotency: Idempotency | None,
) -> JobSummary:
    """Plan an import of contact rows (wa_id, name, tags, opt_in)."""
    if len(rows) > MAX_ROWS:
        raise Refused("too_many_rows", details={"limit": MAX_ROWS, "rows": len(rows)})
    if not rows:
        raise Refused("no_recipients", "The import has no rows.")
    items = import_row_items(rows)
    for _ in range(2):
        with UnitOfWork(ports.engine, organization_id=organization_id, publisher=ports.jobs) as uow:
            prior = replay(uow.conn, idempotency)
            if prior is not None:
                return prior
            job_id = uuid4()
            if not insert_planned(uow.conn, uow, organization_id, job_id, rules.CONTACTS_IMPORT, None, {},
                                  items, CHUNK, idempotency):  # fmt: skip
                continue
            uow.commit()
            return summary_of(load_job(ports.engine, organization_id, job_id))
    raise Refused("internal_error", "Could not settle the idempotency key; retry.")
