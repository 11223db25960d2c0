"""One malformed change, or one malformed message, is stored raw with its reason and counted; the
rest of the same delivery is stored as if it were not there."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from db.uow import UnitOfWork
from devkit import whatsapp as wa
from devkit.tenants import Tenant, make_tenant
from tests.support.rows import rows

pytestmark = pytest.mark.integration

CUSTOMER = "16505550122"


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _wamids(engine: Engine, tenant: Tenant) -> set[str]:
    return {m["wamid"] for m in rows(engine, tenant.organization_id, "SELECT wamid FROM messages")}


def test_one_malformed_change_does_not_block_the_others(engine: Engine, deliver: Callable[..., Any]) -> None:
    a, b = make_tenant(engine), make_tenant(engine)
    a_text, a_image = wa.text(CUSTOMER, "from A"), wa.media(CUSTOMER, "image", f"img-{uuid.uuid4().hex[:6]}")
    b_text = wa.text(CUSTOMER, "from B")
    b_bad_image = wa.media(CUSTOMER, "image", "x")
    del b_bad_image["image"]["id"]  # an image without id: nothing can fetch it
    b_bad_status = {"id": "wamid.nothing", "timestamp": "1"}  # no status
    broken = {
        "field": "messages",
        "value": {"messaging_product": "whatsapp", "messages": "nope", "marker": uuid.uuid4().hex},
    }
    before_msg = _metric("adsapp_inbound_unparseable_items_total", kind="message")
    before_change = _metric("adsapp_inbound_unparseable_items_total", kind="change")

    outcomes = deliver(
        wa.delivery_entries(
            (a.waba_id, [broken, wa.change(a.phone_number_id, messages=[a_text, a_image])]),
            (
                b.waba_id,
                [wa.change(b.phone_number_id, messages=[b_bad_image, b_text], statuses=[b_bad_status])],
            ),
        )
    )

    assert [o.organization_id for o in outcomes] == [a.organization_id, b.organization_id]
    assert _wamids(engine, a) == {a_text["id"], a_image["id"]}
    assert _wamids(engine, b) == {b_text["id"]}
    assert len(rows(engine, a.organization_id, "SELECT id FROM media")) == 1
    kept = rows(
        engine,
        b.organization_id,
        "SELECT event_type, outcome, payload FROM webhook_events WHERE outcome = 'unparseable' ORDER BY event_type",
    )
    assert [(k["event_type"], k["payload"]["raw"]) for k in kept] == [
        ("messages.unparseable_message", b_bad_image),
        ("messages.unparseable_status", b_bad_status),
    ]
    assert "image.id" in kept[0]["payload"]["reason"] and "status" in kept[1]["payload"]["reason"]
    with UnitOfWork(engine, system=True) as uow:
        [parked] = uow.conn.execute(
            sa.text(
                "SELECT reason, detail, change FROM parked_changes WHERE change->'value'->>'marker' = :m"
            ),
            {"m": broken["value"]["marker"]},
        ).mappings()
    assert parked["reason"] == "unparseable" and "phone_number_id is missing" in parked["detail"]
    assert parked["change"] == broken
    assert _metric("adsapp_inbound_unparseable_items_total", kind="message") == before_msg + 1
    assert _metric("adsapp_inbound_unparseable_items_total", kind="change") == before_change + 1

    # Meta redelivers the same body: nothing new is stored, nothing is recorded twice.
    again = deliver(
        wa.delivery_entries(
            (a.waba_id, [broken, wa.change(a.phone_number_id, messages=[a_text, a_image])]),
            (
                b.waba_id,
                [wa.change(b.phone_number_id, messages=[b_bad_image, b_text], statuses=[b_bad_status])],
            ),
        )
    )
    assert [o.stored for o in again] == [[], []]
    assert (
        len(rows(engine, b.organization_id, "SELECT id FROM webhook_events WHERE outcome = 'unparseable'"))
        == 2
    )


def test_a_change_its_database_refuses_is_parked_and_the_next_is_stored(
    engine: Engine, deliver: Callable[..., Any]
) -> None:
    a, b = make_tenant(engine), make_tenant(engine)
    # A timestamp Postgres cannot hold (year ~ 300 million): refused for good, not worth a retry.
    absurd = wa.text(CUSTOMER, "from the far future", ts=str(10**16))
    fine = wa.text(CUSTOMER, "ordinary")
    outcomes = deliver(
        wa.delivery_entries(
            (a.waba_id, [wa.change(a.phone_number_id, messages=[absurd])]),
            (b.waba_id, [wa.change(b.phone_number_id, messages=[fine])]),
        )
    )
    assert [o.organization_id for o in outcomes] == [b.organization_id]
    assert _wamids(engine, b) == {fine["id"]}
    with UnitOfWork(engine, system=True) as uow:
        [parked] = uow.conn.execute(
            sa.text("SELECT reason FROM parked_changes WHERE phone_number_id = :p"), {"p": a.phone_number_id}
        ).mappings()
    assert parked["reason"] == "unstorable"
