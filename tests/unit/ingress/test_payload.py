from __future__ import annotations

import pytest

from ingress.payload import InvalidBody, check_stripe_shape, check_whatsapp_shape, parse_json


def test_text_is_the_exact_body() -> None:
    raw = b'{"object":"whatsapp_business_account","entry":[],"t":"caf\\u00e9"}'
    text, document = parse_json(raw, 64)
    assert text.encode() == raw
    assert document["t"] == "café"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff{}", "not_utf8"),
        (b"", "not_json"),
        (b"{", "not_json"),
        (b"NaN", "not_json"),
        (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
        (b"[" * 65 + b"]" * 65, "too_deep"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "too_deep"),
    ],
)
def test_invalid_bodies(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidBody) as caught:
        parse_json(raw, 64)
    assert caught.value.reason == reason


def test_depth_limit_is_inclusive_and_wide_bodies_pass() -> None:
    # Speed belongs to bench/ (bench.ingress); here only what is accepted and refused.
    parse_json(b"[" * 64 + b"]" * 64, 64)
    wide = b"[" + b",".join([b"[[1]]"] * 50_000) + b"]"
    assert parse_json(wide, 64)[1] == [[[1]]] * 50_000


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(InvalidBody):
        parse_json(b"[" * 1_000_000, 64)


@pytest.mark.parametrize(
    "document",
    [
        [],
        "x",
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account"},
        {"object": "whatsapp_business_account", "entry": {}},
    ],
)
def test_whatsapp_shape(document: object) -> None:
    with pytest.raises(InvalidBody):
        check_whatsapp_shape(document)


def test_shapes_accepted() -> None:
    check_whatsapp_shape({"object": "whatsapp_business_account", "entry": []})
    check_stripe_shape({"object": "event", "id": "evt_1", "type": "invoice.paid"})
    with pytest.raises(InvalidBody):
        check_stripe_shape({"object": "event", "id": 1, "type": "x"})
