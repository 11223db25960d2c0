"""The console in headless Chromium: signing in, numbers and breakers, tenant isolation, CSRF, layout."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect
from redis import Redis
from sqlalchemy.engine import Engine

from devkit.tenants import Tenant, make_tenant
from services import breaker_keys
from tests.support.console import ConsoleSetup, Served, browser_sign_in


def _open_breaker(redis: Redis, setup: ConsoleSetup, phone_number_id: str) -> str:
    prefix = breaker_keys.scope_prefix(
        setup.options.breaker_namespace, breaker_keys.number_label(phone_number_id)
    )
    redis.mset({breaker_keys.pybreaker_key(prefix, "state"): "open",
                breaker_keys.pybreaker_key(prefix, "fail_counter"): 5})  # fmt: skip
    return breaker_keys.pybreaker_key(prefix, "state")


def test_sign_in_by_keyboard_and_see_the_overview(page: Page, served: Served, tenant: Tenant) -> None:
    page.goto(f"{served.url}/console/")
    assert "/console/login" in page.url
    page.keyboard.type(tenant.api_key())  # the key field has the focus on arrival
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()


def test_reset_a_breaker(
    page: Page, served: Served, tenant: Tenant, redis_client: Redis, setup: ConsoleSetup
) -> None:
    state_key = _open_breaker(redis_client, setup, tenant.number)
    browser_sign_in(page, served.url, tenant.api_key())
    # The overview lists the open breaker, linking to its number.
    expect(page.get_by_role("link", name="15550000000")).to_be_visible()
    page.get_by_role("link", name="Numbers").click()
    row = page.locator(f"#n-{tenant.number}")
    expect(row.get_by_test_id("breaker-state")).to_have_text("open")
    row.get_by_role("button", name="Reset breaker").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text(f"Breaker of {tenant.number} reset.")
    expect(page.locator(f"#n-{tenant.number}").get_by_test_id("breaker-state")).to_have_text("closed")
    assert redis_client.get(state_key) == b"closed"


def test_a_tenant_key_sees_no_other_tenants_rows(page: Page, served: Served, tenant: Tenant, engine: Engine,
                                                 redis_client: Redis, setup: ConsoleSetup) -> None:  # fmt: skip
    other = make_tenant(engine, numbers=2)
    for number in other.numbers:
        _open_breaker(redis_client, setup, number)
    browser_sign_in(page, served.url, tenant.api_key())
    overview = page.content()
    assert all(number not in overview for number in other.numbers)
    page.get_by_role("link", name="Numbers").click()
    rows = page.get_by_test_id("number-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(tenant.number)
    html = page.content()
    assert all(number not in html for number in other.numbers)
    assert str(other.organization_id) not in html


def test_a_form_post_without_the_csrf_token_is_refused(
    page: Page, served: Served, tenant: Tenant, redis_client: Redis, setup: ConsoleSetup
) -> None:
    state_key = _open_breaker(redis_client, setup, tenant.number)
    browser_sign_in(page, served.url, tenant.api_key())
    page.goto(f"{served.url}/console/numbers")
    form = page.locator(f"#n-{tenant.number} form")
    form.locator("input[name=csrf_token]").evaluate("input => input.remove()")
    form.get_by_role("button", name="Reset breaker").click()
    expect(page.get_by_role("alert")).to_contain_text("security token")
    assert redis_client.get(state_key) == b"open"


def test_readable_at_phone_width(page: Page, served: Served, tenant: Tenant) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    browser_sign_in(page, served.url, tenant.api_key())
    for path in ("/console/", "/console/numbers", "/console/dead-letters", "/console/dead-letters/redrives",
                 "/console/bulk-jobs"):  # fmt: skip
        page.goto(served.url + path)
        # Nothing but the tables' own scrollers is wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert re.search(r"Sign out", page.content())


def test_the_overview_refreshes_by_itself(
    page: Page, served: Served, tenant: Tenant, redis_client: Redis, setup: ConsoleSetup
) -> None:
    browser_sign_in(page, served.url, tenant.api_key())
    expect(page.locator("#overview")).to_contain_text("All closed.")
    _open_breaker(redis_client, setup, tenant.number)
    # No reload: the live part fetches its fragment again (every second in these tests).
    expect(page.get_by_role("link", name="15550000000")).to_be_visible()
