"""Schemathesis against the generated OpenAPI document: whatever it sends, never a 5xx."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy.engine import Engine

from config import Settings
from devkit.deadletters import letter_row, seed_letters
from devkit.tenants import ALL_SCOPES, TEMPLATE
from ingress.api import ApiOptions
from tests.support.api import build_app
from tests.support.bulk import BULK_SCOPES, bulk_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(settings: Settings, engine: Engine) -> Iterator[tuple[Any, str]]:
    app, state = build_app(
        settings, ApiOptions(rate_limit=100_000, redis_namespace=f"adsapp-test:{uuid.uuid4().hex}")
    )
    state.open()
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    tenant.contact("15550001111")
    seed_letters(engine, [letter_row("fuzz", tenant.organization_id, n) for n in range(3)])
    key = tenant.api_key((*ALL_SCOPES, *BULK_SCOPES, "dead-letters:read", "dead-letters:write"))
    try:
        yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app), key
    finally:
        state.close()


def test_no_input_makes_the_api_fail(api: tuple[Any, str]) -> None:
    schema, key = api
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {
        "POST /api/v1/messages",
        "GET /api/v1/messages/{message_id}",
        "GET /api/v1/messages",
        "POST /api/v1/bulk-jobs",
        "GET /api/v1/bulk-jobs",
        "GET /api/v1/bulk-jobs/{job_id}",
        "GET /api/v1/bulk-jobs/{job_id}/items",
        "POST /api/v1/bulk-jobs/{job_id}/pause",
        "POST /api/v1/bulk-jobs/{job_id}/resume",
        "POST /api/v1/bulk-jobs/{job_id}/cancel",
        "GET /api/v1/dead-letters/count",
        "GET /api/v1/dead-letters",
        "GET /api/v1/dead-letters/{dead_letter_id}",
        "POST /api/v1/dead-letters/{dead_letter_id}/retry",
        "DELETE /api/v1/dead-letters/{dead_letter_id}",
        "POST /api/v1/dead-letters/retry",
        "POST /api/v1/dead-letters/discard",
        "GET /api/v1/dead-letter-redrives/{redrive_id}",
        "POST /api/v1/dead-letter-redrives/{redrive_id}/cancel",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=[not_a_server_error])

        run()
