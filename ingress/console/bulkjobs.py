"""Bulk-job pages: list, progress with rate and ETA, items by status and error code, pause, resume,
cancel and CSV export, all through `services.bulk`.

Bulk jobs are read per organization: a tenant key sees its own; an operator key names the
organization to look at (`?org=`, its own by default), and the overview lists every tenant's
running jobs with links here.
"""

from __future__ import annotations

from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from domain.bulk import ITEM_STATUSES, JOB_STATUSES
from ingress.console.session import ConsoleSession
from ingress.console.web import Console
from services import audit, bulk, bulk_export
from services.errors import Refused

PAGE_SIZE = 50


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def percent(summary: bulk.JobSummary) -> int:
    c = summary.counts
    if c.total == 0:
        return 100
    return min(100, int(100 * (c.total - c.pending) / c.total))


def bulk_routes(console: Console) -> list[BaseRoute]:
    state = console.state

    def org_of(request: Request, session: ConsoleSession) -> UUID:
        # Only an operator may look at another organization's jobs; a tenant's `org` is ignored.
        chosen = _uuid(request.query_params.get("org")) if session.operator else None
        return chosen or session.organization_id

    def ports() -> bulk.BulkPorts:
        return bulk.BulkPorts(state.engine, state.api.resources.jobs)

    async def index(request: Request, session: ConsoleSession) -> Response:
        org = org_of(request, session)
        status = request.query_params.get("status") or None
        if status is not None and status not in JOB_STATUSES:
            return console.refuse(f"status must be one of {', '.join(JOB_STATUSES)}", 400)
        page = await run_in_threadpool(
            bulk.list_jobs, state.engine, org, after=None, limit=PAGE_SIZE, status=status
        )
        return console.render(
            request, "bulkjobs.html", session, jobs=page.rows, org=org, status=status or "",
            statuses=JOB_STATUSES, percent=percent,
        )  # fmt: skip

    async def _job(request: Request, session: ConsoleSession, template: str) -> Response:
        org = org_of(request, session)
        job_id = _uuid(request.path_params["job_id"])
        status = request.query_params.get("status") or None
        error_code = (request.query_params.get("error_code") or "").strip() or None
        after_text = request.query_params.get("after") or ""
        if status is not None and status not in ITEM_STATUSES:
            return console.refuse(f"status must be one of {', '.join(ITEM_STATUSES)}", 400)
        if job_id is None or (after_text and not after_text.isdigit()):
            return console.refuse("No such bulk job.", 404)

        def load() -> tuple[bulk.JobSummary, bulk.Page]:
            summary = bulk.get_job(state.engine, org, job_id)
            after = int(after_text) if after_text else None
            items = bulk.list_items(
                state.engine,
                org,
                job_id,
                after_seq=after,
                limit=PAGE_SIZE,
                status=status,
                error_code=error_code,
            )
            return summary, items

        try:
            summary, items = await run_in_threadpool(load)
        except Refused:
            return console.refuse("No such bulk job.", 404)
        return console.render(
            request, template, session, job=summary, items=items, org=org, percent=percent(summary),
            item_status=status or "", error_code=error_code or "", statuses=ITEM_STATUSES,
        )  # fmt: skip

    async def detail(request: Request, session: ConsoleSession) -> Response:
        return await _job(request, session, "bulkjob.html")

    async def fragment(request: Request, session: ConsoleSession) -> Response:
        return await _job(request, session, "_bulkjob.html")

    async def control(request: Request, session: ConsoleSession) -> Response:
        org = org_of(request, session)
        job_id = _uuid(request.path_params["job_id"])
        action = request.path_params["action"]
        if job_id is None or action not in ("pause", "resume", "resume-failed", "cancel"):
            return console.refuse("No such bulk job action.", 404)

        def run() -> bulk.JobSummary:
            if action == "pause":
                summary = bulk.pause(ports(), org, job_id)
            elif action == "cancel":
                summary = bulk.cancel(ports(), org, job_id)
            else:
                summary = bulk.resume(
                    ports(), org, job_id, "failed" if action == "resume-failed" else "pending"
                )
            audit.record_now(state.engine, session.actor, f"bulk_job.{action}", aggregate_type="bulk_job",
                             aggregate_id=str(job_id), organization_id=org,
                             details={"status": summary.status})  # fmt: skip
            return summary

        try:
            summary = await run_in_threadpool(run)
        except Refused as refused:
            if refused.code == "not_found":
                return console.refuse("No such bulk job.", 404)
            return console.refuse(f"Not possible now ({refused.code}): {refused.message or ''}", 409)
        suffix = f"?org={org}" if session.operator else ""
        response = console.redirect(
            f"/bulk-jobs/{job_id}", notice=f"Bulk job {action}: now {summary.status}."
        )
        if suffix:
            response.headers["location"] += "&" + suffix[1:]
        return response

    async def export(request: Request, session: ConsoleSession) -> Response:
        org = org_of(request, session)
        job_id = _uuid(request.path_params["job_id"])
        status = request.query_params.get("status") or None
        error_code = (request.query_params.get("error_code") or "").strip() or None
        if job_id is None:
            return console.refuse("No such bulk job.", 404)
        try:
            await run_in_threadpool(bulk.get_job, state.engine, org, job_id)
        except Refused:
            return console.refuse("No such bulk job.", 404)
        rows = bulk_export.item_rows(state.engine, org, job_id, status=status, error_code=error_code)
        return console.secure(
            StreamingResponse(
                rows,
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="bulk-job-{job_id}.csv"'},
            )
        )

    return [
        Route("/bulk-jobs", console.page(index), methods=["GET"]),
        Route("/bulk-jobs/{job_id}", console.page(detail), methods=["GET"]),
        Route("/bulk-jobs/{job_id}/items.csv", console.page(export), methods=["GET"]),
        Route("/fragments/bulk-jobs/{job_id}", console.page(fragment), methods=["GET"]),
        Route("/bulk-jobs/{job_id}/{action}", console.page(control), methods=["POST"]),
    ]
