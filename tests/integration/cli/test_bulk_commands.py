"""`adsapp bulk list|status|pause|resume|cancel` as an operator runs them (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.tables import whatsapp_numbers
from db.uow import UnitOfWork
from devkit.jobs import RecordingPublisher
from devkit.tenants import TEMPLATE, recipient
from services import bulk
from tests.support.bulk import bulk_tenant

pytestmark = pytest.mark.integration


def adsapp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "bulk", *args],
        capture_output=True, text=True, timeout=60, env=dict(os.environ), check=False,
    )  # fmt: skip


def test_bulk_commands_list_show_and_control_a_job(engine: Engine) -> None:
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    components = [
        {"type": "header", "parameters": [{"type": "text", "text": "A"}]},
        {"type": "body", "parameters": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "C"}]},
    ]
    recipients = [bulk.Recipient(wa_id=recipient()), bulk.Recipient(wa_id="bad")]
    plan = bulk.BroadcastPlan("order_update", "en_US", components, recipients=recipients)
    job = bulk.plan_broadcast(
        bulk.BulkPorts(engine, RecordingPublisher()), tenant.organization_id, plan, None
    )

    listed = adsapp("list", "--org", str(tenant.organization_id))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:4] == [str(job.id), "broadcast", "pending", "0/2"]

    status = adsapp("status", str(job.id))
    assert status.returncode == 0, status.stderr
    assert "status      pending" in status.stdout and "total       2" in status.stdout

    paused = adsapp("pause", str(job.id))
    assert paused.returncode == 0 and " paused " in paused.stdout
    again = adsapp("pause", str(job.id))
    assert again.returncode == 1 and "bulk_job_not_pausable" in again.stderr
    assert adsapp("resume", str(job.id)).returncode == 0
    cancelled = adsapp("cancel", str(job.id))
    assert cancelled.returncode == 0, cancelled.stderr

    followed = adsapp("status", str(job.id), "--follow", "--interval", "0.1")
    assert followed.returncode == 1  # it ended, but not completed
    assert "] " in followed.stdout and "cancell" in followed.stdout
    missing = adsapp("status", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and "No bulk job" in missing.stderr


def test_messaging_limit_is_set_per_number(engine: Engine) -> None:
    tenant = bulk_tenant(engine)
    done = adsapp("messaging-limit", tenant.number, "2000")
    assert done.returncode == 0, done.stderr
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        assert uow.conn.execute(sa.select(whatsapp_numbers.c.messaging_limit)).scalar_one() == 2000
    assert adsapp("messaging-limit", tenant.number, "unlimited").returncode == 0
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        assert uow.conn.execute(sa.select(whatsapp_numbers.c.messaging_limit)).scalar_one() is None
    missing = adsapp("messaging-limit", "pn-nobody", "250")
    assert missing.returncode == 1 and "No WhatsApp number" in missing.stderr
