"""`adsapp dev-setup`: the demo tenant is made once, its key printed again, its curls valid."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from config import Settings
from db.tenants import resolve_phone_number
from workers.cli import devsetup, traffic

pytestmark = pytest.mark.integration


def test_the_demo_tenant_is_created_once_and_its_curls_are_signed(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    key_file = tmp_path / "api-key"
    org, key, created = devsetup.ensure_demo_tenant(settings, key_file)
    again = devsetup.ensure_demo_tenant(settings, key_file)
    assert created and again == (org, key, False)
    with engine.connect() as conn:
        route = resolve_phone_number(conn, devsetup.DEMO_PHONE_NUMBER_ID)
    assert route is not None and str(route.organization_id) == org

    # A key file of another database's tenant is not reused: a new key for this one.
    key_file.write_text("00000000-0000-0000-0000-000000000000 ads_stale\n")
    org3, key3, created3 = devsetup.ensure_demo_tenant(settings, key_file)
    assert (org3, created3) == (org, True) and key3 != "ads_stale"

    text = devsetup.curls("http://localhost:8000", key3, "the-secret")
    webhook = shlex.split(text.split("# 1.")[1].split("# 2.")[0].replace("\\\n", " "))
    body = webhook[webhook.index("--data-binary") + 1].encode()
    signature = webhook[webhook.index("-H", webhook.index("-H") + 1) + 1].split(": ", 1)[1]
    assert signature == traffic.sign_whatsapp(body, "the-secret")
    message = json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["from"] == devsetup.DEMO_CUSTOMER
    assert f"Bearer {key3}" in text.split("# 2.")[1]
