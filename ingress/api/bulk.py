"""`/bulk-jobs`: start a bulk job (202), list them, read one with its counts, page or export its
items, pause, resume and cancel. The use cases are `services.bulk` and `services.bulk_plans`; this
module maps requests to them and their answers to the envelope."""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any, Final
from uuid import UUID

from ingress.api import audit_trail
from ingress.api.accept import refusals_as_api_errors
from ingress.api.bulk_models import (
    BroadcastJob,
    BulkCounts,
    BulkError,
    BulkItemView,
    BulkJobPath,
    BulkJobView,
    ContactsImportJob,
    ConversationsUpdateJob,
    CreateBulkJob,
    ItemError,
    Links,
    ListBulkJobsQuery,
    ListItemsQuery,
    ResumeRequest,
)
from ingress.api.csv_rows import rows_from
from ingress.api.errors import AUTH_ERRORS, BODY_ERRORS, SENDER_ERRORS, ApiError, ErrorCode
from ingress.api.idempotency import fingerprint, parse_key
from ingress.api.operations import Call, HeaderParam, Operation, RawBody, Reply, accepted
from ingress.api.pagination import decode_cursor, encode_cursor, time_and_id
from services import bulk, bulk_plans
from services.bulk import BulkPorts, ItemView, JobSummary

MAX_BODY_BYTES: Final = 20 * 1024 * 1024
_EXPORT_PAGE: Final = 10_000


def _ports(call: Call) -> BulkPorts:
    return BulkPorts(call.resources.engine, call.resources.jobs)


def _link(call: Call, job_id: UUID) -> str:
    return f"{call.resources.options.base_path}/bulk-jobs/{job_id}"


def _view(call: Call, job: JobSummary) -> BulkJobView:
    c = job.counts
    return BulkJobView(
        id=job.id,
        kind=job.kind,
        status=job.status,
        total=c.total,
        phone_number_id=job.phone_number_id,
        counts=BulkCounts(
            total=c.total,
            succeeded=c.succeeded,
            failed=c.failed,
            skipped=c.skipped,
            cancelled=c.cancelled,
            pending=c.pending,
            delivered=c.delivered,
            read=c.read,
        ),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        rate_per_second=job.rate_per_second,
        eta_seconds=job.eta_seconds,
        error=BulkError(**job.error) if job.error else None,
        links=Links(self=_link(call, job.id), items=_link(call, job.id) + "/items"),
    )


# --- create -------------------------------------------------------------------------------------


def create_bulk_job(call: Call) -> Reply:
    key = parse_key(call.headers.get("idempotency-key"))
    body = call.body
    org = call.principal.organization_id
    with refusals_as_api_errors():
        if isinstance(body, RawBody):
            if call.headers.get("x-bulk-kind", "contacts.import") != "contacts.import":
                raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Only contacts.import takes a CSV body.")
            idem = _idempotency(key, "csv:" + hashlib.sha256(body.data).hexdigest())
            job = bulk_plans.plan_contacts_import(
                _ports(call), org, rows_from(body.content_type, body.data), idem
            )
        else:
            request = body.root
            idem = _idempotency(key, fingerprint("create_bulk_job", body))
            job = _plan(call, org, request, idem)
    if not job.replayed:
        _audit(call, "create", job, kind=job.kind, total=job.counts.total)
    return accepted(_view(call, job), _link(call, job.id), replayed=job.replayed)


def _idempotency(key: str | None, fp: str) -> bulk.Idempotency | None:
    return bulk.Idempotency(key, fp) if key is not None else None


def _plan(
    call: Call,
    org: UUID,
    request: BroadcastJob | ConversationsUpdateJob | ContactsImportJob,
    idem: bulk.Idempotency | None,
) -> JobSummary:
    if isinstance(request, BroadcastJob):
        return bulk.plan_broadcast(_ports(call), org, _broadcast_plan(request), idem)
    if isinstance(request, ConversationsUpdateJob):
        return bulk_plans.plan_conversations_update(_ports(call), org, _update_plan(request), idem)
    if len(request.rows) > bulk_plans.MAX_ROWS:
        raise ApiError(ErrorCode.TOO_MANY_ROWS, details={"limit": bulk_plans.MAX_ROWS})
    return bulk_plans.plan_contacts_import(_ports(call), org, request.rows, idem)


def _broadcast_plan(request: BroadcastJob) -> bulk.BroadcastPlan:
    def dump(components: Any) -> list[dict[str, Any]]:
        return [c.model_dump(mode="json", exclude_none=True) for c in components]

    where = None
    if request.filter is not None:
        f = request.filter
        where = bulk.ContactFilter(
            tags=f.tags, any_tags=f.any_tags, last_inbound_before=f.last_inbound_before,
            last_inbound_after=f.last_inbound_after, created_before=f.created_before,
            created_after=f.created_after,
        )  # fmt: skip
    recipients = None
    if request.recipients is not None:
        recipients = [
            bulk.Recipient(r.wa_id, r.contact_id, dump(r.components) if r.components is not None else None)
            for r in request.recipients
        ]
    return bulk.BroadcastPlan(
        template_name=request.template.name,
        language=request.template.language.code,
        components=dump(request.template.components),
        recipients=recipients,
        filter=where,
        phone_number_id=request.phone_number_id,
    )


