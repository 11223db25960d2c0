"""What an operator key sees and does in the console, over HTTP: every tenant, the queues, and
dead-letter actions recorded with who did them."""

from __future__ import annotations

import re
import time
import uuid
from typing import NoReturn

import pytest
import sqlalchemy as sa
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from db.tables import dead_letters, event_store
from db.uow import UnitOfWork
from devkit.tenants import Tenant, make_tenant
from services import fleet_counters, queue_traffic, webhook_answers
from services.fleet_counters import FleetCounters
from tests.integration.console.test_console_deadletters_browser import _letter
from tests.support.console import ConsoleSetup, hidden, operator_key, sign_in


def _status(engine: Engine, queue: str) -> list[str]:
    with UnitOfWork(engine, system=True) as uow:
        return list(uow.conn.execute(
            sa.select(dead_letters.c.status).where(dead_letters.c.queue == queue).order_by(dead_letters.c.status)
        ).scalars())  # fmt: skip


def test_an_operator_sees_every_tenant_and_the_queues(
    client: TestClient, tenant: Tenant, engine: Engine
) -> None:
    other = make_tenant(engine)
    queue = f"console_{uuid.uuid4().hex[:8]}"
    _letter(engine, tenant, queue, "first tenant's failure")
    _letter(engine, other, queue, "second tenant's failure")
    sign_in(client, operator_key(tenant))
    numbers = client.get("/console/numbers").text
    assert tenant.number in numbers and other.number in numbers
    letters = client.get(f"/console/dead-letters?queue={queue}").text
    assert "first tenant&#39;s failure" in letters and "second tenant&#39;s failure" in letters
    narrowed = client.get(f"/console/dead-letters?queue={queue}&organization_id={other.organization_id}").text
    assert "second tenant&#39;s failure" in narrowed and "first tenant&#39;s failure" not in narrowed
    overview = client.get("/console/").text
    assert 'data-testid="queues"' in overview and "<td>outbound" in overview


def test_the_queues_and_webhook_answers_are_not_shown_to_a_tenant(client: TestClient, tenant: Tenant) -> None:
    sign_in(client, tenant.api_key())
    overview = client.get("/console/").text
    assert 'data-testid="queues"' not in overview and 'data-testid="webhook-answers"' not in overview


def test_an_operator_sees_every_web_process_webhook_answers_and_queue_rates(
    client: TestClient, tenant: Tenant, setup: ConsoleSetup, redis_client: Redis
) -> None:
    namespace = setup.options.counters_namespace
    # Two web processes answering, and a worker's counts: seconds 5 to 3 ago, inside the rate window.
    first, second = (FleetCounters(redis_client, namespace, clock=lambda: time.time() - 4) for _ in "ab")
    for _ in range(3):
        webhook_answers.count_answer(first, "whatsapp", 503)
    for _ in range(7):
        webhook_answers.count_answer(second, "whatsapp", 200)
        queue_traffic.count_in(second, "inbound")
    webhook_answers.count_answer(second, "stripe", 200)
    queue_traffic.count_out(first, "inbound", 5)
    first.close()
    second.close()
    sign_in(client, operator_key(tenant))
    page = client.get("/console/").text
    answers = re.search(r'data-testid="webhook-answers">(.*?)</p>', page, re.S).group(1)
    assert 'data-testid="answers-per-minute">11/min<' in answers
    assert 'class="bad">5xx 3<' in answers
    assert "whatsapp: 2xx 7 · 5xx 3" in answers and "stripe: 2xx 1" in answers
    inbound = re.search(r'data-testid="queue-inbound">(.*?)</tr>', page, re.S).group(1)
    assert 'data-testid="rate-in">0.7<' in inbound and 'data-testid="rate-out">0.5<' in inbound
    outbound = re.search(r'data-testid="queue-outbound">(.*?)</tr>', page, re.S).group(1)
    assert 'data-testid="rate-in">0.0<' in outbound


def test_unknown_figures_are_dashes_when_redis_cannot_be_read(
    client: TestClient, tenant: Tenant, setup: ConsoleSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(client, operator_key(tenant))

    def unreachable(*args: object, **kwargs: object) -> NoReturn:
        raise RedisConnectionError("redis down")

    monkeypatch.setattr(fleet_counters, "totals", unreachable)
    page = client.get("/console/").text
    inbound = re.search(r'data-testid="queue-inbound">(.*?)</tr>', page, re.S).group(1)
    assert 'data-testid="rate-in">—<' in inbound and 'data-testid="rate-out">—<' in inbound
    assert re.search(r'data-testid="webhook-answers">.*?<small>—</small>', page, re.S)
    numbers = client.get("/console/numbers").text
    assert re.search(rf'id="n-{tenant.number}".*?data-testid="deferrals"[^>]*>\s*—', numbers, re.S)


def test_discard_the_filtered_set_after_its_preview(
    client: TestClient, tenant: Tenant, engine: Engine
) -> None:
    queue = f"console_{uuid.uuid4().hex[:8]}"
    for i in range(3):
        _letter(engine, tenant, queue, f"failure {i}")
    sign_in(client, tenant.api_key())
    preview = client.get(f"/console/dead-letters/preview/discard?queue={queue}").text
    assert re.search(r'data-testid="preview-count">3<', preview)
    form = {name: hidden(preview, name) for name in ("csrf_token", "queue", "status", "preview_id")}
    answer = client.post("/console/dead-letters/discard", data=form)
    assert answer.status_code == 303
    assert "3 dead letters discarded." in client.get(answer.headers["location"]).text
    assert _status(engine, queue) == ["discarded"] * 3
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        payload = uow.conn.execute(
            sa.select(event_store.c.payload).where(event_store.c.event_type == "dead_letter.discard_filtered")
        ).scalar_one()
    assert payload["discarded"] == 3 and payload["filter"]["queue"] == queue


def test_retry_one_from_its_detail_page(client: TestClient, tenant: Tenant, engine: Engine) -> None:
    queue = f"console_{uuid.uuid4().hex[:8]}"
    _letter(engine, tenant, queue, "retry me")
    csrf = sign_in(client, tenant.api_key())
    listing = client.get(f"/console/dead-letters?queue={queue}").text
    letter_id = re.search(r'/console/dead-letters/([0-9a-f-]{36})"', listing).group(1)
    assert "Retry now" in client.get(f"/console/dead-letters/{letter_id}").text
    answer = client.post(f"/console/dead-letters/{letter_id}/retry", data={"csrf_token": csrf})
    assert answer.status_code == 303
    assert _status(engine, queue) == ["retried"]
    again = client.post(f"/console/dead-letters/{letter_id}/retry", data={"csrf_token": csrf})
    assert again.status_code == 409 and "nothing was retried" in again.text


def test_bad_filters_are_refused_clearly(client: TestClient, tenant: Tenant) -> None:
    sign_in(client, tenant.api_key())
    answer = client.get("/console/dead-letters?since=yesterday")
    assert answer.status_code == 400 and "since is not a date and time" in answer.text
    assert client.get("/console/dead-letters?status=zombie").status_code == 400
    assert client.get("/console/dead-letters/not-a-uuid").status_code == 404
