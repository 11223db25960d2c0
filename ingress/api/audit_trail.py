"""What an `/api/v1` request changed, appended to the audit trail as the console's actions are
(`services.audit.record_now`), naming the key that asked."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ingress.api.operations import Call
from services import audit


def record(
    call: Call,
    action: str,
    *,
    aggregate_type: str,
    aggregate_id: UUID | str,
    organization_id: UUID | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    p = call.principal
    engine = call.resources.engine
    audit.record_now(
        engine,
        audit.api_actor(engine, p.key_id, p.organization_id, p.operator),
        action,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        organization_id=organization_id,
        details=details,
    )
