"""Statuses: kept as events, applied by rank only, parked while their message is unknown."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import Engine

from db.uow import UnitOfWork
from devkit import whatsapp as wa
from devkit.tenants import Tenant, make_tenant
from domain.status import MessageStatus, advances
from tests.support.rows import rows
from workers.inbound.statuses import apply_pending_statuses

pytestmark = pytest.mark.integration


def _outbound(
    engine: Engine, tenant: Tenant, wamid: str, status: str = "sent", *, pending: bool = True
) -> None:
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        uow.conn.exec_driver_sql(
            "INSERT INTO messages (organization_id, wamid, direction, type, text, status) "
            "VALUES (%(org)s, %(w)s, 'outbound', 'text', 'hello', %(s)s)",
            {"org": tenant.organization_id, "w": wamid, "s": status},
        )
        if pending:
            apply_pending_statuses(uow.conn, wamid)
        uow.commit()


def _message(engine: Engine, tenant: Tenant, wamid: str) -> dict:
    [row] = rows(engine, tenant.organization_id, "SELECT * FROM messages WHERE wamid = :w", w=wamid)
    return dict(row)


def _statuses(tenant: Tenant, *items: dict) -> dict:
    return wa.delivery(wa.change(tenant.phone_number_id, statuses=list(items)))


def test_out_of_order_statuses_never_downgrade_and_every_event_is_kept(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    w = wa.wamid()
    _outbound(engine, tenant, w)
    deliver(_statuses(tenant, wa.status(w, "read", ts="1750000030")))
    [outcome] = deliver(_statuses(tenant, wa.status(w, "delivered", ts="1750000020")))
    assert outcome.statuses.stale == 1 and outcome.statuses.applied == 0
    deliver(_statuses(tenant, wa.status(w, "sent", ts="1750000010")))
    row = _message(engine, tenant, w)
    assert row["status"] == "read"
    assert [row[k].timestamp() for k in ("sent_at", "delivered_at", "read_at")] == [
        1750000010,
        1750000020,
        1750000030,
    ]
    events = rows(
        engine,
        tenant.organization_id,
        "SELECT status, applied, pricing, conversation FROM message_status_events",
    )
    assert sorted(e["status"] for e in events) == ["delivered", "read", "sent"]
    assert all(e["applied"] for e in events)
    assert all(e["pricing"]["pricing_model"] == "PMP" for e in events)
    # A redelivery records nothing new.
    [again] = deliver(_statuses(tenant, wa.status(w, "sent", ts="1750000010")))
    assert again.statuses.recorded == 0


def test_failed_wins_over_delivered_with_its_error(engine: Engine, tenant: Tenant, deliver: Callable) -> None:
    w = wa.wamid()
    _outbound(engine, tenant, w)
    deliver(
        _statuses(
            tenant,
            wa.status(w, "delivered", ts="1750000001"),
            wa.status(w, "failed", ts="1750000002", error=(131026, "Message undeliverable")),
        )
    )
    row = _message(engine, tenant, w)
    assert (row["status"], row["error_code"], row["error_title"]) == (
        "failed",
        131026,
        "Message undeliverable",
    )
    assert row["error_details"] == "Message undeliverable (details)"
    [event] = rows(
        engine, tenant.organization_id, "SELECT errors FROM message_status_events WHERE status = 'failed'"
    )
    assert event["errors"][0]["code"] == 131026


def test_played_counts_as_read(engine: Engine, tenant: Tenant, deliver: Callable) -> None:
    w = wa.wamid()
    _outbound(engine, tenant, w)
    deliver(_statuses(tenant, wa.status(w, "played")))
    assert _message(engine, tenant, w)["status"] == "read"


def test_status_before_its_message_is_applied_when_the_message_appears(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    w = wa.wamid()
    [outcome] = deliver(
        _statuses(tenant, wa.status(w, "delivered", ts="1750000005"), wa.status(w, "sent", ts="1750000004"))
    )
    assert outcome.statuses.pending == 2
    assert all(
        not e["applied"]
        for e in rows(engine, tenant.organization_id, "SELECT applied FROM message_status_events")
    )
    target_reaction = wa.reaction("16505551234", w, "\U0001f64f")
    deliver(wa.delivery(wa.change(tenant.phone_number_id, messages=[target_reaction])))
    _outbound(engine, tenant, w, status="sending")
    row = _message(engine, tenant, w)
    assert row["status"] == "delivered"
    assert row["sent_at"].timestamp() == 1750000004
    assert row["reaction_emoji"] == "\U0001f64f"
    events = rows(engine, tenant.organization_id, "SELECT applied, message_id FROM message_status_events")
    assert all(e["applied"] and e["message_id"] == row["id"] for e in events)


def test_pending_status_and_send_path_racing_never_lose_the_status(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    for _ in range(10):
        w = wa.wamid()
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def webhook() -> None:
            try:
                barrier.wait()
                deliver(_statuses(tenant, wa.status(w, "read")))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=webhook)
        thread.start()
        barrier.wait()
        _outbound(engine, tenant, w)
        thread.join(10)
        assert not errors
        assert _message(engine, tenant, w)["status"] == "read"


STATUSES = ["queued", "sending", "sent", "delivered", "read", "failed"]


def test_sql_rank_rule_matches_the_domain_rule(engine: Engine, tenant: Tenant, deliver: Callable) -> None:
    webhook_statuses = ["sent", "delivered", "read", "failed"]
    for current, incoming in itertools.product(STATUSES, webhook_statuses):
        w = wa.wamid()
        _outbound(engine, tenant, w, status=current, pending=False)
        deliver(
            _statuses(tenant, wa.status(w, incoming, error=(131026, "x") if incoming == "failed" else None))
        )
        expected = incoming if advances(MessageStatus(current), MessageStatus(incoming)) else current
        assert _message(engine, tenant, w)["status"] == expected, (current, incoming)


def _ambiguous(engine: Engine, tenant: Tenant, status: str = "ambiguous") -> str:
    """An outbound send whose call timed out: no wamid, Meta's outcome unknown."""
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        message_id = uow.conn.exec_driver_sql(
            "INSERT INTO messages (organization_id, direction, type, text, status, attempts, error_title) "
            "VALUES (%(org)s, 'outbound', 'text', 'hello', %(s)s, 1, 'outcome unknown') RETURNING id",
            {"org": tenant.organization_id, "s": status},
        ).scalar_one()
        uow.commit()
    return str(message_id)


