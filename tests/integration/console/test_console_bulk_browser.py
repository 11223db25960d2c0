"""A broadcast in the browser: started over the API, run by real bulk and outbound worker processes
against the fake Graph API, its progress bar followed on the job page until 100 %."""

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
from devkit.processes import Process, start_worker
from devkit.tenants import TEMPLATE, Tenant, recipient
from tests.support.bulk import BULK_SCOPES, bulk_tenant
from tests.support.console import Served, browser_sign_in, screenshot
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
def fleet(settings: Settings, fake_graph: RunningFakeGraph) -> Iterator[Process]:
    env = {
        "GRAPH_API_URL": fake_graph.url,
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
