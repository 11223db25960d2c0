"""An operator's overview in the browser: the queues with their rates, webhook answers, an open
breaker, dead letters (screenshot); pacing deferrals on the numbers page."""

from __future__ import annotations

import time
import uuid

from playwright.sync_api import Page, expect
from redis import Redis
from sqlalchemy.engine import Engine

from devkit.tenants import Tenant, make_tenant
from services import deferrals, queue_traffic, webhook_answers
from services.fleet_counters import FleetCounters
from tests.integration.console.test_console_browser import _open_breaker
from tests.integration.console.test_console_deadletters_browser import _letter
from tests.support.console import ConsoleSetup, Served, browser_sign_in, operator_key, screenshot


def test_an_operator_overview_shows_the_fleet(
    page: Page, served: Served, tenant: Tenant, engine: Engine, redis_client: Redis, setup: ConsoleSetup
) -> None:
    other = make_tenant(engine)
    _open_breaker(redis_client, setup, other.number)
    _letter(engine, other, f"console_{uuid.uuid4().hex[:8]}", "template paused by Meta")
    browser_sign_in(page, served.url, operator_key(tenant))
    expect(page.locator(".badge")).to_have_text("operator")
    # What the fleet's processes count, seen by the overview's next refresh (a few seconds ago:
    # inside the 10 s rate window).
    counts = FleetCounters(redis_client, setup.options.counters_namespace, clock=lambda: time.time() - 4)
    queue_traffic.count_in(counts, "outbound", 45)
    queue_traffic.count_out(counts, "outbound", 30)
    for status in (200,) * 8 + (503,) * 2:
        webhook_answers.count_answer(counts, "whatsapp", status)
    for _ in range(4):
        deferrals.count_deferral(counts, other.number, "throughput")
    counts.close()
    queues = page.get_by_test_id("queues")
    for queue in ("inbound", "media", "outbound", "billing"):
        expect(queues).to_contain_text(queue)
    expect(page.locator("#overview").get_by_role("link", name="15550000000").first).to_be_visible()
    assert int(page.get_by_test_id("dead-count").inner_text()) >= 1
    outbound = page.get_by_test_id("queue-outbound")
    expect(outbound.get_by_test_id("rate-in")).to_have_text("4.5")
    expect(outbound.get_by_test_id("rate-out")).to_have_text("3.0")
    expect(page.get_by_test_id("answers-per-minute")).to_have_text("10/min")
    expect(page.get_by_test_id("answers-5xx")).to_have_text("5xx 2")
    screenshot(page, "overview")
    page.get_by_role("link", name="Numbers").click()
    row = page.locator(f"#n-{other.number}")
    expect(row.get_by_test_id("deferrals-minute")).to_have_text("4")
    expect(row.get_by_test_id("deferrals-hour")).to_have_text("4")
