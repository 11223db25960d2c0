"""Inbound messages against the real schema: one row per wamid, every type, text verbatim,
contacts, conversations (open, reopen, unread), dedupe, reactions, number changes, media jobs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine

from db.uow import UnitOfWork
from devkit import whatsapp as wa
from devkit.jobs import RecordingPublisher
from devkit.tenants import Tenant, make_tenant
from tests.support.rows import rows

pytestmark = pytest.mark.integration

CUSTOMER = "16505551234"


def _messages(engine: Engine, tenant: Tenant) -> list[dict]:
    return [
        dict(r) for r in rows(engine, tenant.organization_id, "SELECT * FROM messages ORDER BY created_at")
    ]


def test_every_type_is_stored_once_with_raw_text_and_media(
    engine: Engine, tenant: Tenant, deliver: Callable, publisher: RecordingPublisher
) -> None:
    sent = [
        wa.with_referral(wa.text(CUSTOMER, "from an ad")),
        wa.media(CUSTOMER, "image", "img-1", caption="photo", content=b"photo bytes"),
        wa.media(CUSTOMER, "audio", "aud-1", mime_type="audio/ogg"),
        wa.media(CUSTOMER, "video", "vid-1", caption="clip", mime_type="video/mp4"),
        wa.media(
            CUSTOMER, "document", "doc-1", caption="invoice", filename="inv.pdf", mime_type="application/pdf"
        ),
        wa.media(CUSTOMER, "sticker", "stk-1", mime_type="image/webp"),
        wa.location(CUSTOMER),
        wa.contacts_card(CUSTOMER),
        wa.button_reply(CUSTOMER, "Yes"),
        wa.list_reply(CUSTOMER, "Express"),
        wa.nfm_reply(CUSTOMER),
        wa.quick_reply_button(CUSTOMER, "Stop promotions"),
        wa.order(CUSTOMER),
        wa.request_welcome(CUSTOMER),
        wa.unsupported(CUSTOMER),
    ]
    [outcome] = deliver(wa.delivery(wa.change(tenant.phone_number_id, messages=sent)))
    assert len(outcome.stored) == len(sent)
    stored = {m["wamid"]: m for m in _messages(engine, tenant)}
    assert set(stored) == {m["id"] for m in sent}
    for message in sent:
        row = stored[message["id"]]
        assert row["raw"] == message
        assert row["type"] == message["type"]
        assert row["direction"] == "inbound" and row["status"] == "received"
        assert row["organization_id"] == tenant.organization_id
        assert row["phone_number_id"] == tenant.phone_number_id
    assert stored[sent[0]["id"]]["raw"]["referral"]["source_type"] == "ad"
    assert stored[sent[0]["id"]]["raw"]["context"]["frequently_forwarded"] is True
    assert stored[sent[1]["id"]]["text"] == "photo"
    assert stored[sent[8]["id"]]["context_wamid"] == sent[8]["context"]["id"]
    assert stored[sent[-1]["id"]]["error_code"] == 131051
    media = rows(
        engine, tenant.organization_id, "SELECT media_id, status, sha256 FROM media ORDER BY media_id"
    )
    assert [m["media_id"] for m in media] == ["aud-1", "doc-1", "img-1", "stk-1", "vid-1"]
    assert all(m["status"] == "pending" for m in media)
    assert sorted(j.kwargs["media_id"] for j in publisher.jobs) == [
        "aud-1",
        "doc-1",
        "img-1",
        "stk-1",
        "vid-1",
    ]
    assert {j.queue for j in publisher.jobs} == {"media"}
    [conversation] = rows(engine, tenant.organization_id, "SELECT * FROM conversations")
    assert conversation["status"] == "open"
    assert conversation["unread_count"] == len(sent)
    assert len({m["conversation_id"] for m in stored.values()}) == 1


@pytest.mark.parametrize("body", wa.TRICKY_TEXTS)
def test_text_is_stored_verbatim(engine: Engine, tenant: Tenant, deliver: Callable, body: str) -> None:
    message = wa.text(CUSTOMER, body)
    deliver(wa.delivery(wa.change(tenant.phone_number_id, messages=[message])))
    [row] = rows(
        engine, tenant.organization_id, "SELECT text, raw FROM messages WHERE wamid = :w", w=message["id"]
    )
    assert row["text"] == body
    assert row["raw"]["text"]["body"] == body


def test_duplicates_are_skipped_whether_redelivered_or_mixed_with_new(
    engine: Engine, tenant: Tenant, deliver: Callable, publisher: RecordingPublisher
) -> None:
    first = [wa.text(CUSTOMER, "one"), wa.media(CUSTOMER, "image", "dup-img")]
    document = wa.delivery(wa.change(tenant.phone_number_id, messages=first))
    deliver(document)
    [again] = deliver(document)
    assert again.stored == [] and again.duplicates == 2
    newer = wa.text(CUSTOMER, "two")
    [mixed] = deliver(wa.delivery(wa.change(tenant.phone_number_id, messages=[first[0], newer, newer])))
    assert [s.wamid for s in mixed.stored] == [newer["id"]]
    assert mixed.duplicates == 2
    assert len(_messages(engine, tenant)) == 3
    assert len(publisher.jobs) == 1  # the media job is not enqueued again
    [conversation] = rows(engine, tenant.organization_id, "SELECT unread_count FROM conversations")
    assert conversation["unread_count"] == 3
    events = rows(
        engine,
        tenant.organization_id,
        "SELECT event_type FROM event_store WHERE event_type = 'message.received'",
    )
    assert len(events) == 3


def test_contact_upsert_and_service_window(engine: Engine, tenant: Tenant, deliver: Callable) -> None:
    deliver(
        wa.delivery(
            wa.change(
                tenant.phone_number_id,
                messages=[wa.text(CUSTOMER, "a", ts="1750000000")],
                contacts=[(CUSTOMER, "Sheena")],
            )
        )
    )
    deliver(
        wa.delivery(
            wa.change(
                tenant.phone_number_id,
                messages=[wa.text(CUSTOMER, "b", ts="1750000100")],
                contacts=[(CUSTOMER, "Sheena Nelson")],
            )
        )
    )
    # An older message arriving late does not move the window back.
    deliver(
        wa.delivery(
            wa.change(
                tenant.phone_number_id,
                messages=[wa.text(CUSTOMER, "c", ts="1749999000")],
                contacts=[(CUSTOMER, "Sheena Nelson")],
            )
        )
    )
    [contact] = rows(engine, tenant.organization_id, "SELECT * FROM contacts")
    assert contact["wa_id"] == CUSTOMER
    assert contact["profile_name"] == "Sheena Nelson"
    assert contact["last_inbound_at"].timestamp() == 1750000100


def test_resolved_conversation_reopens_and_counts_unread(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    deliver(wa.delivery(wa.change(tenant.phone_number_id, messages=[wa.text(CUSTOMER, "hi")])))
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        uow.conn.exec_driver_sql("UPDATE conversations SET status = 'resolved', unread_count = 0")
        uow.commit()
    [outcome] = deliver(
        wa.delivery(
            wa.change(
                tenant.phone_number_id,
                messages=[wa.text(CUSTOMER, "again"), wa.reaction(CUSTOMER, wa.wamid(), "\u2764\ufe0f")],
            )
        )
    )
    assert outcome.conversations_reopened == 1 and outcome.conversations_opened == 0
    [conversation] = rows(engine, tenant.organization_id, "SELECT * FROM conversations")
    assert conversation["status"] == "open"
    assert conversation["unread_count"] == 1  # the reaction is not something to read
    types = {
        r["event_type"] for r in rows(engine, tenant.organization_id, "SELECT event_type FROM event_store")
    }
    assert {"conversation.opened", "conversation.reopened", "message.received", "contact.created"} <= types


def _outbound(engine: Engine, tenant: Tenant, wamid: str) -> None:
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        uow.conn.exec_driver_sql(
            "INSERT INTO messages (organization_id, wamid, direction, type, text, status) "
            "VALUES (%(org)s, %(w)s, 'outbound', 'text', 'our reply', 'sent')",
            {"org": tenant.organization_id, "w": wamid},
        )
        uow.commit()


def test_reactions_replace_and_remove_on_the_target(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    target = wa.wamid()
    _outbound(engine, tenant, target)
    pn = tenant.phone_number_id
    deliver(
        wa.delivery(wa.change(pn, messages=[wa.reaction(CUSTOMER, target, "\U0001f44d", ts="1750000010")]))
    )
    assert (
        rows(
            engine, tenant.organization_id, "SELECT reaction_emoji FROM messages WHERE wamid = :w", w=target
        )[0]["reaction_emoji"]
        == "\U0001f44d"
    )
    deliver(
        wa.delivery(wa.change(pn, messages=[wa.reaction(CUSTOMER, target, "\U0001f602", ts="1750000020")]))
    )
    # An older reaction delivered late does not come back.
    deliver(
        wa.delivery(wa.change(pn, messages=[wa.reaction(CUSTOMER, target, "\U0001f621", ts="1750000015")]))
    )
    [row] = rows(
        engine, tenant.organization_id, "SELECT reaction_emoji FROM messages WHERE wamid = :w", w=target
    )
    assert row["reaction_emoji"] == "\U0001f602"
    deliver(wa.delivery(wa.change(pn, messages=[wa.reaction(CUSTOMER, target, None, ts="1750000030")])))
    [row] = rows(
        engine, tenant.organization_id, "SELECT reaction_emoji FROM messages WHERE wamid = :w", w=target
    )
    assert row["reaction_emoji"] is None
    history = rows(
        engine,
        tenant.organization_id,
        "SELECT text FROM messages WHERE type = 'reaction' AND context_wamid = :w ORDER BY sent_at",
        w=target,
    )
    assert [h["text"] for h in history] == ["\U0001f44d", "\U0001f621", "\U0001f602", None]


@pytest.mark.parametrize("legacy", [False, True])
def test_number_change_rekeys_the_contact(
    engine: Engine, tenant: Tenant, deliver: Callable, legacy: bool
) -> None:
    pn = tenant.phone_number_id
    deliver(wa.delivery(wa.change(pn, messages=[wa.text(CUSTOMER, "old number")])))
    deliver(
        wa.delivery(
            wa.change(pn, messages=[wa.system_changed_number(CUSTOMER, "16505550000", legacy=legacy)])
        )
    )
    deliver(wa.delivery(wa.change(pn, messages=[wa.text("16505550000", "new number")])))
    contacts = rows(engine, tenant.organization_id, "SELECT id, wa_id FROM contacts")
    assert [c["wa_id"] for c in contacts] == ["16505550000"]
    messages = _messages(engine, tenant)
    assert [m["type"] for m in messages] == ["text", "system", "text"]
    assert len({m["contact_id"] for m in messages}) == 1
    assert len({m["conversation_id"] for m in messages}) == 1
    [event] = rows(
        engine,
        tenant.organization_id,
        "SELECT payload FROM event_store WHERE event_type = 'contact.number_changed'",
    )
    assert event["payload"]["mode"] == "rekeyed"


def test_number_change_links_when_the_new_number_wrote_first(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    pn = tenant.phone_number_id
    deliver(wa.delivery(wa.change(pn, messages=[wa.text(CUSTOMER, "old")])))
    deliver(wa.delivery(wa.change(pn, messages=[wa.text("16505557777", "new")])))
    deliver(wa.delivery(wa.change(pn, messages=[wa.system_changed_number(CUSTOMER, "16505557777")])))
    contacts = {c["wa_id"]: c for c in rows(engine, tenant.organization_id, "SELECT * FROM contacts")}
    assert contacts[CUSTOMER]["replaced_by_contact_id"] == contacts["16505557777"]["id"]


def test_two_tenants_in_one_delivery_each_under_its_own_scope(engine: Engine, deliver: Callable) -> None:
    a, b = make_tenant(engine), make_tenant(engine)
    ma, mb = wa.text(CUSTOMER, "to a"), wa.text(CUSTOMER, "to b")
    outcomes = deliver(
        wa.delivery_entries(
            (a.waba_id, [wa.change(a.phone_number_id, messages=[ma])]),
            (b.waba_id, [wa.change(b.phone_number_id, messages=[mb])]),
        )
    )
    assert [o.organization_id for o in outcomes] == [a.organization_id, b.organization_id]
    assert [m["wamid"] for m in _messages(engine, a)] == [ma["id"]]
    assert [m["wamid"] for m in _messages(engine, b)] == [mb["id"]]


def test_unknown_numbers_are_stored_nowhere(engine: Engine, tenant: Tenant, deliver: Callable) -> None:
    stray = wa.text(CUSTOMER, "nobody owns this")
    mine = wa.text(CUSTOMER, "mine")
    outcomes = deliver(
        wa.delivery(
            wa.change("pn-nobody", messages=[stray]), wa.change(tenant.phone_number_id, messages=[mine])
        )
    )
    assert len(outcomes) == 1
    with UnitOfWork(engine, system=True) as uow:
        assert (
            uow.conn.exec_driver_sql(
                "SELECT count(*) FROM messages WHERE wamid = %(w)s", {"w": stray["id"]}
            ).scalar_one()
            == 0
        )


def test_account_fields_are_recorded_once_without_touching_the_inbox(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    document = wa.delivery(wa.template_status_update("order_update"), waba_id=tenant.waba_id)
    deliver(document)
    deliver(document)
    events = rows(engine, tenant.organization_id, "SELECT * FROM webhook_events")
    assert [e["event_type"] for e in events] == ["message_template_status_update"]
    assert events[0]["payload"]["value"]["message_template_name"] == "order_update"
    [stored] = rows(
        engine,
        tenant.organization_id,
        "SELECT * FROM event_store WHERE event_type = 'whatsapp.message_template_status_update'",
    )
    assert stored["aggregate_id"] == tenant.waba_id
    assert rows(engine, tenant.organization_id, "SELECT * FROM messages") == []
    assert rows(engine, tenant.organization_id, "SELECT * FROM conversations") == []


def test_template_status_webhooks_update_the_synced_template(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        uow.conn.exec_driver_sql(
            "INSERT INTO message_templates (organization_id, waba_id, template_id, name, language, status)"
            " VALUES (%(org)s, %(waba)s, '1234567890', 'order_update', 'en_US', 'APPROVED')",
            {"org": tenant.organization_id, "waba": tenant.waba_id},
        )
        uow.commit()
    paused = wa.template_status_update("order_update")
    paused["value"]["event"] = "PAUSED"
    deliver(wa.delivery(paused, waba_id=tenant.waba_id))
    [template] = rows(engine, tenant.organization_id, "SELECT status FROM message_templates")
    assert template["status"] == "PAUSED"


def test_change_level_errors_are_recorded(engine: Engine, tenant: Tenant, deliver: Callable) -> None:
    errors = [
        {
            "code": 131000,
            "title": "Something went wrong",
            "message": "Something went wrong",
            "error_data": {"details": "Unable to deliver"},
        }
    ]
    deliver(wa.delivery(wa.change(tenant.phone_number_id, errors=errors)))
    [event] = rows(
        engine, tenant.organization_id, "SELECT payload FROM event_store WHERE event_type = 'whatsapp.errors'"
    )
    assert event["payload"]["errors"][0]["code"] == 131000
