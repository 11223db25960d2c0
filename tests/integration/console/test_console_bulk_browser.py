"""A broadcast in the browser: started over the API, run by real bulk and outbound worker processes
against the fake Graph API, its progress bar followed on the job page until 100 %; the sends the
workers' pacing put off are counted on the numbers page, and the outbound queue's rates on the
overview."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy.engine import Engine

from config import Settings
from devkit.processes import Process, start_worker, wait_for
from devkit.tenants import TEMPLATE, Tenant, make_tenant, recipient
from tests.support.bulk import BULK_SCOPES, bulk_tenant
from tests.support.console import ConsoleSetup, Served, browser_sign_in, operator_key, screenshot
from tests.support.fake_graph import RunningFakeGraph, running_fake_graph

COMPONENTS = [
    {"type": "header", "parameters": [{"type": "text", "text": "A1"}]},
    {
        "type": "body",
        "parameters": [{"type": "text", "text": "{{contact.wa_id}}"}, {"type": "text", "text": "A1"}],
    },
    {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A1"}]},
]
RECIPIENTS = 12
MPS = 2  # slow enough that the page is seen mid-way


@pytest.fixture(scope="module")
def fake_graph() -> Iterator[RunningFakeGraph]:
    with running_fake_graph() as fake:
        yield fake


@pytest.fixture(scope="module")
def fleet(settings: Settings, fake_graph: RunningFakeGraph, setup: ConsoleSetup) -> Iterator[Process]:
    env = {
        "GRAPH_API_URL": fake_graph.url,
        # The workers count where this console reads.
        "FLEET_COUNTERS_NAMESPACE": setup.options.counters_namespace,
        "OUTBOUND_REDIS_NAMESPACE": f"adsapp-test:{uuid.uuid4().hex}",
        "LOG_LEVEL": "WARNING",
    }
    process = start_worker(["bulk", "outbound"], processes=1, threads=4, env=env, timeout=90)
    yield process
    process.stop()


def start_broadcast(served: Served, key: str, to: list[str]) -> str:
    body = {
        "kind": "broadcast",
        "template": {"name": "order_update", "language": {"code": "en_US"}, "components": COMPONENTS},
        "recipients": [{"wa_id": wa_id} for wa_id in to],
    }
    answer = httpx.post(
        f"{served.url}/api/v1/bulk-jobs", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["data"]["id"])


def test_a_broadcast_runs_to_100_percent_on_its_page(
    page: Page, served: Served, engine: Engine, fleet: Process, fake_graph: RunningFakeGraph
) -> None:
    tenant: Tenant = bulk_tenant(engine, mps=MPS)
    tenant.templates([TEMPLATE])
    key = tenant.api_key(BULK_SCOPES)
    to = [recipient() for _ in range(RECIPIENTS)]
    job_id = start_broadcast(served, key, [*to, "12ab"])  # one invalid wa_id: skipped with its reason

    browser_sign_in(page, served.url, key)
    page.get_by_role("link", name="Bulk jobs").click()
    row = page.get_by_test_id("bulk-job-row").filter(has_text=job_id[:8])
    expect(row).to_have_count(1)
    row.get_by_role("link").click()
    expect(page.get_by_test_id("bulk-status")).to_have_text("running", timeout=60_000)
    screenshot(page, "broadcast")
    # No reload from here on: the progress part refreshes by itself.
    expect(page.get_by_test_id("bulk-percent")).to_have_text("100 %", timeout=120_000)
    expect(page.get_by_test_id("bulk-status")).to_have_text("completed_with_errors")
    expect(page.get_by_test_id("bulk-succeeded")).to_have_text(str(RECIPIENTS))
    assert fake_graph.sends(tenant.number) == RECIPIENTS

    page.get_by_label("Status").select_option("skipped")
    page.get_by_role("button", name="Filter").click()
    items = page.get_by_test_id("bulk-item-row")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("invalid_wa_id")

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [(r["recipient"], r["status"], r["error_code"]) for r in rows] == [
        ("12ab", "skipped", "invalid_wa_id")
    ]


def test_the_sends_pacing_put_off_are_counted_on_the_numbers_page(
    page: Page, served: Served, engine: Engine, fleet: Process, fake_graph: RunningFakeGraph
) -> None:
    # One message a second for the number, eight sent at once: the outbound workers hold a send
    # for its slot up to 2 s and put the others back on the queue, counting each time; the queue's
    # rates in and out are the workers' and the API's counts.
    tenant = make_tenant(engine, mps=1)
    key = tenant.api_key()
    to = tenant.contact()
    for i in range(8):
        answer = httpx.post(
            f"{served.url}/api/v1/messages",
            json={"to": to, "type": "text", "text": {"body": f"update {i}"}},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 202, answer.text
    # An operator's overview shows the outbound queue moving, as the workers count it.
    browser_sign_in(page, served.url, operator_key(tenant))
    outbound = page.get_by_test_id("queue-outbound")
    expect(outbound.get_by_test_id("rate-in")).not_to_have_text("0.0", timeout=30_000)
    expect(outbound.get_by_test_id("rate-out")).not_to_have_text("0.0", timeout=30_000)
    page.get_by_role("link", name="Numbers").click()
    row = page.locator(f"#n-{tenant.number}")

    def deferred_last_hour() -> int:
        page.reload()
        return int(row.get_by_test_id("deferrals-hour").inner_text())

    assert wait_for(lambda: deferred_last_hour() > 0, 60), "no pacing deferral was counted"
    expect(row.get_by_test_id("deferral-reasons")).to_contain_text("throughput")
    assert wait_for(lambda: fake_graph.sends(tenant.number) == 8, 60)
