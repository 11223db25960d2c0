"""Failed sign-ins are limited per client address, in Redis like the API's unauthenticated requests:
past the limit the address gets a 429 page with Retry-After, whatever key it sends, until the window
ends; other addresses sign in as before."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from config import Settings
from devkit.tenants import Tenant
from ingress.console.session import COOKIE
from tests.integration.console.conftest import build_console
from tests.support.console import ConsoleSetup, hidden, sign_in

LIMIT = 3


@pytest.fixture(scope="module")
def limited_setup(settings: Settings) -> ConsoleSetup:
    return build_console(settings, f"adsapp-test:{uuid.uuid4().hex}", sign_in_limit=LIMIT)


def _client(setup: ConsoleSetup, address: str) -> Iterator[TestClient]:
    with TestClient(setup.app, follow_redirects=False, client=(address, 40000)) as client:
        yield client


@pytest.fixture
def guesser(limited_setup: ConsoleSetup) -> Iterator[TestClient]:
    yield from _client(limited_setup, "203.0.113.7")


@pytest.fixture
def neighbour(limited_setup: ConsoleSetup) -> Iterator[TestClient]:
    yield from _client(limited_setup, "203.0.113.8")


def _attempt(client: TestClient, key: str) -> tuple[int, str, dict[str, str]]:
    token = hidden(client.get("/console/login").text, "csrf_token")
    answer = client.post("/console/login", data={"csrf_token": token, "api_key": key, "next": ""})
    return answer.status_code, answer.text, dict(answer.headers)


def test_failed_sign_ins_past_the_limit_get_a_429_page_with_retry_after(
    guesser: TestClient, neighbour: TestClient, tenant: Tenant, limited_setup: ConsoleSetup
) -> None:
    for _ in range(LIMIT - 1):
        status, _, _ = _attempt(guesser, "adsk_wrong")
        assert status == 401
    status, page, headers = _attempt(guesser, "adsk_wrong")
    assert status == 429
    assert 'data-testid="sign-in-limited"' in page and "Too many sign-in attempts" in page
    window = int(limited_setup.options.sign_in_window_seconds)
    assert 0 < int(headers["retry-after"]) <= window
    assert f'data-testid="retry-after">{headers["retry-after"]}<' in page
    # Now even a good key from that address is refused, before it is looked at.
    status, _, headers = _attempt(guesser, tenant.api_key())
    assert status == 429 and "retry-after" in headers
    assert COOKIE not in guesser.cookies
    # Another address is not affected.
    sign_in(neighbour, tenant.api_key())
    assert neighbour.get("/console/").status_code == 200


def test_signing_in_does_not_count_against_the_address(neighbour: TestClient, tenant: Tenant) -> None:
    for _ in range(LIMIT + 2):
        status, _, _ = _attempt(neighbour, tenant.api_key())
        assert status == 303
