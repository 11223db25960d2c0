"""The response envelope every `/api/v1` answer uses, as models (for the OpenAPI document) and as
the functions that write it.

    {"success": true,  "data": {...}, "meta": {...}}
    {"success": false, "error": {"code", "message", "details", "timestamp"}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from ingress.api.errors import ApiError

T = TypeVar("T")


class Meta(BaseModel):
    model_config = ConfigDict(extra="allow")

    request_id: str | None = None
    next_cursor: str | None = None
    replayed: bool | None = None


class Success(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: T
    meta: Meta


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None
    timestamp: datetime


class Failure(BaseModel):
    success: Literal[False] = False
    error: ErrorBody


def _json(body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def success(
    data: BaseModel | Sequence[BaseModel],
    meta: Mapping[str, Any],
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    payload = (
        [d.model_dump(mode="json") for d in data]
        if not isinstance(data, BaseModel)
        else data.model_dump(mode="json")
    )
    return _json({"success": True, "data": payload, "meta": dict(meta)}, status, headers)


def failure(error: ApiError, headers: Mapping[str, str] | None = None) -> Response:
    body = {
        "success": False,
        "error": {
            "code": error.code,
            "message": error.message,
            "details": error.details,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
    }
    return _json(body, error.status, {**(headers or {}), **error.headers})
