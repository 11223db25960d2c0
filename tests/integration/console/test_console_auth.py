"""Sign-in, the session cookie, CSRF and tenant isolation of the console, over HTTP."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa
from redis import Redis
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from db.tables import api_keys, contacts, event_store, messages
from db.uow import UnitOfWork
from devkit.tenants import Tenant, make_tenant, recipient
from domain.deadletters import DeadLetterFilter, Scope
from ingress.console.session import COOKIE
from services import breaker_keys, deadletters, deferrals, webhook_answers
from services.fleet_counters import FleetCounters
from tests.integration.console.test_console_deadletters_browser import _letter
from tests.support.bulk import set_messaging_limit
from tests.support.console import ConsoleSetup, hidden, sign_in


def test_pages_need_a_session(client: TestClient) -> None:
    answer = client.get("/console/numbers")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login?next=%2Fconsole%2Fnumbers"


def test_a_wrong_key_is_refused_and_sets_no_session(client: TestClient) -> None:
    form = client.get("/console/login")
    answer = client.post(
        "/console/login", data={"csrf_token": hidden(form.text, "csrf_token"), "api_key": "adsk_nope"}
    )
    assert answer.status_code == 401
    assert "not valid" in answer.text.lower() or "invalid" in answer.text.lower()
    assert COOKIE not in answer.cookies


def test_the_session_cookie_is_signed_httponly_samesite_and_expiring(
    client: TestClient, tenant: Tenant
) -> None:
    key = tenant.api_key()
    form = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"csrf_token": hidden(form.text, "csrf_token"), "api_key": key, "next": "/console/numbers"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/numbers"
    header = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(COOKIE))
    attributes = header.lower()
    assert "httponly" in attributes and "samesite=strict" in attributes and "max-age=28800" in attributes
    assert key not in header
    # A tampered cookie is no session.
    value = answer.cookies[COOKIE]
    client.cookies.set(COOKIE, value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/console")
    assert client.get("/console/").status_code == 303


def test_sign_in_refuses_a_form_not_from_the_console(client: TestClient, tenant: Tenant) -> None:
    answer = client.post("/console/login", data={"api_key": tenant.api_key(), "csrf_token": "forged"})
    assert answer.status_code == 403
    assert COOKIE not in answer.cookies


def test_a_revoked_key_ends_its_sessions(client: TestClient, tenant: Tenant) -> None:
    key = tenant.api_key()
    sign_in(client, key)
    assert client.get("/console/").status_code == 200
    tenant.revoke(key)
    assert client.get("/console/").status_code == 303


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, tenant: Tenant, redis_client: Redis, setup: ConsoleSetup, engine: Engine
) -> None:
    sign_in(client, tenant.api_key())
    prefix = breaker_keys.scope_prefix(
        setup.options.breaker_namespace, breaker_keys.number_label(tenant.number)
    )
    redis_client.set(breaker_keys.pybreaker_key(prefix, "state"), "open")
    url = f"/console/numbers/{tenant.number}/breaker/reset"
    assert client.post(url).status_code == 403
    assert client.post(url, data={"csrf_token": "wrong"}).status_code == 403
    assert redis_client.get(breaker_keys.pybreaker_key(prefix, "state")) == b"open"
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        assert (
            uow.conn.execute(
                sa.select(sa.func.count())
                .select_from(event_store)
                .where(event_store.c.event_type == "breaker.reset")
            ).scalar_one()
            == 0
        )


def test_a_breaker_reset_closes_it_and_is_recorded_with_who_did_it(
    client: TestClient, tenant: Tenant, redis_client: Redis, setup: ConsoleSetup, engine: Engine
) -> None:
    key = tenant.api_key()
    csrf = sign_in(client, key)
    prefix = breaker_keys.scope_prefix(
        setup.options.breaker_namespace, breaker_keys.number_label(tenant.number)
    )
    redis_client.mset({breaker_keys.pybreaker_key(prefix, "state"): "open",
                       breaker_keys.pybreaker_key(prefix, "fail_counter"): 5})  # fmt: skip
    assert ">open<" in client.get("/console/numbers").text
    answer = client.post(f"/console/numbers/{tenant.number}/breaker/reset", data={"csrf_token": csrf})
    assert answer.status_code == 303
    assert redis_client.get(breaker_keys.pybreaker_key(prefix, "state")) == b"closed"
    page = client.get(answer.headers["location"]).text
    assert f"Breaker of {tenant.number} reset." in page and ">closed<" in page
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        row = uow.conn.execute(
            sa.select(event_store.c.aggregate_id, event_store.c.payload).where(
                event_store.c.event_type == "breaker.reset"
            )
        ).one()
    assert row.aggregate_id == tenant.number
    assert row.payload["actor"]["key_id"] == tenant.keys[key]
    assert row.payload["actor"]["via"] == "console"
    assert row.payload["previous_state"] == "open"


def test_a_tenant_sees_and_resets_only_its_own_numbers(
    client: TestClient, tenant: Tenant, engine: Engine
) -> None:
    other = make_tenant(engine)
    csrf = sign_in(client, tenant.api_key())
    page = client.get("/console/numbers").text
    assert tenant.number in page
    assert other.number not in page
    answer = client.post(f"/console/numbers/{other.number}/breaker/reset", data={"csrf_token": csrf})
    assert answer.status_code == 404


def test_pages_carry_protective_headers(client: TestClient, tenant: Tenant) -> None:
    sign_in(client, tenant.api_key())
    answer = client.get("/console/")
    assert answer.status_code == 200
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"


def test_a_forged_notice_is_not_shown(client: TestClient, tenant: Tenant) -> None:
    sign_in(client, tenant.api_key())
    assert "Call this number" not in client.get("/console/numbers?notice=Call+this+number").text


def test_signing_in_and_out_is_recorded_and_ends_the_session(
    client: TestClient, tenant: Tenant, engine: Engine
) -> None:
    key = tenant.api_key()
    csrf = sign_in(client, key)
    answer = client.post("/console/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    assert client.get("/console/").status_code == 303
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        events = uow.conn.execute(
            sa.select(event_store.c.event_type).where(event_store.c.aggregate_id == tenant.keys[key])
            .order_by(event_store.c.id)
        ).scalars().all()  # fmt: skip
    assert events == ["console.sign_in", "console.sign_out"]


def test_a_key_made_operator_after_sign_in_must_sign_in_again(
    client: TestClient, tenant: Tenant, engine: Engine
) -> None:
    key = tenant.api_key()
    sign_in(client, key)
    tenant.execute(sa.update(api_keys).where(api_keys.c.id == tenant.keys[key]).values(operator=True))
    assert client.get("/console/").status_code == 303


def test_numbers_show_send_rate_backlog_messaging_limit_use_and_pacing_deferrals(
    client: TestClient, tenant: Tenant, engine: Engine, setup: ConsoleSetup, redis_client: Redis
) -> None:
    set_messaging_limit(tenant, 250)
    other = make_tenant(engine)
    # Two worker processes' counts, and one deferral that is not pacing's.
    for reasons in (["throughput"] * 3 + ["circuit_open"], ["pair_rate"] * 2):
        counters = FleetCounters(redis_client, setup.options.counters_namespace)
        for reason in reasons:
            deferrals.count_deferral(counters, tenant.number, reason)
        deferrals.count_deferral(counters, other.number, "throughput")
        counters.close()
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        for i in range(6):
            contact_id = uow.conn.execute(
                sa.insert(contacts).values(organization_id=tenant.organization_id, wa_id=recipient())
                .returning(contacts.c.id)
            ).scalar_one()  # fmt: skip
            uow.conn.execute(sa.insert(messages).values(
                organization_id=tenant.organization_id, contact_id=contact_id, phone_number_id=tenant.number,
                direction="outbound", type="text", status="sent" if i < 5 else "queued",
                sent_at=sa.func.now() if i < 5 else None,
            ))  # fmt: skip
        uow.commit()
    sign_in(client, tenant.api_key())
    row = re.search(rf'id="n-{tenant.number}".*?</tr>', client.get("/console/numbers").text, re.S).group(0)
    cells = [
        re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r'<td class="num"[^>]*>(.*?)</td>', row, re.S)
    ]
    assert cells[:4] == ["80", "0.1", "1", "6 / 250 (2 %)"]
    assert re.sub(r"\s+", " ", cells[4]) == "5 / 5 pair rate 2 · throughput 3"  # the last hour's, by reason


def test_the_live_fragments_keep_to_the_tenants_scope(
    client: TestClient, tenant: Tenant, engine: Engine, setup: ConsoleSetup, redis_client: Redis
) -> None:
    other = make_tenant(engine)
    queue = f"console_{uuid.uuid4().hex[:8]}"
    _letter(engine, other, queue, "theirs")
    task = deadletters.start_redrive(
        engine, Scope.tenant(other.organization_id), DeadLetterFilter(queue=queue)
    ).redrive
    counts = FleetCounters(redis_client, setup.options.counters_namespace)
    webhook_answers.count_answer(counts, "whatsapp", 503)
    deferrals.count_deferral(counts, other.number, "throughput")
    counts.close()
    sign_in(client, tenant.api_key())
    fragment = client.get("/console/fragments/overview")
    assert fragment.status_code == 200
    html = fragment.text
    # No other tenant's numbers or organization; none of the fleet's own figures either.
    assert other.number not in html and str(other.organization_id) not in html
    assert 'data-testid="queues"' not in html and 'data-testid="webhook-answers"' not in html
    assert client.get(f"/console/fragments/redrives/{task.id}").status_code == 404
    assert client.get(f"/console/dead-letters/redrives/{task.id}").status_code == 404
    assert other.number not in client.get("/console/numbers").text
