"""`adsapp apikey create --expires`, `apikey list` and `apikey revoke`, and what the API then says."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from config import Settings
from db import tables as t
from db.uow import UnitOfWork
from devkit.tenants import make_tenant
from ingress.api import ApiOptions
from tests.integration.cli.test_setup_commands import adsapp
from tests.support.api import bearer, build_app

pytestmark = pytest.mark.integration


def _listing(org: uuid.UUID) -> dict[str, dict[str, str]]:
    out = adsapp("apikey", "list", str(org))
    assert out.returncode == 0, out.stderr
    header, *lines = out.stdout.splitlines()
    columns = header.split("\t")
    rows = [dict(zip(columns, line.split("\t"), strict=True)) for line in lines]
    return {row["name"]: row for row in rows}


def test_keys_are_listed_expired_and_revoked(
    settings: Settings, engine: Engine, owner_engine: Engine
) -> None:
    tenant = make_tenant(engine)
    org = str(tenant.organization_id)
    created = adsapp(
        "apikey", "create", org, "--name", "crm", "--scopes", "messages:read", "--expires", "30d"
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]  # the output shape of `create` is unchanged
    other = adsapp("apikey", "create", org, "--name", "etl", "--scopes", "messages:read")
    assert other.returncode == 0, other.stderr
    etl_key = other.stdout.strip().splitlines()[-1]

    listed = _listing(tenant.organization_id)
    assert set(listed) == {"crm", "etl"}
    crm = listed["crm"]
    assert crm["state"] == "active" and key.startswith(crm["prefix"]) and key not in "\t".join(crm.values())
    expires = datetime.fromisoformat(crm["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert listed["etl"]["expires_at"] == "-"

    app, _ = build_app(settings, ApiOptions(redis_namespace=f"adsapp-test:{uuid.uuid4().hex}"))
    with TestClient(app) as client:
        assert client.get("/api/v1/messages", headers=bearer(key)).status_code == 200
        revoked = adsapp("apikey", "revoke", crm["prefix"])
        assert revoked.returncode == 0 and revoked.stdout.startswith(f"revoked {crm['id']}"), revoked.stderr
        answer = client.get("/api/v1/messages", headers=bearer(key))
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "auth_revoked"
        assert "already revoked" in adsapp("apikey", "revoke", crm["id"]).stdout

        with owner_engine.begin() as conn:  # time passes for the other key
            conn.execute(
                sa.update(t.api_keys)
                .where(t.api_keys.c.id == uuid.UUID(listed["etl"]["id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        answer = client.get("/api/v1/messages", headers=bearer(etl_key))
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "auth_expired"
    states = {name: row["state"] for name, row in _listing(tenant.organization_id).items()}
    assert states == {"crm": "revoked", "etl": "expired"}
    with UnitOfWork(engine, organization_id=tenant.organization_id) as uow:
        events = uow.conn.execute(
            sa.select(t.event_store.c.event_type).where(t.event_store.c.aggregate_type == "api_key")
        ).scalars()
        assert sorted(events) == ["api_key.created", "api_key.created", "api_key.revoked"]


def test_apikey_mistakes_are_clear_errors(settings: Settings, engine: Engine) -> None:
    org = str(make_tenant(engine).organization_id)
    past = adsapp(
        "apikey", "create", org, "--name", "n", "--scopes", "messages:read", "--expires", "2001-01-01"
    )
    assert past.returncode == 2 and "not in the future" in past.stderr
    bad = adsapp("apikey", "create", org, "--name", "n", "--scopes", "messages:read", "--expires", "soon")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr
    unknown = adsapp("apikey", "revoke", str(uuid.uuid4()))
    assert unknown.returncode == 2 and "no API key" in unknown.stderr
    assert _listing(uuid.UUID(org)) == {}