def _naming(item: dict, marker: str) -> dict:
    return {**item, "biz_opaque_callback_data": marker}


def test_a_status_naming_an_ambiguous_send_settles_it_with_the_wamid(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    message_id = _ambiguous(engine, tenant)
    w = wa.wamid()
    [outcome] = deliver(_statuses(tenant, _naming(wa.status(w, "delivered", ts="1750000020"), message_id)))
    assert outcome.statuses.reconciled == 1 and outcome.statuses.applied == 1
    assert outcome.statuses.pending == 0
    row = _message(engine, tenant, w)
    assert str(row["id"]) == message_id
    assert (row["status"], row["error_title"]) == ("delivered", None)
    assert row["delivered_at"].timestamp() == 1750000020
    [event] = rows(engine, tenant.organization_id, "SELECT message_id, applied FROM message_status_events")
    assert str(event["message_id"]) == message_id and event["applied"]
    # Later statuses find the message by its wamid like any other.
    [later] = deliver(_statuses(tenant, _naming(wa.status(w, "read", ts="1750000030"), message_id)))
    assert later.statuses.reconciled == 0 and later.statuses.applied == 1
    assert _message(engine, tenant, w)["status"] == "read"


@pytest.mark.parametrize("state", ["sending", "failed"])
def test_only_an_ambiguous_send_adopts_a_wamid(
    engine: Engine, tenant: Tenant, deliver: Callable, state: str
) -> None:
    # A send still `sending` records its own wamid when its call returns (the status is parked
    # for it meanwhile); a settled one is not rewritten.
    message_id = _ambiguous(engine, tenant, state)
    w = wa.wamid()
    [outcome] = deliver(_statuses(tenant, _naming(wa.status(w, "delivered"), message_id)))
    assert (outcome.statuses.reconciled, outcome.statuses.pending) == (0, 1)
    [row] = rows(
        engine, tenant.organization_id, "SELECT wamid, status FROM messages WHERE id = :i", i=message_id
    )
    assert (row["wamid"], row["status"]) == (None, state)


@pytest.mark.parametrize("marker", ["campaign-42", "00000000-0000-4000-8000-000000000000"])
def test_a_marker_that_names_no_ambiguous_send_of_ours_parks_the_status(
    engine: Engine, tenant: Tenant, deliver: Callable, marker: str
) -> None:
    _ambiguous(engine, tenant)
    w = wa.wamid()
    [outcome] = deliver(_statuses(tenant, _naming(wa.status(w, "sent"), marker)))
    assert (outcome.statuses.reconciled, outcome.statuses.pending) == (0, 1)


def test_another_tenants_ambiguous_send_is_out_of_reach(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    other = make_tenant(engine)
    message_id = _ambiguous(engine, other)
    w = wa.wamid()
    [outcome] = deliver(_statuses(tenant, _naming(wa.status(w, "delivered"), message_id)))
    assert (outcome.statuses.reconciled, outcome.statuses.pending) == (0, 1)
    [row] = rows(
        engine, other.organization_id, "SELECT wamid, status FROM messages WHERE id = :i", i=message_id
    )
    assert (row["wamid"], row["status"]) == (None, "ambiguous")


def _lag_histogram() -> tuple[float, float]:
    count = REGISTRY.get_sample_value("adsapp_inbound_status_lag_seconds_count") or 0.0
    total = REGISTRY.get_sample_value("adsapp_inbound_status_lag_seconds_sum") or 0.0
    return count, total


def test_status_lag_is_observed_from_metas_timestamp_once_per_new_event(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    w = wa.wamid()
    _outbound(engine, tenant, w)
    count, total = _lag_histogram()
    at_meta = int(time.time()) - 90
    before = time.time()
    deliver(_statuses(tenant, wa.status(w, "delivered", ts=str(at_meta))))
    after = time.time()
    new_count, new_total = _lag_histogram()
    assert new_count == count + 1
    assert before - at_meta <= new_total - total <= after - at_meta
    # Meta delivering the same status again is not lag: nothing more is observed.
    deliver(_statuses(tenant, wa.status(w, "delivered", ts=str(at_meta))))
    assert _lag_histogram() == (new_count, new_total)


def test_deliveries_with_the_same_messages_statuses_in_opposite_orders_never_deadlock(
    engine: Engine, tenant: Tenant, deliver: Callable
) -> None:
    # A status flood (every message of a broadcast delivered, then read) reaches several workers at
    # once, each delivery listing the same messages in its own order: each transaction must take
    # its locks in one order, or two of them wait on each other until Postgres kills one.
    wamids = [wa.wamid() for _ in range(60)]
    for w in wamids:
        _outbound(engine, tenant, w, pending=False)
    failures: list[BaseException] = []

    def flood(order: list[str], status: str, ts: str) -> None:
        try:
            deliver(_statuses(tenant, *(wa.status(w, status, ts=ts) for w in order)))
        except BaseException as exc:
            failures.append(exc)

    for round_, status in enumerate(["delivered", "read", "delivered", "read"]):
        threads = [
            threading.Thread(target=flood, args=(order, status, str(1750000100 + 10 * round_ + i)))
            for i, order in enumerate([wamids, wamids[::-1], wamids[30:] + wamids[:30]])
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    assert {_message(engine, tenant, w)["status"] for w in wamids} == {"read"}
