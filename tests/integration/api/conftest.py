"""The API mounted in a Starlette app of its own, on the real Postgres, Redis and RabbitMQ."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from config import Settings
from devkit.tenants import Tenant, make_tenant
from ingress.api import ApiOptions
from tests.support.api import build_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_options() -> ApiOptions:
    return ApiOptions(rate_limit=1000, redis_namespace=f"adsapp-test:{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def client(settings: Settings, api_options: ApiOptions) -> Iterator[TestClient]:
    app, _ = build_app(settings, api_options)
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


@pytest.fixture
def tenant(engine: Engine) -> Tenant:
    return make_tenant(engine)
