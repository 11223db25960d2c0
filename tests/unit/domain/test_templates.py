from __future__ import annotations

from typing import Any

from domain.templates import StoredTemplate, check_template_send, expected_parameters, placeholders

COMPONENTS: list[dict[str, Any]] = [
    {"type": "HEADER", "format": "IMAGE"},
    {"type": "BODY", "text": "Hi {{1}}, order {{2}} is {{ 3 }}; thanks {{1}}."},
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Yes"},
            {"type": "URL", "text": "Track", "url": "https://x.test/{{1}}"},
            {"type": "COPY_CODE", "example": "SAVE10"},
        ],
    },
]
APPROVED = StoredTemplate("order", "en_US", "APPROVED", COMPONENTS)


def params(n: int) -> list[dict[str, str]]:
    return [{"type": "text", "text": str(i)} for i in range(n)]


def send(**extra: Any) -> list[dict[str, Any]]:
    components = [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x.test/a.jpg"}}]},
        {"type": "body", "parameters": params(3)},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": params(1)},
        {
            "type": "button",
            "sub_type": "copy_code",
            "index": "2",
            "parameters": [{"type": "coupon_code", "coupon_code": "X"}],
        },
    ]
    more: list[dict[str, Any]] = extra.get("more", [])
    return components + more


def test_placeholders_are_counted_once_each() -> None:
    assert placeholders("{{1}} {{2}} {{1}} {{name}}") == 3
    assert placeholders(None) == 0
    assert expected_parameters(COMPONENTS) == {"header": 1, "body": 3, "button:1": 1, "button:2": 1}


def test_a_matching_send_passes_and_quick_reply_payloads_are_optional() -> None:
    quick = {
        "type": "button",
        "sub_type": "quick_reply",
        "index": "0",
        "parameters": [{"type": "payload", "payload": "y"}],
    }
    assert check_template_send("order", "en_US", [APPROVED], send()) is None
    assert check_template_send("order", "en_US", [APPROVED], send(more=[quick])) is None


def test_each_problem_has_its_code() -> None:
    problem = check_template_send("order", "en_US", [], send())
    assert problem is not None and problem.code == "template_not_found"
    problem = check_template_send("order", "pt_BR", [APPROVED], send())
    assert problem is not None and problem.code == "template_language_missing"
    assert problem.details["available_languages"] == ["en_US"]
    paused = StoredTemplate("order", "en_US", "PAUSED", COMPONENTS)
    problem = check_template_send("order", "en_US", [paused], send())
    assert problem is not None and problem.code == "template_not_approved"
    problem = check_template_send("order", "en_US", [APPROVED], send()[1:])
    assert problem is not None and problem.code == "template_parameters_mismatch"
    assert problem.details["mismatches"] == [{"component": "header", "expected": 1, "given": 0}]
