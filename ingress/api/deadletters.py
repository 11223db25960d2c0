"""`/dead-letters` and `/dead-letter-redrives`: thin routes over `services.deadletters`.

A tenant key acts within its organization; an operator key (`adsapp apikey create --operator`)
across every tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from ingress.api import audit_trail
from ingress.api.deadletter_models import (
    BatchRequest,
    ChainLinkView,
    CountView,
    DeadLetterDetailView,
    DeadLetterView,
    DiscardView,
    LetterPath,
    Links,
    ListQuery,
    RedrivePath,
    RedriveRequest,
    RedriveView,
    RetryView,
)
from ingress.api.errors import AUTH_ERRORS, BODY_ERRORS, ApiError, ErrorCode
from ingress.api.idempotency import parse_key
from ingress.api.operations import Call, HeaderParam, Operation, Reply, accepted
from services import deadletters as dl

READ = "dead-letters:read"
WRITE = "dead-letters:write"
_AUTH_ERRORS = (*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED)


def _scope(call: Call) -> dl.Scope:
    if call.principal.operator:
        return dl.Scope.everyone()
    return dl.Scope.tenant(call.principal.organization_id)


def _link(call: Call, kind: str, item_id: UUID) -> Links:
    return Links(self=f"{call.resources.options.base_path}/{kind}/{item_id}")


def _letter_fields(call: Call, letter: dl.Letter) -> dict[str, object]:
    return {
        "id": letter.id,
        "organization_id": letter.organization_id,
        "queue": letter.queue,
        "actor": letter.actor,
        "message_id": letter.message_id,
        "error_class": letter.error_class,
        "error_message": letter.error_message,
        "error": letter.error,
        "transient": letter.transient,
        "attempts": letter.attempts,
        "status": letter.status.value,
        "sweeps": letter.sweeps,
        "first_failed_at": letter.first_failed_at,
        "last_failed_at": letter.last_failed_at,
        "retried_at": letter.retried_at,
        "discarded_at": letter.discarded_at,
        "retried_from": letter.retried_from,
        "links": _link(call, "dead-letters", letter.id),
    }


def _redrive_view(call: Call, r: dl.Redrive) -> RedriveView:
    return RedriveView(
        id=r.id,
        status=r.status.value,
        organization_id=r.organization_id,
        filter=r.filter.as_json(),
        max_per_second=r.max_per_second,
        matched=r.matched,
        moved=r.moved,
        failed=r.failed,
        skipped=r.skipped,
        created_at=r.created_at,
        started_at=r.started_at,
        finished_at=r.finished_at,
        links=_link(call, "dead-letter-redrives", r.id),
    )


@contextmanager
def _refusals() -> Iterator[None]:
    """The use cases' refusals as the API's errors."""
    try:
        yield
    except dl.DeadLetterNotFound as exc:
        raise ApiError(ErrorCode.NOT_FOUND, "No dead letter with this id.") from exc
    except dl.RedriveNotFound as exc:
        raise ApiError(ErrorCode.NOT_FOUND, "No redrive with this id.") from exc
    except dl.NotRetryable as exc:
        raise ApiError(ErrorCode.DEAD_LETTER_NOT_DEAD, details={"status": exc.status}) from exc
    except dl.InvalidCursor as exc:
        raise ApiError(ErrorCode.INVALID_CURSOR) from exc
    except dl.IdempotencyConflict as exc:
        raise ApiError(ErrorCode.IDEMPOTENCY_KEY_REUSED) from exc


def list_letters(call: Call) -> Reply:
    query: ListQuery = call.query
    with _refusals():
        page = dl.list_dead_letters(
            call.resources.engine, _scope(call), query.to_filter(), limit=query.limit, cursor=query.cursor
        )
    return Reply(
        [DeadLetterView.model_validate(_letter_fields(call, x)) for x in page.items],
        meta={"next_cursor": page.next_cursor},
    )


def count_letters(call: Call) -> Reply:
    query: ListQuery = call.query
    return Reply(
        CountView(count=dl.count_dead_letters(call.resources.engine, _scope(call), query.to_filter()))
    )


def get_letter(call: Call) -> Reply:
    path: LetterPath = call.path
    with _refusals():
        d = dl.get_dead_letter(call.resources.engine, _scope(call), path.dead_letter_id)
    view = DeadLetterDetailView.model_validate(
        {
            **_letter_fields(call, d.letter),
            "args": d.args,
            "kwargs": d.kwargs,
            "options": d.options,
            "traceback": d.traceback,
            "retry_message_id": d.retry_message_id,
            "next_sweep_at": d.next_sweep_at,
            "chain": [
                ChainLinkView(
                    id=c.id, status=c.status.value, error_class=c.error_class,
                    last_failed_at=c.last_failed_at, depth=c.depth,
                )
                for c in d.chain
            ],
        }
    )  # fmt: skip
    return Reply(view)


def retry_letter(call: Call) -> Reply:
    path: LetterPath = call.path
    with _refusals():
        found = dl.get_dead_letter(call.resources.engine, _scope(call), path.dead_letter_id)
        result = dl.retry_dead_letter(
            call.resources.engine, call.resources.jobs, _scope(call), path.dead_letter_id
        )
    _audit(call, "retry", result.letter_id, found.letter.organization_id,
           status=result.status.value, message_id=result.message_id)  # fmt: skip
    return Reply(
        RetryView(id=result.letter_id, status=result.status.value, message_id=result.message_id), 202
    )


def start_redrive(call: Call) -> Reply:
    body: RedriveRequest = call.body
    key = parse_key(call.headers.get("idempotency-key"))
    with _refusals():
        started = dl.start_redrive(
            call.resources.engine, _scope(call), body.frozen(), max_per_second=body.max_per_second,
            idempotency_key=key,
        )  # fmt: skip
    if not started.replayed:
        task = started.redrive
        _audit(call, "redrive", task.id, None, filter=task.filter.as_json(),
               matched=task.matched, max_per_second=task.max_per_second)  # fmt: skip
    view = _redrive_view(call, started.redrive)
    return accepted(view, view.links.self, replayed=started.replayed)


def get_redrive(call: Call) -> Reply:
    path: RedrivePath = call.path
    with _refusals():
        return Reply(
            _redrive_view(call, dl.get_redrive(call.resources.engine, _scope(call), path.redrive_id))
        )


def cancel_redrive(call: Call) -> Reply:
    path: RedrivePath = call.path
    with _refusals():
        task = dl.cancel_redrive(call.resources.engine, _scope(call), path.redrive_id)
    _audit(call, "redrive_cancel", task.id, None, status=task.status.value)
    return Reply(_redrive_view(call, task))


def discard_letters(call: Call) -> Reply:
    body: BatchRequest = call.body
    f = body.frozen()
    discarded = dl.discard_dead_letters(call.resources.engine, _scope(call), f)
    _audit(call, "discard_filtered", "filter", None, filter=f.as_json(), discarded=discarded)
    return Reply(DiscardView(discarded=discarded))


def discard_letter(call: Call) -> Reply:
    path: LetterPath = call.path
    with _refusals():
        letter = dl.discard_dead_letter(call.resources.engine, _scope(call), path.dead_letter_id)
    _audit(call, "discard", letter.id, letter.organization_id)
    return Reply(DeadLetterView.model_validate(_letter_fields(call, letter)))


def _audit(call: Call, action: str, aggregate: UUID | str, org: UUID | None, **details: object) -> None:
    """Filed under the organization of the letter acted on; an action on a filter (a redrive, a
    filtered discard) under the key's own, since the filter may name any organization id, even
    one that does not exist."""
    audit_trail.record(call, f"dead_letter.{action}", aggregate_type="dead_letter", aggregate_id=aggregate,
                       organization_id=org, details=dict(details))  # fmt: skip


# Order matters where paths overlap: /dead-letters/count before /dead-letters/{dead_letter_id}.
OPERATIONS = (
    Operation(
        operation_id="countDeadLetters", method="GET", path="/dead-letters/count",
        summary="How many dead letters match the filter (the preview of a batch retry or discard)",
        scope=READ, handler=count_letters, response=CountView, query=ListQuery, errors=_AUTH_ERRORS,
    ),
    Operation(
        operation_id="listDeadLetters", method="GET", path="/dead-letters",
        summary="Dead letters, newest failure first (cursor pagination)",
        description="Filters: queue, actor, organization_id, error_class, text (in the error), status "
        "(dead unless asked), since/until (last failure). A tenant key sees only its own letters.",
        scope=READ, handler=list_letters, response=list[DeadLetterView], query=ListQuery,
        errors=(*_AUTH_ERRORS, ErrorCode.INVALID_CURSOR),
    ),
    Operation(
        operation_id="getDeadLetter", method="GET", path="/dead-letters/{dead_letter_id}",
        summary="The whole dead letter: original message, traceback, and its chain of retries",
        scope=READ, handler=get_letter, response=DeadLetterDetailView, path_params=LetterPath,
        errors=(*_AUTH_ERRORS, ErrorCode.NOT_FOUND),
    ),
    Operation(
        operation_id="retryDeadLetter", method="POST", path="/dead-letters/{dead_letter_id}/retry",
        summary="Re-enqueue one dead letter (same actor, args and options; a fresh retry count)",
        scope=WRITE, handler=retry_letter, response=RetryView, status=202, path_params=LetterPath,
        errors=(*_AUTH_ERRORS, ErrorCode.NOT_FOUND, ErrorCode.DEAD_LETTER_NOT_DEAD),
    ),
    Operation(
        operation_id="discardDeadLetter", method="DELETE", path="/dead-letters/{dead_letter_id}",
        summary="Discard one dead letter (kept for audit, out of the default listing)",
        scope=WRITE, handler=discard_letter, response=DeadLetterView, path_params=LetterPath,
        errors=(*_AUTH_ERRORS, ErrorCode.NOT_FOUND, ErrorCode.DEAD_LETTER_NOT_DEAD),
    ),
    Operation(
        operation_id="redriveDeadLetters", method="POST", path="/dead-letters/retry",
        summary="Retry every dead letter matching the filter (or the ids) as a background task",
        description="Answers 202 with the task. The letters are frozen when it is created: those that "
        "die later are not swept in. `max_per_second` caps the rate; `Idempotency-Key` makes a "
        "repeated request return the same task.",
        scope=WRITE, handler=start_redrive, response=RedriveView, status=202, body=RedriveRequest,
        headers=(HeaderParam("Idempotency-Key", "The same key and body return the same task."),),
        errors=(
            *_AUTH_ERRORS, *BODY_ERRORS, ErrorCode.IDEMPOTENCY_KEY_INVALID, ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ),
    ),
    Operation(
        operation_id="discardDeadLetters", method="POST", path="/dead-letters/discard",
        summary="Discard every dead letter matching the filter (or the ids)",
        scope=WRITE, handler=discard_letters, response=DiscardView, body=BatchRequest,
        errors=(*_AUTH_ERRORS, *BODY_ERRORS),
    ),
    Operation(
        operation_id="getDeadLetterRedrive", method="GET", path="/dead-letter-redrives/{redrive_id}",
        summary="A redrive task's progress", scope=READ, handler=get_redrive, response=RedriveView,
        path_params=RedrivePath, errors=(*_AUTH_ERRORS, ErrorCode.NOT_FOUND),
    ),
    Operation(
        operation_id="cancelDeadLetterRedrive", method="POST",
        path="/dead-letter-redrives/{redrive_id}/cancel",
        summary="Cancel a redrive before its next batch", scope=WRITE, handler=cancel_redrive,
        response=RedriveView, path_params=RedrivePath, errors=(*_AUTH_ERRORS, ErrorCode.NOT_FOUND),
    ),
)  # fmt: skip
