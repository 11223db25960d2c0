"""`adsapp dlq ...` and `adsapp apikey create --operator` as an operator runs them."""

from __future__ import annotations

import uuid

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config import Settings
from db import tables as t
from db.uow import UnitOfWork
from devkit.deadletters import letter_row, seed_letters
from devkit.processes import queue_depth
from devkit.tenants import make_tenant
from domain.apikeys import hash_key
from tests.integration.cli.test_setup_commands import adsapp

pytestmark = pytest.mark.integration


def test_list_show_count_retry_and_discard(settings: Settings, engine: Engine) -> None:
    queue = f"cli_dlq_{uuid.uuid4().hex[:8]}"
    tenant = make_tenant(engine)
    ids = seed_letters(engine, [letter_row(queue, tenant.organization_id, n) for n in range(4)])
    seed_letters(engine, [letter_row(queue, None, 9, error_class="Refused")])

    listed = adsapp("dlq", "list", "--queue", queue)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert lines[0].startswith("ID") and len(lines) == 6 and "Broken: failure" in listed.stdout
    as_json = orjson.loads(adsapp("dlq", "list", "--queue", queue, "--json").stdout)
    assert len(as_json["items"]) == 5 and as_json["next_cursor"] is None

    shown = adsapp("dlq", "show", str(ids[0]))
    assert shown.returncode == 0 and "Traceback" in shown.stdout and queue in shown.stdout
    assert adsapp("dlq", "show", str(uuid.uuid4())).returncode == 2

    broken = ["--queue", queue, "--error-class", "Broken"]
    assert adsapp("dlq", "count", *broken).stdout.strip() == "4"
    dry = adsapp("dlq", "retry", *broken, "--dry-run")
    assert dry.stdout.strip() == "would retry 4 dead letters"
    refused = adsapp("dlq", "retry", *broken)  # no tty and no --yes: nothing happens
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert adsapp("dlq", "count", *broken).stdout.strip() == "4"

    one = adsapp("dlq", "retry", str(ids[0]), "--json")
    assert one.returncode == 0, one.stderr
    assert orjson.loads(one.stdout)["status"] == "retried"
    batch = adsapp("dlq", "retry", *broken, "--yes", "--max-per-second", "100")
    assert batch.returncode == 0, batch.stderr
    assert "moved 3 of 3" in batch.stdout and "redrive" in batch.stderr
    assert queue_depth(settings.rabbitmq_url, queue) == 4

    assert (
        adsapp("dlq", "discard", "--queue", queue, "--dry-run").stdout.strip()
        == "would discard 1 dead letters"
    )
    gone = adsapp("dlq", "discard", "--queue", queue, "--yes", "--json")
    assert orjson.loads(gone.stdout) == {"discarded": 1}
    assert adsapp("dlq", "count", "--queue", queue, "--status", "discarded").stdout.strip() == "1"


def test_apikey_create_operator_makes_an_operator_key(engine: Engine) -> None:
    tenant = make_tenant(engine)
    out = adsapp(
        "apikey", "create", str(tenant.organization_id), "--name", "ops",
        "--scopes", "dead-letters:read,dead-letters:write", "--operator",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        operator = uow.conn.execute(
            sa.select(t.api_keys.c.operator).where(t.api_keys.c.key_hash == hash_key(key))
        ).scalar_one()
    assert operator is True