def _update_plan(request: ConversationsUpdateJob) -> bulk_plans.ConversationsUpdatePlan:
    f = request.filters
    where = bulk.ConversationFilter(
        status=f.status,
        assignee=f.assignee if isinstance(f.assignee, UUID) else None,
        unassigned=f.assignee == "none",
        tag=f.tag,
        last_message_before=f.last_message_before,
        last_message_after=f.last_message_after,
    )
    updates = request.updates.model_dump(mode="json", exclude_unset=True)
    return bulk_plans.ConversationsUpdatePlan(where, updates)


# --- read ---------------------------------------------------------------------------------------


def get_bulk_job(call: Call) -> Reply:
    path: BulkJobPath = call.path
    with refusals_as_api_errors():
        job = bulk.get_job(call.resources.engine, call.principal.organization_id, path.job_id)
    return Reply(_view(call, job))


def list_bulk_jobs(call: Call) -> Reply:
    query: ListBulkJobsQuery = call.query
    after = time_and_id(query.cursor) if query.cursor else None
    page = bulk.list_jobs(
        call.resources.engine, call.principal.organization_id, after=after, limit=query.limit,
        kind=query.kind, status=query.status,
    )  # fmt: skip
    cursor = encode_cursor(*page.next_after) if page.next_after else None
    return Reply([_view(call, j) for j in page.rows], meta={"next_cursor": cursor})


def _item_view(item: ItemView) -> BulkItemView:
    return BulkItemView(
        seq=item.seq,
        recipient=item.recipient,
        status=item.status,
        message_id=item.message_id,
        wamid=item.wamid,
        error=ItemError(code=item.error_code, title=item.error_title)
        if item.error_code or item.error_title
        else None,
        settled_at=item.settled_at,
    )


def list_bulk_job_items(call: Call) -> Reply:
    path: BulkJobPath = call.path
    query: ListItemsQuery = call.query
    org = call.principal.organization_id
    if query.format == "csv":
        disposition = f'attachment; filename="bulk-job-{path.job_id}.csv"'
        return Reply(
            [],
            content=_export(call, path.job_id, query),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    after = _seq_cursor(query.cursor) if query.cursor else None
    with refusals_as_api_errors():
        page = bulk.list_items(
            call.resources.engine, org, path.job_id, after_seq=after, limit=query.limit,
            status=query.status, error_code=query.error_code,
        )  # fmt: skip
    cursor = encode_cursor(page.next_after) if page.next_after is not None else None
    return Reply([_item_view(i) for i in page.rows], meta={"next_cursor": cursor})


def _seq_cursor(cursor: str) -> int:
    (value,) = decode_cursor(cursor, 1)
    if not value.isdigit():
        raise ApiError(ErrorCode.INVALID_CURSOR)
    return int(value)


def _export(call: Call, job_id: UUID, query: ListItemsQuery) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["seq", "recipient", "status", "message_id", "wamid", "error_code", "error_title", "settled_at"]
    )
    after: int | None = None
    with refusals_as_api_errors():
        while True:
            page = bulk.list_items(
                call.resources.engine, call.principal.organization_id, job_id, after_seq=after,
                limit=_EXPORT_PAGE, status=query.status, error_code=query.error_code,
            )  # fmt: skip
            for i in page.rows:
                writer.writerow([
                    i.seq, i.recipient, i.status, i.message_id or "", i.wamid or "", i.error_code or "",
                    i.error_title or "", i.settled_at.isoformat() if i.settled_at else "",
                ])  # fmt: skip
            if page.next_after is None:
                break
            after = page.next_after
    return out.getvalue().encode()


# --- control ------------------------------------------------------------------------------------


def pause_bulk_job(call: Call) -> Reply:
    path: BulkJobPath = call.path
    with refusals_as_api_errors():
        job = bulk.pause(_ports(call), call.principal.organization_id, path.job_id)
    _audit(call, "pause", job)
    return Reply(_view(call, job))


def resume_bulk_job(call: Call) -> Reply:
    path: BulkJobPath = call.path
    body: ResumeRequest = call.body
    with refusals_as_api_errors():
        job = bulk.resume(_ports(call), call.principal.organization_id, path.job_id, body.scope)
    _audit(call, "resume", job, scope=body.scope)
    return Reply(_view(call, job))


def cancel_bulk_job(call: Call) -> Reply:
    path: BulkJobPath = call.path
    with refusals_as_api_errors():
        job = bulk.cancel(_ports(call), call.principal.organization_id, path.job_id)
    _audit(call, "cancel", job)
    return Reply(_view(call, job))


