"""The OpenAPI 3.1 document, generated from the operations and their pydantic models.

Nothing here is written by hand per route: paths come from the `Operation` declarations, schemas
from `models_json_schema` (JSON Schema 2020-12, which OpenAPI 3.1 uses as is), so the document
says exactly what the validators accept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ingress.api.envelope import Failure, Success
from ingress.api.errors import CATALOGUE
from ingress.api.operations import Operation

REF: Final = "#/components/schemas/{model}"
_RATE_HEADERS: Final = {
    "X-RateLimit-Limit": "Requests allowed per window for this API key.",
    "X-RateLimit-Remaining": "Requests left in the current window.",
    "X-RateLimit-Reset": "Seconds until the window resets.",
}


def build_document(
    operations: Sequence[Operation], base_path: str, *, title: str, version: str
) -> dict[str, Any]:
    envelopes = {op.operation_id: Success[op.response] for op in operations}  # type: ignore[name-defined]
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Failure, "serialization")]
    for op in operations:
        models.append((envelopes[op.operation_id], "serialization"))
        if op.body is not None:
            models.append((op.body, "validation"))
    refs, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for op in operations:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "security": [{"apiKey": []}],
            "x-scope": op.scope,
            "parameters": _parameters(op, schemas),
            "responses": _responses(
                op, refs[(envelopes[op.operation_id], "serialization")], refs[(Failure, "serialization")]
            ),
        }
        if op.description:
            item["description"] = op.description
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        paths[base_path + op.path][op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/"}],
        "paths": dict(paths),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "An ADSapp API key."}
            },
        },
    }


def _parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for where, model in (("path", op.path_params), ("query", op.query)):
        if model is None:
            continue
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            parameters.append(
                {"name": name, "in": where, "required": where == "path" or name in required, "schema": prop}
            )
    for header in op.headers:
        parameters.append(
            {
                "name": header.name,
                "in": "header",
                "required": False,
                "description": header.description,
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": header.max_length,
                    "pattern": "^[!-~]+$",
                },
            }
        )
    return parameters


def _responses(op: Operation, success: dict[str, Any], failure: dict[str, Any]) -> dict[str, Any]:
    rate_headers = {
        name: {"description": text, "schema": {"type": "integer"}} for name, text in _RATE_HEADERS.items()
    }
    responses: dict[str, Any] = {
        str(op.status): {
            "description": op.summary,
            "headers": rate_headers,
            "content": {"application/json": {"schema": success}},
        }
    }
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in op.errors:
        by_status[CATALOGUE[code].status].append(str(code))
    for status in sorted(by_status):
        responses[str(status)] = {
            "description": "Error codes: " + ", ".join(f"`{c}`" for c in by_status[status]),
            "content": {"application/json": {"schema": failure}},
        }
    return responses
