"""The console (with the API beside it) on the real Postgres, Redis and RabbitMQ.

`client` drives it in-process with Starlette's test client; `served` runs it under uvicorn on a
free port for the browser tests.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.testclient import TestClient

from config import Settings
from db.repos.organizations import add_api_key
from db.uow import UnitOfWork
from domain.apikeys import generate_key
from ingress.api import ApiOptions, ApiState, api_mount
from ingress.console import ConsoleOptions, ConsoleState, console_mount
from ingress.metrics import Metrics
from tests.support.processes import free_port, wait_for
from tests.support.tenants import Tenant, make_tenant

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class ConsoleSetup:
    app: Starlette
    options: ConsoleOptions
    api: ApiState
    metrics: Metrics  # the ingress's request counters, which the overview reads


def build_console(settings: Settings, namespace: str) -> ConsoleSetup:
    api = ApiState(settings, ApiOptions(rate_limit=1000, redis_namespace=namespace))
    options = ConsoleOptions(
        breaker_namespace=f"{namespace}:graph:breaker", refresh_seconds=1, rabbitmq_url=settings.rabbitmq_url
    )
    metrics = Metrics()
    console = ConsoleState(api, options, registry=metrics.registry)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api.open()
        try:
            yield
        finally:
            api.close()

    app = Starlette(routes=[api_mount(api), console_mount(console)], lifespan=lifespan)
    return ConsoleSetup(app, options, api, metrics)


@pytest.fixture(scope="module")
def module_namespace() -> str:
    return f"adsapp-test:{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def setup(settings: Settings, module_namespace: str) -> ConsoleSetup:
    return build_console(settings, module_namespace)


@pytest.fixture
def client(setup: ConsoleSetup) -> Iterator[TestClient]:
    with TestClient(setup.app, base_url="http://testserver", follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)


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


@pytest.fixture(scope="module")
def served(setup: ConsoleSetup) -> Iterator[Served]:
    with Served(setup.app) as server:
        yield server


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (no browser is ever downloaded)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def browser_sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/console/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()


def screenshot(page: Page, name: str) -> None:
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / f"console-{name}.png"), full_page=True)


def operator_key(tenant: Tenant) -> str:
    """An operator key (`adsapp apikey create --operator`), filed under `tenant`'s organization."""
    key = generate_key()
    with UnitOfWork(tenant.engine, organization_id=tenant.organization_id) as uow:
        key_id = add_api_key(uow.conn, tenant.organization_id, "ops-key", key, (), operator=True)
        uow.commit()
    tenant.keys[key.plaintext] = str(key_id)
    return key.plaintext
