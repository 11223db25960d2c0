from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config import Settings
from config.errors import DependencyUnavailable
from db import tables as t
from db.engine import check_database, create_db_engine
from db.uow import UnitOfWork
from domain.apikeys import hash_key

pytestmark = pytest.mark.integration


def adsapp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
        check=False,
    )


def test_org_number_and_apikey_create_what_they_say(settings: Settings, engine: Engine) -> None:
    assert adsapp("db", "upgrade").returncode == 0  # already at head: a no-op
    org_id = uuid.uuid4()
    out = adsapp("org", "create", "Acme Dental", "--id", str(org_id))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(org_id)

    pn = f"pn-{uuid.uuid4().hex[:8]}"
    out = adsapp(
        "number",
        "add",
        str(org_id),
        "--phone-number-id",
        pn,
        "--display-number",
        "+31 6 1234",
        "--waba-id",
        "waba-1",
        "--access-token",
        "EAAG-token",
        "--mps",
        "1000",
    )
    assert out.returncode == 0, out.stderr

    out = adsapp("apikey", "create", str(org_id), "--name", "crm", "--scopes", "messages:write,messages:read")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("ads_") and len(key) > 40

    with UnitOfWork(engine, organization_id=org_id) as uow:
        org = uow.conn.execute(sa.select(t.organizations).where(t.organizations.c.id == org_id)).one()
        number = uow.conn.execute(
            sa.select(t.whatsapp_numbers).where(t.whatsapp_numbers.c.phone_number_id == pn)
        ).one()
        stored = uow.conn.execute(sa.select(t.api_keys).where(t.api_keys.c.organization_id == org_id)).one()
    assert org.name == "Acme Dental" and org.plan == "free"
    assert (number.organization_id, number.waba_id, number.mps, number.display_phone_number) == (
        org_id,
        "waba-1",
        1000,
        "+31 6 1234",
    )
    assert stored.key_hash == hash_key(key) and key not in stored.key_hash
    assert key.startswith(stored.prefix) and stored.scopes == ["messages:write", "messages:read"]


def test_clear_errors(settings: Settings) -> None:
    out = adsapp("number", "add", str(uuid.uuid4()), "--phone-number-id", "x", "--display-number", "y")
    assert out.returncode == 2 and "organizations" in out.stderr and "Traceback" not in out.stderr
    out = adsapp("apikey", "create", str(uuid.uuid4()), "--name", "n", "--scopes", "root")
    assert out.returncode == 2 and "unknown scope" in out.stderr
    out = adsapp("org", "create")
    assert out.returncode == 2


def test_unreachable_database_names_service_and_variable(settings: Settings) -> None:
    bad = settings.model_copy(update={"database_url": "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"})
    with pytest.raises(DependencyUnavailable, match="PostgreSQL.*DATABASE_URL"):
        check_database(create_db_engine(bad, pool_size=1))
    env = dict(os.environ, DATABASE_URL="postgresql+psycopg://adsapp_app@127.0.0.1:1/nowhere")
    env.pop("DATABASE_ADMIN_URL")  # in development the owner's login follows DATABASE_URL
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli.main", "db", "upgrade"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 2 and "PostgreSQL" in out.stderr and "DATABASE_URL" in out.stderr
