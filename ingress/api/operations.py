"""An API operation declared once (method, path, scope, models, handler) and the one pipeline
every operation runs through: authenticate, rate-limit, read the body, check the scope, validate,
handle, wrap.

A request is authenticated before its body is read: an unauthenticated caller never gets to make
the server buffer a body, and its attempts are counted per client address (`rate-limited per
address` below), so guessing keys or flooding with bad ones is answered 429 without more work.

The same declarations feed the router and the OpenAPI document, so the document cannot drift from
what the code accepts. Handlers are sync functions run in the threadpool; they raise `ApiError`
for any answer other than success.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ingress.api.auth import Principal, authenticate
from ingress.api.envelope import failure, success
from ingress.api.errors import ApiError, ErrorCode
from ingress.api.resources import ApiResources, ApiState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Call:
    principal: Principal
    resources: ApiResources
    headers: Mapping[str, str]
    body: Any = None
    path: Any = None
    query: Any = None


@dataclass(frozen=True, slots=True)
class Reply:
    data: BaseModel | Sequence[BaseModel]
    status: int = 200
    meta: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    # An answer that is not the JSON envelope (a CSV export): sent as is, with this media type.
    content: bytes | None = None
    media_type: str | None = None


def accepted(data: BaseModel, location: str, *, replayed: bool) -> Reply:
    """A 202 for work started in the background: where to follow it, and whether an
    Idempotency-Key replayed an earlier request's answer instead of starting it again."""
    headers = {"Location": location}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Reply(data, status=202, meta={"replayed": True} if replayed else {}, headers=headers)


@dataclass(frozen=True, slots=True)
class RawBody:
    """A request body in one of the operation's `raw_content_types` (CSV, multipart), unparsed."""

    content_type: str  # the full header, parameters included (multipart needs its boundary)
    data: bytes


@dataclass(frozen=True, slots=True)
class HeaderParam:
    name: str
    description: str
    max_length: int = 255


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    method: str
    path: str  # below the API's base path, Starlette syntax: /messages/{message_id}
    summary: str
    scope: str
    handler: Callable[[Call], Reply]
    response: Any  # the `data` model (a BaseModel, or list[...] of one)
    status: int = 200
    body: type[BaseModel] | None = None
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: tuple[HeaderParam, ...] = ()
    errors: tuple[str, ...] = ()
    description: str = ""
    max_body_bytes: int | None = None  # None: the API's default
    raw_content_types: tuple[str, ...] = ()  # besides JSON: handed over as `RawBody`


@dataclass(frozen=True, slots=True)
class _Facts:
    headers: dict[str, str]
    path: dict[str, Any]
    query: dict[str, str]
    body: bytes | None
    request_id: str
    content_type: str


@dataclass(frozen=True, slots=True)
class _Admitted:
    principal: Principal | None
    rate_headers: dict[str, str]
    refusal: Response | None = None


def endpoint(op: Operation, state: ApiState) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        address = request.client.host if request.client else "unknown"
        admitted = await run_in_threadpool(_admit, op, state, request.headers.get("authorization"), address)
        if admitted.refusal is not None or admitted.principal is None:
            response = admitted.refusal or failure(ApiError(ErrorCode.AUTH_MISSING))
        else:
            try:
                limit = op.max_body_bytes or state.options.max_body_bytes
                body = await _read_body(request, limit, op.raw_content_types) if op.body is not None else None
            except ApiError as exc:
                response = failure(exc, admitted.rate_headers)
            else:
                facts = _Facts(
                    headers=dict(request.headers),
                    path=dict(request.path_params),
                    query=dict(request.query_params),
                    body=body,
                    request_id=request_id,
                    content_type=request.headers.get("content-type", "application/json"),
                )
                response = await run_in_threadpool(_handle, op, state, facts, admitted)
        response.headers["X-Request-ID"] = request_id[:200]
        state.metrics.requests.labels(op.operation_id, str(response.status_code)).inc()
        state.metrics.seconds.labels(op.operation_id).observe(time.perf_counter() - started)
        return response

    return run


def _media_type(header: str) -> str:
    return header.split(";")[0].strip().lower()


async def _read_body(request: Request, limit: int, raw_types: tuple[str, ...] = ()) -> bytes:
    content_type = _media_type(request.headers.get("content-type", "application/json"))
    json_like = content_type in ("application/json", "") or content_type.endswith("+json")
    if not json_like and content_type not in raw_types:
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


