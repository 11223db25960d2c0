"""An operator's overview in the browser: the queues, an open breaker, dead letters (screenshot)."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect
from redis import Redis
from sqlalchemy.engine import Engine

from devkit.tenants import Tenant, make_tenant
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
    queues = page.get_by_test_id("queues")
    for queue in ("inbound", "media", "outbound", "billing"):
        expect(queues).to_contain_text(queue)
    expect(page.locator("#overview").get_by_role("link", name="15550000000").first).to_be_visible()
    assert int(page.get_by_test_id("dead-count").inner_text()) >= 1
    screenshot(page, "overview")
