"""The dead-letter filter as the console's forms and links carry it: the API's filter, field by field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from domain.deadletters import DeadLetterFilter, Status, filter_time

FIELDS = ("queue", "actor", "organization_id", "error_class", "text", "status", "since", "until")


class BadFilter(ValueError):
    pass


def _time(name: str, value: str) -> datetime:
    try:
        return filter_time(value)
    except ValueError as exc:
        raise BadFilter(f"{name} is not a date and time (YYYY-MM-DDTHH:MM)") from exc


def parse(values: Mapping[str, Any], *, operator: bool) -> DeadLetterFilter:
    given = {name: str(values.get(name) or "").strip() for name in FIELDS}
    try:
        status = Status(given["status"]) if given["status"] else Status.DEAD
    except ValueError as exc:
        raise BadFilter(f"status must be one of {', '.join(s.value for s in Status)}") from exc
    organization_id = None
    # A tenant's scope is its own organization already; the field is an operator's narrowing.
    if given["organization_id"] and operator:
        try:
            organization_id = UUID(given["organization_id"])
        except ValueError as exc:
            raise BadFilter("organization_id is not a UUID") from exc
    try:
        return DeadLetterFilter(
            queue=given["queue"] or None,
            actor=given["actor"] or None,
            organization_id=organization_id,
            error_class=given["error_class"] or None,
            text=given["text"] or None,
            status=status,
            since=_time("since", given["since"]) if given["since"] else None,
            until=_time("until", given["until"]) if given["until"] else None,
        )
    except ValueError as exc:
        raise BadFilter(str(exc)) from exc


def form_values(f: DeadLetterFilter) -> dict[str, str]:
    """The filter as form field values (times as UTC datetime-local values)."""
    out = {name: "" for name in FIELDS}
    for name in ("queue", "actor", "error_class", "text"):
        out[name] = getattr(f, name) or ""
    out["organization_id"] = str(f.organization_id) if f.organization_id else ""
    out["status"] = f.status.value
    for name in ("since", "until"):
        value: datetime | None = getattr(f, name)
        out[name] = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if value else ""
    return out


def query(f: DeadLetterFilter) -> str:
    return urlencode({k: v for k, v in form_values(f).items() if v})