_AUTH_FAILURES = frozenset(
    {ErrorCode.AUTH_MISSING, ErrorCode.AUTH_INVALID, ErrorCode.AUTH_EXPIRED, ErrorCode.AUTH_REVOKED}
)


def _admit(op: Operation, state: ApiState, authorization: str | None, address: str) -> _Admitted:
    """Authenticate and apply the key's rate limit, before anything of the body is read. A failed
    authentication counts against the client address; past its limit the answer is 429."""
    rate_headers: dict[str, str] = {}
    try:
        res = state.resources
        try:
            principal = authenticate(res.engine, res.redis, authorization, res.options.redis_namespace)
        except ApiError as exc:
            if exc.code in _AUTH_FAILURES:
                _count_unauthenticated(state, address)
            raise
        rate = res.limiter.hit(principal.key_id)
        if rate is None:
            state.metrics.limiter_unavailable.labels("key").inc()
        else:
            rate_headers = rate.headers()
            if not rate.allowed:
                raise ApiError(
                    ErrorCode.RATE_LIMITED, details={"limit": rate.limit, "reset_seconds": rate.reset_seconds}
                )
        return _Admitted(principal, rate_headers)
    except ApiError as exc:
        return _Admitted(None, rate_headers, failure(exc, rate_headers))
    except (DBAPIError, RedisError, ConnectionError, TimeoutError) as exc:
        log.warning("API dependency unavailable", extra={"operation": op.operation_id, "error": repr(exc)})
        return _Admitted(None, rate_headers, failure(ApiError(ErrorCode.UNAVAILABLE), rate_headers))
    except Exception:
        log.exception("API authentication failed", extra={"operation": op.operation_id})
        return _Admitted(None, rate_headers, failure(ApiError(ErrorCode.INTERNAL_ERROR), rate_headers))


def _count_unauthenticated(state: ApiState, address: str) -> None:
    rate = state.resources.address_limiter.hit(address)
    if rate is None:
        state.metrics.limiter_unavailable.labels("address").inc()
        return
    if not rate.allowed:
        raise ApiError(
            ErrorCode.RATE_LIMITED,
            "Too many unauthenticated requests from this address; retry after the reset.",
            {"limit": rate.limit, "reset_seconds": rate.reset_seconds},
            headers=rate.headers(),
        )


def _handle(op: Operation, state: ApiState, facts: _Facts, admitted: _Admitted) -> Response:
    rate_headers = admitted.rate_headers
    try:
        res = state.resources
        principal = admitted.principal
        assert principal is not None
        principal.require(op.scope)
        call = Call(
            principal=principal,
            resources=res,
            headers=facts.headers,
            body=_body_of(op, facts) if op.body is not None else None,
            path=_validate(op.path_params, facts.path, "path") if op.path_params is not None else None,
            query=_validate(op.query, facts.query, "query") if op.query is not None else None,
        )
        reply = op.handler(call)
        if reply.content is not None:
            return Response(
                reply.content, reply.status, {**rate_headers, **reply.headers}, media_type=reply.media_type
            )
        meta = {"request_id": facts.request_id, **reply.meta}
        return success(reply.data, meta, reply.status, {**rate_headers, **reply.headers})
    except ApiError as exc:
        return failure(exc, rate_headers)
    except (DBAPIError, RedisError, ConnectionError, TimeoutError) as exc:
        log.warning("API dependency unavailable", extra={"operation": op.operation_id, "error": repr(exc)})
        return failure(ApiError(ErrorCode.UNAVAILABLE), rate_headers)
    except Exception as exc:
        if _is_broker_error(exc):
            log.warning("broker unavailable", extra={"operation": op.operation_id, "error": repr(exc)})
            return failure(ApiError(ErrorCode.UNAVAILABLE), rate_headers)
        log.exception("API operation failed", extra={"operation": op.operation_id})
        return failure(ApiError(ErrorCode.INTERNAL_ERROR), rate_headers)


def _is_broker_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("dramatiq", "pika"))


def _body_of(op: Operation, facts: _Facts) -> BaseModel | RawBody:
    assert op.body is not None
    if _media_type(facts.content_type) in op.raw_content_types:
        return RawBody(facts.content_type, facts.body or b"")
    return _parse_body(op.body, facts.body)


def _parse_body(model: type[BaseModel], raw: bytes | None) -> BaseModel:
    try:
        document = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise ApiError(ErrorCode.INVALID_JSON, details={"error": str(exc)}) from exc
    return _validate(model, document, "body")


def _validate(model: type[BaseModel], value: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = [
            {"in": where, "loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(ErrorCode.VALIDATION_FAILED, details=problems) from exc
