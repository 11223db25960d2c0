"""Dead-letter pages: list with the API's filters, detail, retry one, retry or discard the filtered
set after a count preview, and redrive tasks with their progress. Every rule is `services.deadletters`'."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from domain.deadletters import DeadLetterFilter, Status
from domain.errors import FleetError
from ingress.console import filters
from ingress.console.session import ConsoleSession
from ingress.console.web import Console, Page
from services import audit
from services import deadletters as letters

PAGE_SIZE = 50


def _path_id(request: Request, name: str, missing: type[FleetError]) -> UUID:
    """The id in the path; text that is no UUID names nothing, so it is `missing` as well."""
    try:
        return UUID(request.path_params[name])
    except ValueError:
        raise missing(f"no {name} {request.path_params[name]!r}") from None


def _percent(task: letters.Redrive) -> int:
    done = task.moved + task.failed + task.skipped
    return 100 if task.matched == 0 else min(100, int(100 * done / task.matched))


def deadletter_routes(console: Console) -> list[BaseRoute]:
    state = console.state

    def _record(
        session: ConsoleSession, action: str, aggregate: str, org: UUID | None, **details: object
    ) -> None:
        audit.record_now(
            state.engine,
            session.actor,
            action,
            aggregate_type="dead_letter",
            aggregate_id=aggregate,
            organization_id=org,
            details=dict(details),
        )

    def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        """`console.page`, answering a letter or redrive the scope cannot see with the one 404."""

        async def run(request: Request, session: ConsoleSession) -> Response:
            try:
                return await handler(request, session)
            except letters.DeadLetterNotFound:
                return console.refuse("No such dead letter.", 404)
            except letters.RedriveNotFound:
                return console.refuse("No such redrive.", 404)

        return console.page(run)

    def _filter_or_refusal(
        request: Request, values: Mapping[str, Any], session: ConsoleSession
    ) -> DeadLetterFilter | Response:
        try:
            return filters.parse(values, operator=session.operator)
        except filters.BadFilter as bad:
            return console.refuse(f"Bad filter: {bad}", 400)

    async def index(request: Request, session: ConsoleSession) -> Response:
        f = _filter_or_refusal(request, request.query_params, session)
        if isinstance(f, Response):
            return f
        cursor = request.query_params.get("cursor") or None
        try:
            page = await run_in_threadpool(
                letters.list_dead_letters, state.engine, session.letters, f, limit=PAGE_SIZE, cursor=cursor
            )
        except letters.InvalidCursor:
            return console.refuse("That page link is not valid; start from the first page.", 400)
        count = await run_in_threadpool(letters.count_dead_letters, state.engine, session.letters, f)
        return console.render(
            request,
            "deadletters.html",
            session,
            active="deadletters",
            page=page,
            count=count,
            form=filters.form_values(f),
            query=filters.query(f),
            statuses=[s.value for s in Status],
        )

    async def detail(request: Request, session: ConsoleSession) -> Response:
        letter_id = _path_id(request, "letter_id", letters.DeadLetterNotFound)
        found = await run_in_threadpool(letters.get_dead_letter, state.engine, session.letters, letter_id)
        return console.render(
            request,
            "deadletter.html",
            session,
            active="deadletters",
            d=found,
            args=json.dumps(found.args, indent=2, ensure_ascii=False),
            kwargs=json.dumps(found.kwargs, indent=2, ensure_ascii=False),
            options=json.dumps(found.options, indent=2, ensure_ascii=False, default=str),
        )

    async def retry_one(request: Request, session: ConsoleSession) -> Response:
        letter_id = _path_id(request, "letter_id", letters.DeadLetterNotFound)

        def run() -> letters.RetryResult:
            found = letters.get_dead_letter(state.engine, session.letters, letter_id)
            result = letters.retry_dead_letter(
                state.engine, state.api.resources.jobs, session.letters, letter_id
            )
            _record(session, "dead_letter.retry", str(letter_id), found.letter.organization_id,
                    status=result.status.value, message_id=result.message_id)  # fmt: skip
            return result

        try:
            result = await run_in_threadpool(run)
        except letters.NotRetryable as exc:
            return console.refuse(f"This letter is {exc.status} already, not dead: nothing was retried.", 409)
        return console.redirect(
            "/dead-letters", notice=f"Dead letter {letter_id} re-enqueued ({result.status})."
        )

    async def discard_one(request: Request, session: ConsoleSession) -> Response:
        letter_id = _path_id(request, "letter_id", letters.DeadLetterNotFound)

        def run() -> letters.Letter:
            letter = letters.discard_dead_letter(state.engine, session.letters, letter_id)
            _record(session, "dead_letter.discard", str(letter_id), letter.organization_id)
            return letter

        try:
            await run_in_threadpool(run)
        except letters.NotRetryable as exc:
            return console.refuse(f"This letter is {exc.status}, not dead: nothing was discarded.", 409)
        return console.redirect("/dead-letters", notice=f"Dead letter {letter_id} discarded.")

    async def preview(request: Request, session: ConsoleSession) -> Response:
        action = request.path_params["action"]
        if action not in ("retry", "discard"):
            return console.refuse("No such action.", 404)
        f = _filter_or_refusal(request, request.query_params, session)
        if isinstance(f, Response):
            return f
        count = await run_in_threadpool(letters.count_dead_letters, state.engine, session.letters, f)
        return console.render(
            request,
            "deadletters_preview.html",
            session,
            active="deadletters",
            action=action,
            count=count,
            preview_id=secrets.token_urlsafe(12),
            form=filters.form_values(f),
            shown=f.as_json(),
            query=filters.query(f),
        )

    async def start_redrive(request: Request, session: ConsoleSession) -> Response:
        form = await request.form()
        f = _filter_or_refusal(request, form, session)
        if isinstance(f, Response):
            return f
        rate_text = str(form.get("max_per_second") or "").strip()
        try:
            rate = float(rate_text) if rate_text else None
            if rate is not None and rate <= 0:
                raise ValueError
        except ValueError:
            return console.refuse("Rate must be a positive number of letters per second.", 400)
        # The form's CSRF token is unique to the preview the operator confirmed: a double submit replays.
        key = f"console:{session.csrf[:16]}:{form.get('preview_id') or ''}"

        def run() -> letters.RedriveStarted:
            started = letters.start_redrive(
                state.engine, session.letters, f, max_per_second=rate, idempotency_key=key
            )
            if not started.replayed:
                task = started.redrive
                _record(session, "dead_letter.redrive", str(task.id), task.organization_id,
                        filter=f.as_json(), matched=task.matched, max_per_second=rate)  # fmt: skip
            return started

        try:
            started = await run_in_threadpool(run)
        except letters.IdempotencyConflict:
            return console.refuse("This preview was already confirmed with another filter; start again.", 409)
        return console.redirect(
            f"/dead-letters/redrives/{started.redrive.id}",
            notice=f"Redrive of {started.redrive.matched} dead letters started.",
        )

    async def discard_filtered(request: Request, session: ConsoleSession) -> Response:
        form = await request.form()
        f = _filter_or_refusal(request, form, session)
        if isinstance(f, Response):
            return f

        def run() -> int:
            n = letters.discard_dead_letters(state.engine, session.letters, f)
            _record(
                session,
                "dead_letter.discard_filtered",
                "filter",
                f.organization_id,
                filter=f.as_json(),
                discarded=n,
            )
            return n

        discarded = await run_in_threadpool(run)
        return console.redirect("/dead-letters", notice=f"{discarded} dead letters discarded.")

    async def redrives(request: Request, session: ConsoleSession) -> Response:
        tasks = await run_in_threadpool(letters.list_redrives, state.engine, session.letters, limit=50)
        return console.render(request, "redrives.html", session, tasks=tasks, percent=_percent)

    async def redrive(request: Request, session: ConsoleSession) -> Response:
        return await _redrive_page(request, session, "redrive.html")

    async def redrive_fragment(request: Request, session: ConsoleSession) -> Response:
        return await _redrive_page(request, session, "_redrive.html")

    async def _redrive_page(request: Request, session: ConsoleSession, template: str) -> Response:
        redrive_id = _path_id(request, "redrive_id", letters.RedriveNotFound)
        task = await run_in_threadpool(letters.get_redrive, state.engine, session.letters, redrive_id)
        return console.render(
            request,
            template,
            session,
            active="deadletters",
            task=task,
            percent=_percent(task),
            shown=task.filter.as_json(),
        )

    async def cancel_redrive(request: Request, session: ConsoleSession) -> Response:
        redrive_id = _path_id(request, "redrive_id", letters.RedriveNotFound)

        def run() -> letters.Redrive:
            task = letters.cancel_redrive(state.engine, session.letters, redrive_id)
            _record(session, "dead_letter.redrive_cancel", str(redrive_id), task.organization_id,
                    status=task.status.value)  # fmt: skip
            return task

        task = await run_in_threadpool(run)
        return console.redirect(f"/dead-letters/redrives/{redrive_id}", notice=f"Redrive {task.status}.")

    return [
        Route("/dead-letters", page(index), methods=["GET"]),
        Route("/dead-letters/preview/{action}", page(preview), methods=["GET"]),
        Route("/dead-letters/redrives", page(start_redrive), methods=["POST"]),
        Route("/dead-letters/redrives", page(redrives), methods=["GET"]),
        Route("/dead-letters/discard", page(discard_filtered), methods=["POST"]),
        Route("/dead-letters/redrives/{redrive_id}", page(redrive), methods=["GET"]),
        Route("/fragments/redrives/{redrive_id}", page(redrive_fragment), methods=["GET"]),
        Route("/dead-letters/redrives/{redrive_id}/cancel", page(cancel_redrive), methods=["POST"]),
        Route("/dead-letters/{letter_id}", page(detail), methods=["GET"]),
        Route("/dead-letters/{letter_id}/retry", page(retry_one), methods=["POST"]),
        Route("/dead-letters/{letter_id}/discard", page(discard_one), methods=["POST"]),
    ]
