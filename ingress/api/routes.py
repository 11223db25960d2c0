"""The `/api/v1` routes: every operation, the generated OpenAPI document, and enveloped 404s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from ingress.api import bulk, deadletters, messages
from ingress.api.envelope import failure
from ingress.api.errors import ApiError, ErrorCode
from ingress.api.openapi import build_document
from ingress.api.operations import Operation, endpoint
from ingress.api.resources import ApiState

OPERATIONS: tuple[Operation, ...] = (*messages.OPERATIONS, *deadletters.OPERATIONS, *bulk.OPERATIONS)


def openapi_document(
    base_path: str = "/api/v1", operations: Sequence[Operation] = OPERATIONS
) -> dict[str, Any]:
    return build_document(operations, base_path, title="ADSapp messaging API", version="1")


def api_routes(state: ApiState) -> list[BaseRoute]:
    """The routes to mount at the API's base path (`Mount(state.options.base_path, routes=...)`)."""
    document = orjson.dumps(openapi_document(state.options.base_path))

    async def openapi(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def not_found(request: Request) -> Response:
        return failure(ApiError(ErrorCode.NOT_FOUND))

    routes: list[BaseRoute] = [Route("/openapi.json", openapi, methods=["GET"])]
    by_path: dict[str, list[Operation]] = {}
    for op in OPERATIONS:
        by_path.setdefault(op.path, []).append(op)
    for path, ops in by_path.items():
        routes.extend(Route(path, endpoint(op, state), methods=[op.method]) for op in ops)
    routes.append(Route("/{rest:path}", not_found))
    return routes


def api_mount(state: ApiState) -> Mount:
    return Mount(state.options.base_path, routes=api_routes(state))
