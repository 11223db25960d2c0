"""Message templates: synced from the Graph API, kept current by Meta's status webhooks.

The send API checks template sends against these rows, so they must follow Meta: a sync on demand
(`adsapp templates sync ORG_ID`), one on the scheduler, and `apply_template_status_update` for the
`message_template_status_update` webhook field in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final
from uuid import UUID

from sqlalchemy.engine import Connection, Engine

from db.repos import templates as repo
from db.uow import UnitOfWork
from workers.graph import GraphClient
from workers.outbound import metrics

log = logging.getLogger(__name__)

# Webhook events that are not statuses of their own: a flag is about quality (the template stays
# approved), a reinstatement ends a pause or disable.
_EVENT_STATUS: Final = {"FLAGGED": None, "REINSTATED": "APPROVED"}


def sync_organization(engine: Engine, graph: GraphClient, organization_id: UUID) -> int:
    """Fetch every template of each account the organization has (all pages) and store them."""
    with UnitOfWork(engine, organization_id=organization_id) as uow:
        accounts = repo.accounts(uow.conn)
    written = 0
    for waba_id, token in accounts:
        if not token:
            log.warning("no access token to sync templates", extra={"waba_id": waba_id})
            continue
        templates = graph.list_templates(waba_id, token)  # outside any transaction: it may page a while
        with UnitOfWork(engine, organization_id=organization_id) as uow:
            written += repo.upsert(uow.conn, organization_id, waba_id, templates)
            uow.commit()
    metrics.TEMPLATES_SYNCED.inc(written)
    return written


class TemplateSyncIncomplete(RuntimeError):
    """Some organizations' templates could not be fetched; the others were synced."""

    def __init__(self, failed: int, total: int, written: int) -> None:
        super().__init__(f"template sync failed for {failed} of {total} organizations ({written} written)")
        self.failed, self.total, self.written = failed, total, written


def sync_all(engine: Engine, graph: GraphClient, stopping: Callable[[], bool] = lambda: False) -> int:
    """Sync every organization with an account; one failing organization does not stop the rest,
    but the run then raises TemplateSyncIncomplete so its caller (the scheduler) tries again soon.
    Once `stopping()` says so, the organizations not reached yet are left for the next run."""
    with UnitOfWork(engine, system=True) as uow:
        organizations = sorted({org for org, _ in repo.all_accounts(uow.conn)})
    written = failed = 0
    for organization_id in organizations:
        if stopping():
            break
        try:
            written += sync_organization(engine, graph, organization_id)
        except Exception:
            failed += 1
            log.exception("template sync failed", extra={"organization_id": str(organization_id)})
    if failed:
        raise TemplateSyncIncomplete(failed, len(organizations), written)
    return written


def apply_template_status_update(conn: Connection, organization_id: UUID, value: Mapping[str, Any]) -> int:
    """Apply one `message_template_status_update` change value, in the caller's tenant-scoped unit
    of work. Returns the number of template rows changed (0 for an unknown template or a flag)."""
    event = str(value.get("event") or "").upper()
    if not event:
        return 0
    status = _EVENT_STATUS.get(event, event)
    if status is None:
        return 0
    template_id = value.get("message_template_id")
    name = value.get("message_template_name")
    language = value.get("message_template_language")
    return repo.set_status(
        conn,
        template_id=str(template_id) if template_id is not None else None,
        name=name if isinstance(name, str) else None,
        language=language if isinstance(language, str) else None,
        status=status,
    )
