"""Dead letters in the browser: one produced by a failing job, inspected, retried after the count
preview, and gone; a tenant never sees another tenant's letters."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect
from sqlalchemy.engine import Engine

from config import Settings
from db.repos import deadletters as repo
from db.tables import dead_letters, event_store
from db.uow import UnitOfWork
from devkit.processes import wait_for
from devkit.tenants import Tenant, make_tenant
from services import redrive
from tests.integration.console.failing import FailingJob
from tests.support.console import ConsoleSetup, Served, browser_sign_in, screenshot


@pytest.fixture
def failing(settings: Settings) -> Iterator[FailingJob]:
    job = FailingJob(settings).start()
    try:
        yield job
    finally:
        job.stop()


def _dead(engine: Engine, queue: str) -> int:
    with UnitOfWork(engine, system=True) as uow:
        return int(uow.conn.execute(
            sa.select(sa.func.count()).select_from(dead_letters)
            .where(dead_letters.c.queue == queue, dead_letters.c.status == "dead")
        ).scalar_one())  # fmt: skip


def test_a_failed_job_is_seen_inspected_retried_after_the_preview_and_gone(
    page: Page, served: Served, tenant: Tenant, failing: FailingJob, engine: Engine, setup: ConsoleSetup
) -> None:
    failing.send("A-1001", tenant.organization_id)
    assert wait_for(lambda: _dead(engine, failing.queue) == 1, 30), "the failing job left no dead letter"

    browser_sign_in(page, served.url, tenant.api_key())
    page.get_by_role("link", name="Dead letters").first.click()
    page.get_by_label("Queue").fill(failing.queue)
    page.get_by_role("button", name="Filter").click()
    rows = page.get_by_test_id("dead-letter-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("OrderRejected")
    expect(rows.first).to_contain_text("order A-1001 refers to an unknown product")

    rows.first.get_by_role("link").click()
    expect(page.get_by_test_id("letter-status")).to_have_text("dead")
    expect(page.get_by_test_id("traceback")).to_contain_text("OrderRejected")
    expect(page.locator("pre").nth(1)).to_contain_text("A-1001")  # args
    screenshot(page, "dead-letter")
    page.go_back()

    page.get_by_role("link", name="Retry these…").click()
    expect(page.get_by_test_id("preview-count")).to_have_text("1")
    failing.fixed.set()  # the cause is fixed: the retry will succeed
    page.get_by_role("button", name="Retry 1").click()
    expect(page.get_by_test_id("redrive-status")).to_have_text("pending")
    task_id = uuid.UUID(page.url.split("?")[0].rsplit("/", 1)[1])

    # What the scheduler's tick does; the page follows by itself.
    ran = redrive.run_redrive(engine, setup.api.resources.jobs, redrive_id=task_id)
    assert ran is not None and ran.done
    expect(page.get_by_test_id("redrive-status")).to_have_text("finished")
    expect(page.get_by_test_id("redrive-percent")).to_have_text("100 %")
    assert failing.done.wait(30), "the retried job did not run"

    page.goto(f"{served.url}/console/dead-letters/redrives")
    expect(page.get_by_test_id("redrive-row").filter(has_text="queue=" + failing.queue)).to_contain_text(
        "finished"
    )
    page.goto(f"{served.url}/console/dead-letters?queue={failing.queue}")
    expect(page.get_by_test_id("dead-letter-row")).to_have_count(0)
    expect(page.get_by_test_id("match-count")).to_have_text("0")

    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        actions = uow.conn.execute(
            sa.select(event_store.c.event_type, event_store.c.payload)
            .where(event_store.c.aggregate_id == str(task_id))
        ).all()  # fmt: skip
    assert [a.event_type for a in actions] == ["dead_letter.redrive"]
    assert actions[0].payload["matched"] == 1
    assert actions[0].payload["actor"]["key_name"].startswith("key-")


def _letter(engine: Engine, tenant: Tenant, queue: str, text: str) -> None:
    with UnitOfWork(engine, system=True) as uow:
        repo.record(uow.conn, {
            "queue": queue, "actor": "send_message", "message_id": uuid.uuid4().hex,
            "organization_id": tenant.organization_id, "args": [str(tenant.organization_id)], "kwargs": {},
            "options": {}, "error": f"GraphApiPermanent: {text}", "error_class": "GraphApiPermanent",
            "error_message": text, "transient": False, "traceback": "Traceback: ...", "attempts": 1,
            "sweeps": 0, "next_sweep_at": None,
        }, None)  # fmt: skip
        uow.commit()


def test_a_tenant_key_sees_no_other_tenants_dead_letters(
    page: Page, served: Served, tenant: Tenant, engine: Engine
) -> None:
    other = make_tenant(engine)
    queue = f"console_{uuid.uuid4().hex[:8]}"
    _letter(engine, tenant, queue, "mine: template paused")
    _letter(engine, other, queue, "theirs: recipient opted out")
    browser_sign_in(page, served.url, tenant.api_key())
    page.goto(f"{served.url}/console/dead-letters?queue={queue}")
    rows = page.get_by_test_id("dead-letter-row")
    expect(rows).to_have_count(1)
    html = page.content()
    assert "mine: template paused" in html
    assert "theirs: recipient opted out" not in html and str(other.organization_id) not in html
    # Naming the other tenant in the filter changes nothing: the scope is the key's.
    page.goto(f"{served.url}/console/dead-letters?queue={queue}&organization_id={other.organization_id}")
    assert "theirs: recipient opted out" not in page.content()
    expect(page.get_by_test_id("dead-letter-row")).to_have_count(1)
