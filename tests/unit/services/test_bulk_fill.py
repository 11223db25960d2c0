"""Per-recipient variables filled into the job's components encoded once give exactly the JSON
that filling and encoding each recipient's components would."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import orjson
import pytest

from db.repos.bulk import ContactRow, EncodedJson
from services.bulk import _Filler, _personalised

CASES: list[list[dict[str, Any]]] = [
    [{"type": "body", "parameters": [{"type": "text", "text": "Hi {{contact.name}}, {{ contact.wa_id }}!"}]}],
    [
        {"type": "header", "parameters": [{"type": "text", "text": 'q"uote\\ {{contact.name}}\n'}]},
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "plain é"},
                {"type": "text", "text": "{{contact.wa_id}}"},
            ],
        },
        {
            "type": "button",
            "sub_type": "url",
            "index": "0",
            "parameters": [{"type": "text", "text": "{{contact.wa_id}}x"}],
        },
    ],
    [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "{{contact.name}}{{contact.wa_id}}\u0001 {{contact.name}}"}
            ],
        }
    ],
]
CONTACTS = [None, ContactRow(uuid4(), "155501", 'Ann "B" \\ \t', False, None)]


@pytest.mark.parametrize("components", CASES)
@pytest.mark.parametrize("contact", CONTACTS)
def test_filled_json_is_the_encoded_personalised_components(
    components: list[dict[str, Any]], contact: ContactRow | None
) -> None:
    filler = _Filler.of(components)
    assert filler is not None
    params = filler.params(contact, "155501")
    assert isinstance(params, EncodedJson)
    assert params.text == orjson.dumps({"components": _personalised(components, contact, "155501")}).decode()


def test_components_without_contact_fields_need_no_filling() -> None:
    assert _Filler.of([{"type": "body", "parameters": [{"type": "text", "text": "{{1}} plain"}]}]) is None


def test_a_text_that_looks_like_a_slot_is_filled_the_slow_way() -> None:
    components = [
        {
            "type": "body",
            "parameters": [
                {"type": "text", "text": "\x000\x00"},
                {"type": "text", "text": "{{contact.wa_id}}"},
            ],
        }
    ]
    filler = _Filler.of(components)
    assert filler is not None
    assert filler.params(None, "155501") == {"components": _personalised(components, None, "155501")}


@pytest.mark.parametrize("components", CASES)
def test_a_recipient_that_is_not_digits_is_escaped_as_orjson_would(components: list[dict[str, Any]]) -> None:
    filler = _Filler.of(components)
    assert filler is not None
    wa_id = 'x"\\\n\u00e9'
    params = filler.params(None, wa_id)
    assert isinstance(params, EncodedJson)
    assert params.text == orjson.dumps({"components": _personalised(components, None, wa_id)}).decode()
