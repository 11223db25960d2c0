"""Reading deliveries: every documented message type, statuses, errors, and refusals of bad shapes."""

from __future__ import annotations

import json

import pytest

from devkit import whatsapp as wa
from domain.errors import InvalidPayload
from domain.whatsapp import parse_delivery
from workers.inbound.decode import decode_delivery

PN = "106540352242922"
CUSTOMER = "16505551234"


def _one(message: dict) -> object:
    [change] = parse_delivery(wa.delivery(wa.change(PN, messages=[message]))).changes
    [parsed] = change.messages
    return parsed


@pytest.mark.parametrize(
    ("message", "type_", "text"),
    [
        (wa.text(CUSTOMER, "hello"), "text", "hello"),
        (wa.media(CUSTOMER, "image", "m1", caption="look"), "image", "look"),
        (wa.media(CUSTOMER, "video", "m2", caption="clip"), "video", "clip"),
        (wa.media(CUSTOMER, "document", "m3", caption="the pdf", filename="a.pdf"), "document", "the pdf"),
        (wa.media(CUSTOMER, "audio", "m4", mime_type="audio/ogg"), "audio", None),
        (wa.media(CUSTOMER, "sticker", "m5", mime_type="image/webp"), "sticker", None),
        (wa.location(CUSTOMER), "location", None),
        (wa.contacts_card(CUSTOMER), "contacts", None),
        (wa.button_reply(CUSTOMER, "Yes"), "interactive", "Yes"),
        (wa.list_reply(CUSTOMER, "Express"), "interactive", "Express"),
        (wa.nfm_reply(CUSTOMER), "interactive", "Sent"),
        (wa.quick_reply_button(CUSTOMER, "Stop promotions"), "button", "Stop promotions"),
        (wa.order(CUSTOMER), "order", "Please deliver before 6pm"),
        (wa.reaction(CUSTOMER, "wamid.target", "\U0001f44d"), "reaction", "\U0001f44d"),
        (wa.request_welcome(CUSTOMER), "request_welcome", None),
        (wa.unsupported(CUSTOMER), "unsupported", None),
    ],
)
def test_every_type_reads_its_text_and_keeps_raw(message: dict, type_: str, text: str | None) -> None:
    parsed = _one(message)
    assert parsed.type == type_
    assert parsed.text == text
    assert parsed.raw == message
    assert parsed.sender == CUSTOMER
    assert parsed.wamid == message["id"]


def test_media_reference_and_context() -> None:
    parsed = _one(
        wa.media(CUSTOMER, "document", "987", sha256="abc", filename="f.pdf", mime_type="application/pdf")
    )
    assert parsed.media.media_id == "987"
    assert parsed.media.sha256 == "abc"
    assert parsed.media.filename == "f.pdf"
    reply = _one(wa.text(CUSTOMER, "re", context="wamid.original"))
    assert reply.context_wamid == "wamid.original"


def test_reaction_removal_has_no_emoji_whether_empty_or_absent() -> None:
    assert _one(wa.reaction(CUSTOMER, "wamid.t", "")).reaction.emoji is None
    absent = _one(wa.reaction(CUSTOMER, "wamid.t", None))
    assert absent.reaction.emoji is None
    assert absent.reaction.target_wamid == "wamid.t"


@pytest.mark.parametrize("legacy", [False, True])
def test_number_change_both_forms(legacy: bool) -> None:
    parsed = _one(wa.system_changed_number(CUSTOMER, "16505559999", legacy=legacy))
    assert parsed.number_change.old_wa_id == CUSTOMER
    assert parsed.number_change.new_wa_id == "16505559999"
    assert parsed.number_change.form == ("customer_changed_number" if legacy else "user_changed_number")
    assert parsed.text.startswith("User A changed")


def test_unsupported_keeps_its_errors() -> None:
    parsed = _one(wa.unsupported(CUSTOMER))
    [error] = parsed.errors
    assert (error.code, error.title, error.details) == (
        131051,
        "Message type unknown",
        "Message type is currently not supported.",
    )


def test_statuses_with_conversation_pricing_and_errors() -> None:
    doc = wa.delivery(
        wa.change(
            PN,
            statuses=[
                wa.status("wamid.a", "sent"),
                wa.status("wamid.b", "failed", error=(131047, "Re-engagement message")),
            ],
        )
    )
    [change] = parse_delivery(doc).changes
    sent, failed = change.statuses
    assert sent.conversation["origin"]["type"] == "utility"
    assert sent.pricing["pricing_model"] == "PMP"
    assert failed.errors[0].code == 131047
    assert failed.errors[0].details == "Re-engagement message (details)"


