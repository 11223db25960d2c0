"""The console (with the API beside it) on the real Postgres, Redis and RabbitMQ.

`client` drives it in-process with Starlette's test client; `served` runs it under uvicorn on a
free port for the browser tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from config import Settings
from devkit.tenants import Tenant, make_tenant
from ingress.api import ApiOptions, ApiState
from ingress.console import ConsoleOptions, ConsoleState, console_mount
from tests.support.api import api_app
from tests.support.console import (
    ConsoleSetup,
    Served,
)

pytestmark = pytest.mark.integration


def build_console(settings: Settings, namespace: str, sign_in_limit: int = 1000) -> ConsoleSetup:
    api = ApiState(settings, ApiOptions(rate_limit=1000, redis_namespace=namespace))
    options = ConsoleOptions(
        breaker_namespace=f"{namespace}:graph:breaker",
        refresh_seconds=1,
        rabbitmq_url=settings.rabbitmq_url,
        counters_namespace=f"{namespace}:counts",
        sign_in_limit=sign_in_limit,
    )
    console = ConsoleState(api, options)
    return ConsoleSetup(api_app(api, console_mount(console)), options, api)


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