def _audit(call: Call, action: str, job: JobSummary, **details: object) -> None:
    audit_trail.record(
        call, f"bulk_job.{action}", aggregate_type="bulk_job", aggregate_id=job.id,
        organization_id=call.principal.organization_id, details={"status": job.status, **details},
    )  # fmt: skip


_PATH_ERRORS = (*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND)

OPERATIONS = (
    Operation(
        operation_id="createBulkJob",
        method="POST",
        path="/bulk-jobs",
        summary="Start a bulk job (broadcast, conversations.update, contacts.import)",
        description=(
            "Plans the job in one transaction and answers 202 with it; chunks then run on the bulk "
            "workers. A broadcast's template is checked once (422 naming the problem), the plan's "
            "bulk sending and monthly quota against every recipient, and the number's messaging "
            "limit (refused with the counts, never held). Recipients that cannot be sent to become "
            "skipped items with the reason. `contacts.import` also takes `text/csv` or "
            "`multipart/form-data` (part `file`); up to 100,000 rows / 20 MB (413 beyond). With "
            "`Idempotency-Key`, the same key and body answer the same job; another body is a 409."
        ),
        scope="bulk:write",
        handler=create_bulk_job,
        response=BulkJobView,
        status=202,
        body=CreateBulkJob,
        headers=(HeaderParam("Idempotency-Key", "Same key and body within 24 hours: the same job, once."),),
        max_body_bytes=MAX_BODY_BYTES,
        raw_content_types=("text/csv", "multipart/form-data"),
        errors=(
            *AUTH_ERRORS,
            *BODY_ERRORS,
            ErrorCode.VALIDATION_FAILED,
            ErrorCode.IDEMPOTENCY_KEY_INVALID,
            ErrorCode.IDEMPOTENCY_CONFLICT,
            *SENDER_ERRORS,
            ErrorCode.MESSAGING_LIMIT_EXCEEDED,
            ErrorCode.NO_RECIPIENTS,
            ErrorCode.TOO_MANY_RECIPIENTS,
            ErrorCode.TOO_MANY_ROWS,
            ErrorCode.INVALID_CSV,
            ErrorCode.ASSIGNEE_UNKNOWN,
            "bulk_not_allowed",
            "quota_exceeded",
            "subscription_canceled",
        ),
    ),
    Operation(
        operation_id="listBulkJobs",
        method="GET",
        path="/bulk-jobs",
        summary="Bulk jobs, newest first (cursor pagination, filter by kind and status)",
        scope="bulk:read",
        handler=list_bulk_jobs,
        response=list[BulkJobView],
        query=ListBulkJobsQuery,
        errors=(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.INVALID_CURSOR),
    ),
    Operation(
        operation_id="getBulkJob",
        method="GET",
        path="/bulk-jobs/{job_id}",
        summary="A bulk job: status, counts (delivered and read too), rate and ETA",
        scope="bulk:read",
        handler=get_bulk_job,
        response=BulkJobView,
        path_params=BulkJobPath,
        errors=_PATH_ERRORS,
    ),
    Operation(
        operation_id="listBulkJobItems",
        method="GET",
        path="/bulk-jobs/{job_id}/items",
        summary="A job's items: recipient, status, message id, wamid, error (`format=csv` exports all)",
        scope="bulk:read",
        handler=list_bulk_job_items,
        response=list[BulkItemView],
        path_params=BulkJobPath,
        query=ListItemsQuery,
        errors=(*_PATH_ERRORS, ErrorCode.INVALID_CURSOR),
    ),
    Operation(
        operation_id="pauseBulkJob",
        method="POST",
        path="/bulk-jobs/{job_id}/pause",
        summary="Pause: submitted chunks settle, no new chunk starts",
        scope="bulk:write",
        handler=pause_bulk_job,
        response=BulkJobView,
        path_params=BulkJobPath,
        errors=(*_PATH_ERRORS, ErrorCode.BULK_JOB_NOT_PAUSABLE),
    ),
    Operation(
        operation_id="resumeBulkJob",
        method="POST",
        path="/bulk-jobs/{job_id}/resume",
        summary="Resume a paused job (`pending`), or re-send its failed items (`failed`)",
        description=(
            "`failed` re-plans only the failed items whose error is not permanent for the recipient "
            "(131026 undeliverable, 131050, 131021 and ambiguous outcomes are not resent)."
        ),
        scope="bulk:write",
        handler=resume_bulk_job,
        response=BulkJobView,
        path_params=BulkJobPath,
        body=ResumeRequest,
        errors=(*_PATH_ERRORS, *BODY_ERRORS, ErrorCode.BULK_JOB_NOT_RESUMABLE),
    ),
    Operation(
        operation_id="cancelBulkJob",
        method="POST",
        path="/bulk-jobs/{job_id}/cancel",
        summary="Cancel: items not started become cancelled now; the rest settle",
        scope="bulk:write",
        handler=cancel_bulk_job,
        response=BulkJobView,
        path_params=BulkJobPath,
        errors=(*_PATH_ERRORS, ErrorCode.BULK_JOB_FINISHED),
    ),
)
