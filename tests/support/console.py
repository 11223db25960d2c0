"""The operator console under test: its setup, a served instance, sign-in by HTTP and in the browser."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from playwright.sync_api import Page
from starlette.applications import Starlette
from starlette.testclient import TestClient

from db.repos.organizations import add_api_key
from db.uow import UnitOfWork
from devkit.processes import free_port, wait_for
from devkit.tenants import Tenant
from domain.apikeys import generate_key
from ingress.api import ApiState
from ingress.console import ConsoleOptions


@dataclass(frozen=True)
class ConsoleSetup:
    app: Starlette
    options: ConsoleOptions
    api: ApiState


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden field {name}"
    return match.group(1)


def sign_in(client: TestClient, key: str) -> str:
    """Signs in; returns the session's CSRF token (as the pages carry it)."""
    form = client.get("/console/login")
    token = hidden(form.text, "csrf_token")
    answer = client.post("/console/login", data={"csrf_token": token, "api_key": key, "next": ""})
    assert answer.status_code == 303, answer.text
    return hidden(client.get("/console/").text, "csrf_token")


class Served:
    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        assert wait_for(lambda: self.server.started or not self.thread.is_alive(), 30)
        assert self.server.started, "the console server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def browser_sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/console/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()


ROOT = Path(__file__).resolve().parents[2]


def screenshot(page: Page, name: str) -> None:
    """Saved under var/ by every run, so a test run leaves the tree clean; `make screenshots`
    (CONSOLE_SCREENSHOTS_DIR=docs) refreshes the ones README shows."""
    folder = ROOT / os.environ.get("CONSOLE_SCREENSHOTS_DIR", "var/console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"console-{name}.png"), full_page=True)


def operator_key(tenant: Tenant) -> str:
    """An operator key (`adsapp apikey create --operator`), filed under `tenant`'s organization."""
    key = generate_key()
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        key_id = add_api_key(uow.conn, tenant.organization_id, "ops-key", key, (), operator=True)
        uow.commit()
    tenant.keys[key.plaintext] = str(key_id)
    return key.plaintext
