"""`adsapp dev-setup`: a demo tenant, number and API key for a first `make run`, and curls to try.

Idempotent: the tenant is found by its phone number id and made only once. The API key is stored
hashed like any other, so its plaintext is kept in `var/dev/api-key` beside its organization id
(development only) to print it again on the next run against the same database. The webhook curl
carries a fresh message id and a signature over its exact bytes with the first
`WHATSAPP_APP_SECRET`.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

from config import Settings, get_settings
from db.engine import check_database, create_db_engine
from db.repos import organizations as orgs
from db.tenants import resolve_phone_number
from db.uow import UnitOfWork
from domain.apikeys import generate_key
from workers.cli import traffic

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]

DEMO_PHONE_NUMBER_ID = "100000000000001"
DEMO_WABA_ID = "200000000000001"
DEMO_CUSTOMER = "15551234567"
KEY_FILE = Path("var/dev/api-key")
# The fake Graph API accepts any token but its configured bad ones.
DEMO_TOKEN = "demo-token"  # noqa: S105


def register(commands: Commands) -> None:
    setup = commands.add_parser("dev-setup", help="create a demo tenant, number and API key; print curls")
    setup.add_argument("--base-url", default=None, help="the ingress, default http://localhost:$PORT")
    setup.set_defaults(handler=_dev_setup)


def ensure_demo_tenant(settings: Settings, key_file: Path = KEY_FILE) -> tuple[str, str, bool]:
    """(organization id, API key plaintext, created now?)."""
    engine = create_db_engine(settings, pool_size=1)
    try:
        check_database(engine)
        # No tenant scope: the routing function answers the app role with just the routing facts.
        with engine.connect() as conn:
            route = resolve_phone_number(conn, DEMO_PHONE_NUMBER_ID)
        saved = key_file.read_text().split() if key_file.exists() else []
        if route is not None and saved[:1] == [str(route.organization_id)]:
            return str(route.organization_id), saved[1], False
        key = generate_key()
        with UnitOfWork(engine, system=True) as uow:
            if route is None:
                org_id = orgs.create_organization(uow.conn, "Demo")
                orgs.add_number(
                    uow.conn, org_id, phone_number_id=DEMO_PHONE_NUMBER_ID,
                    display_phone_number="15550001111", waba_id=DEMO_WABA_ID, access_token=DEMO_TOKEN, mps=80,
                )  # fmt: skip
            else:
                org_id = route.organization_id
            orgs.add_api_key(uow.conn, org_id, "demo", key, ("messages:write", "messages:read"))
            uow.commit()
    finally:
        engine.dispose()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(f"{org_id} {key.plaintext}\n")
    key_file.chmod(0o600)
    return str(org_id), key.plaintext, True


def curls(base_url: str, api_key: str, app_secret: str) -> str:
    message = traffic.text_message(DEMO_CUSTOMER, "Hi, where is my order?")
    body = traffic.encode(traffic.delivery(DEMO_PHONE_NUMBER_ID, DEMO_WABA_ID, [message]))
    signature = traffic.sign_whatsapp(body, app_secret)
    send = (
        '{"to": "%s", "type": "text", "text": {"body": "Your order ships today"}}' % DEMO_CUSTOMER  # noqa: UP031
    )
    return "\n".join(
        [
            "# 1. the customer writes (a signed Meta webhook):",
            f"curl -s -X POST {base_url}/webhooks/whatsapp -H 'Content-Type: application/json' \\",
            f"  -H 'X-Hub-Signature-256: {signature}' \\",
            f"  --data-binary {shlex.quote(body.decode())}",
            "# 2. reply through the API (the fake Graph API takes it and posts sent/delivered/read back):",
            f"curl -s -X POST {base_url}/api/v1/messages -H 'Authorization: Bearer {api_key}' \\",
            f"  -H 'Content-Type: application/json' -d '{send}'",
            "# 3. its status (id from the answer above):",
            f"curl -s {base_url}/api/v1/messages/ID -H 'Authorization: Bearer {api_key}'",
        ]
    )


def _dev_setup(args: argparse.Namespace) -> int:
    settings = get_settings()
    org_id, key, created = ensure_demo_tenant(settings)
    base_url = args.base_url or f"http://localhost:{settings.port}"
    state = "created" if created else "found"
    print(f"demo tenant {state}: organization {org_id}, number {DEMO_PHONE_NUMBER_ID}, key in {KEY_FILE}")
    print(curls(base_url, key, settings.whatsapp_app_secret[0].get_secret_value()))
    print(f"# (webhook made at {time.strftime('%H:%M:%S')}; fake Graph API log: "
          f"http://127.0.0.1:{settings.fake_graph_port}/_fake/log?summary=1)")  # fmt: skip
    return 0