def test_every_entry_and_change_is_read_in_order() -> None:
    doc = wa.delivery_entries(
        (
            "waba-1",
            [
                wa.change("pn-1", messages=[wa.text("1", "a")]),
                wa.change("pn-2", messages=[wa.text("2", "b")]),
            ],
        ),
        ("waba-2", [wa.change("pn-3", statuses=[wa.status("wamid.x", "read")]), wa.template_status_update()]),
    )
    changes = parse_delivery(doc).changes
    assert [(c.entry_id, c.field, c.phone_number_id) for c in changes] == [
        ("waba-1", "messages", "pn-1"),
        ("waba-1", "messages", "pn-2"),
        ("waba-2", "messages", "pn-3"),
        ("waba-2", "message_template_status_update", None),
    ]


@pytest.mark.parametrize("body", wa.TRICKY_TEXTS)
def test_text_survives_meta_escaping_verbatim(body: str) -> None:
    raw = wa.encode(wa.delivery(wa.change(PN, messages=[wa.text(CUSTOMER, body)])))
    assert raw.isascii()
    [change] = decode_delivery(raw.decode()).changes
    assert change.messages[0].text == body


def test_nul_is_the_one_character_replaced() -> None:
    raw = wa.encode(wa.delivery(wa.change(PN, messages=[wa.text(CUSTOMER, "a\x00b")])))
    [change] = decode_delivery(raw.decode()).changes
    assert change.messages[0].text == "a\ufffdb"


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ([], "delivery is not an object"),
        ({"object": "page", "entry": []}, "not 'whatsapp_business_account'"),
        ({"object": "whatsapp_business_account"}, "entry is not a list"),
    ],
)
def test_what_is_not_a_delivery_is_refused_with_the_place(document: object, where: str) -> None:
    with pytest.raises(InvalidPayload, match=None) as caught:
        parse_delivery(document)
    assert where in str(caught.value)


def test_an_unreadable_change_is_kept_with_its_reason_beside_the_readable_ones() -> None:
    broken = {"field": "messages", "value": {"messages": []}}
    delivery = parse_delivery(
        wa.delivery(broken, wa.change(PN, messages=[wa.text(CUSTOMER, "hi")]), "not an object")
    )
    assert [c.phone_number_id for c in delivery.changes] == [PN]
    [change, entry] = delivery.unparsed
    assert (change.kind, change.raw) == ("change", broken)
    assert "phone_number_id is missing" in change.reason
    assert entry.kind == "change" and "is not an object" in entry.reason


@pytest.mark.parametrize(
    ("item", "kind", "where"),
    [
        ({"messages": [{"from": "1", "timestamp": "1", "type": "text"}]}, "message", "messages[0].id"),
        (
            {"messages": [{"id": "w", "from": "1", "timestamp": "soon", "type": "text"}]},
            "message",
            "timestamp",
        ),
        ({"statuses": [{"id": "w", "timestamp": "1"}]}, "status", "statuses[0].status"),
        (
            {"messages": [{"id": "w", "from": "1", "timestamp": "1", "type": "reaction", "reaction": {}}]},
            "message",
            "reaction.message_id",
        ),
        (
            {"messages": [{"id": "w", "from": "1", "timestamp": "1", "type": "image", "image": {}}]},
            "message",
            "image.id",
        ),
        ({"contacts": [{"profile": {"name": "x"}}]}, "contact", "contacts[0].wa_id"),
        ({"messages": "nope"}, "message", "messages is not a list"),
    ],
)
def test_an_unreadable_item_is_kept_with_the_place_and_the_rest_is_read(
    item: dict[str, object], kind: str, where: str
) -> None:
    good = wa.text(CUSTOMER, "still here")
    change = wa.change(PN, messages=[good])
    for key, values in item.items():
        change["value"][key] = [*values, good] if key == "messages" and isinstance(values, list) else values
    [parsed] = parse_delivery(wa.delivery(change)).changes
    [bad] = parsed.unparsed
    assert bad.kind == kind and where in bad.reason and bad.phone_number_id == PN
    if item.get("messages") != "nope":
        assert [m.wamid for m in parsed.messages] == [good["id"]]


def test_not_json_is_invalid() -> None:
    with pytest.raises(InvalidPayload):
        decode_delivery("{not json")
    with pytest.raises(InvalidPayload):
        decode_delivery(json.dumps({"object": "whatsapp_business_account", "entry": "x"}))
