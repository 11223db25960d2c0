"""Checking a template send against the template Meta approved, before it is queued.

Meta rejects a send whose parameters do not fit the template (132000 parameter count mismatch,
132001 template or language missing, 132015/132016 paused or disabled) only after the message was
accepted and queued; checking here turns those into a clear answer at the API.

The template is Meta's own object (`components` as `GET /{waba}/message_templates` returns them);
the send's components are the Cloud API's (`{"type": "body", "parameters": [...]}`, and for a
button `{"type": "button", "sub_type": "url", "index": "0", "parameters": [...]}`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

APPROVED: Final = "APPROVED"
MEDIA_HEADER_FORMATS: Final = frozenset({"IMAGE", "VIDEO", "DOCUMENT", "LOCATION"})
# Buttons whose definition takes one parameter at send time, whatever their text says.
BUTTONS_WITH_PARAMETER: Final = frozenset({"COPY_CODE"})
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True, slots=True)
class StoredTemplate:
    name: str
    language: str
    status: str
    components: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    code: str  # an API error code: template_not_found, template_language_missing, ...
    message: str
    details: Mapping[str, Any]


def placeholders(text: object) -> int:
    """Distinct `{{1}}` / `{{name}}` placeholders in a template text."""
    if not isinstance(text, str):
        return 0
    return len(set(_PLACEHOLDER.findall(text)))


def expected_parameters(components: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Parameters each part of the template takes: 'header', 'body', 'button:<index>'."""
    expected: dict[str, int] = {}
    for component in components:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            fmt = str(component.get("format", "TEXT")).upper()
            count = 1 if fmt in MEDIA_HEADER_FORMATS else placeholders(component.get("text"))
            if count:
                expected["header"] = count
        elif kind == "BODY":
            count = placeholders(component.get("text"))
            if count:
                expected["body"] = count
        elif kind == "BUTTONS":
            for index, button in enumerate(component.get("buttons") or ()):
                if not isinstance(button, Mapping):
                    continue
                button_type = str(button.get("type", "")).upper()
                count = 1 if button_type in BUTTONS_WITH_PARAMETER else placeholders(button.get("url"))
                if count:
                    expected[f"button:{index}"] = count
    return expected


def given_parameters(components: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    given: dict[str, int] = {}
    for component in components:
        kind = str(component.get("type", "")).lower()
        parameters = component.get("parameters") or ()
        key = f"button:{component.get('index', '')}" if kind == "button" else kind
        given[key] = given.get(key, 0) + len(parameters)
    return given


def check_template_send(
    name: str,
    language: str,
    known: Sequence[StoredTemplate],
    components: Sequence[Mapping[str, Any]],
) -> TemplateProblem | None:
    """None when the send fits an approved template; else what is wrong, for the API's answer.

    `known` holds every stored language of the template `name` (empty when there is none).
    """
    if not known:
        return TemplateProblem(
            "template_not_found",
            f"No template named {name!r} is known; sync templates if it was created recently.",
            {"name": name},
        )
    template = next((t for t in known if t.language == language), None)
    if template is None:
        languages = sorted(t.language for t in known)
        return TemplateProblem(
            "template_language_missing",
            f"Template {name!r} has no {language!r} translation (it has {', '.join(languages)}).",
            {"name": name, "language": language, "available_languages": languages},
        )
    if template.status.upper() != APPROVED:
        return TemplateProblem(
            "template_not_approved",
            f"Template {name!r} ({language}) is {template.status}, not APPROVED.",
            {"name": name, "language": language, "status": template.status},
        )
    expected = expected_parameters(template.components)
    given = given_parameters(components)
    mismatches = [
        {"component": part, "expected": expected.get(part, 0), "given": given.get(part, 0)}
        for part in sorted(set(expected) | set(given))
        if expected.get(part, 0) != given.get(part, 0)
        # Quick-reply payloads are optional extras Meta accepts on any button.
        and not (part.startswith("button:") and part not in expected)
    ]
    if mismatches:
        parts = "; ".join(f"{m['component']} takes {m['expected']}, got {m['given']}" for m in mismatches)
        return TemplateProblem(
            "template_parameters_mismatch",
            f"Template {name!r} ({language}) parameters do not match: {parts}.",
            {"name": name, "language": language, "mismatches": mismatches},
        )
    return None
