"""Observability end to end: the fleet's processes scraped by a real Prometheus with the deploy
config, the counters checked through Prometheus's HTTP API, each endpoint linted by promtool, and
every metric the alert rules and the dashboard name exported by some endpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from sqlalchemy.engine import Engine

from config import Settings
from db.fleet_stats import Backlog
from devkit import whatsapp as wa
from devkit.processes import ROOT, wait_for
from devkit.tenants import TEMPLATE, Tenant, make_tenant, recipient
from ingress.api.resources import ApiMetrics
from ingress.metrics import Metrics
from services.queue_stats import QueueDepth
from tests.e2e.fleet import DEPLOY, Fleet, RunningPrometheus, running_fleet, running_prometheus, wait_value
from tests.integration.bulk.test_bulk_api import broadcast
from tests.support.bulk import BULK_SCOPES, bulk_tenant
from tests.support.fake_graph import RunningFakeGraph, running_fake_graph
from workers.fleet_gauges import FleetGauges, Snapshot
from workers.metrics import GroupPrometheus

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus package"),
]

SECRET = "obs-app-secret"
WEBHOOKS = 5
SENDS = 3
JOBS = {"web", "inbound", "outbound", "billing", "scheduler"}


@pytest.fixture(scope="module")
def fake_graph() -> Iterator[RunningFakeGraph]:
    with running_fake_graph() as fake:
        yield fake


@pytest.fixture(scope="module")
def fleet(
    settings: Settings, fake_graph: RunningFakeGraph, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    env = {
        "RABBITMQ_URL": settings.rabbitmq_url,
        "DATABASE_URL": settings.database_url,
        "GRAPH_API_URL": fake_graph.url,
        "WHATSAPP_APP_SECRET": SECRET,
        "OUTBOUND_REDIS_NAMESPACE": f"adsapp-test:{uuid.uuid4().hex}",
        "MEDIA_DIR": str(tmp_path_factory.mktemp("media")),
        "LOG_LEVEL": "WARNING",
    }
    with running_fleet(env) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(fleet: Fleet) -> Iterator[RunningPrometheus]:
    with running_prometheus(fleet.metrics) as running:
        yield running


@pytest.fixture(scope="module")
def traffic(fleet: Fleet, prometheus: RunningPrometheus, engine: Engine) -> dict[str, float]:
    """Counter values before; then WEBHOOKS signed webhooks (one text each) and SENDS API sends."""
    before = {expr: prometheus.value(expr) for expr in COUNTERS}
    tenant = make_tenant(engine)
    with httpx.Client(base_url=fleet.url, timeout=10) as client:
        for i in range(WEBHOOKS):
            body = wa.encode(
                wa.delivery(
                    wa.change(tenant.number, messages=[wa.text(recipient(), f"hi {i}")]),
                    waba_id=tenant.waba_id,
                )
            )
            answer = client.post(
                "/webhooks/whatsapp",
                content=body,
                headers={"content-type": "application/json", "x-hub-signature-256": wa.sign(body, SECRET)},
            )
            assert answer.status_code == 200, answer.text
        unsigned = client.post(
            "/webhooks/whatsapp", content=b"{}", headers={"content-type": "application/json"}
        )
        assert unsigned.status_code == 401
        _send(client, tenant)
    return before


def _send(client: httpx.Client, tenant: Tenant) -> None:
    key = tenant.api_key()
    for _ in range(SENDS):
        answer = client.post(
            "/api/v1/messages",
            json={"to": tenant.contact(), "type": "text", "text": {"body": "order shipped"}},
            headers={"authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 202, answer.text


# Each expression and by how much the traffic must move it.
COUNTERS = {
    'sum(adsapp_ingress_requests_total{route="/webhooks/whatsapp",status="200"})': WEBHOOKS,
    'sum(adsapp_ingress_requests_total{route="/webhooks/whatsapp",status="401"})': 1,
    'sum(adsapp_ingress_signature_failures_total{source="whatsapp"})': 1,
    'sum(dramatiq_messages_total{queue_name="inbound"})': WEBHOOKS,
    'sum(adsapp_inbound_messages_stored_total{type="text"})': WEBHOOKS,
    "sum(adsapp_inbound_commit_latency_seconds_count)": WEBHOOKS,
    'sum(adsapp_api_requests_total{status="202"})': SENDS,
    'sum(dramatiq_messages_total{queue_name="outbound"})': SENDS,
    'sum(adsapp_outbound_sends_total{outcome="sent"})': SENDS,
    "sum(adsapp_outbound_queue_to_sent_seconds_count)": SENDS,
    'sum(adsapp_queue_wait_seconds_count{queue="inbound"})': WEBHOOKS,
}


def test_every_target_is_up(prometheus: RunningPrometheus, fleet: Fleet) -> None:
    def all_up() -> bool:
        return {r["metric"]["job"] for r in prometheus.query("up == 1")} >= JOBS

    assert wait_for(all_up, 60, interval=0.25), (prometheus.targets(), fleet.logs())
    # Nothing on the public port: metrics are internal.
    assert httpx.get(f"{fleet.url}/metrics").status_code == 404


def test_counters_move_by_the_traffic(
    traffic: dict[str, float], prometheus: RunningPrometheus, fleet: Fleet
) -> None:
    for expr, delta in COUNTERS.items():
        expected = traffic[expr] + delta
        got = wait_value(prometheus, expr, expected)
        assert got == expected, (expr, got, expected, fleet.logs())


def test_fleet_gauges(traffic: dict[str, float], prometheus: RunningPrometheus) -> None:
    # Two inbound worker processes consume `inbound`; everything sent was consumed.
    assert wait_value(prometheus, 'adsapp_queue_consumers{queue="inbound"}', 2) == 2
    assert wait_value(prometheus, 'adsapp_queue_messages_ready{queue="inbound"}', 0) == 0
    assert wait_value(prometheus, 'adsapp_graph_breakers{state="open"}', 0) == 0
    assert wait_value(prometheus, "adsapp_outbox_rows", 0) == 0
    assert prometheus.value('adsapp_scheduler_sweeps_total{task="outbox",result="ok"}') >= 1


def _exposition(url: str) -> str:
    return httpx.get(url, timeout=5).text


def test_promtool_checks(fleet: Fleet, traffic: dict[str, float]) -> None:
    config = subprocess.run(
        ["promtool", "check", "config", str(DEPLOY / "prometheus.yml")], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run(
        ["promtool", "check", "rules", str(DEPLOY / "alerts.yml")], capture_output=True, text=True
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    for job, url in fleet.metrics.items():
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=_exposition(url), capture_output=True, text=True
        )
        assert lint.returncode == 0, (job, lint.stdout + lint.stderr)


NAME = re.compile(r"\b((?:adsapp|dramatiq)_[a-z0-9_]+|up)\b")


def referenced_metrics() -> set[str]:
    exprs = [
        rule["expr"]
        for group in yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "fleet.json").read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in NAME.findall(expr)}


def exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def declared_names() -> set[str]:
    """Metrics the code declares that a short run may never observe (publish failures, deferrals...)."""
    import workers.billing.metrics
    import workers.graph.breaker
    import workers.inbound.metrics
    import workers.metrics
    import workers.outbound.metrics
    import workers.scheduler_metrics  # noqa: F401

    ingress = Metrics()
    ApiMetrics(ingress.registry)
    gauges = FleetGauges(["inbound"])
    gauges.snapshot = Snapshot(
        queues=[QueueDepth("inbound", True, 1, 1, 0, 0, 0, 1.0)],
        outbox=Backlog(0, None),
        stuck_sending=0,
        breakers={"open": 0},
        taken_at=1.0,
    )
    fleet = CollectorRegistry()
    fleet.register(gauges)
    registries = (REGISTRY, ingress.registry, fleet, _dramatiq())
    return set().union(*(exported_names(generate_latest(r).decode()) for r in registries))


def _dramatiq() -> CollectorRegistry:
    """The metrics Dramatiq's middleware makes at worker boot (it points the environment at its
    multiprocess directory as it does so: put back here, so later subprocesses are not affected)."""
    saved = dict(os.environ)
    try:
        middleware = GroupPrometheus()
        middleware.after_process_boot(None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    registry = CollectorRegistry()
    for value in vars(middleware).values():
        if isinstance(value, MetricWrapperBase):
            registry.register(value)
    return registry


def test_alerts_and_dashboard_name_only_exported_metrics(fleet: Fleet, traffic: dict[str, float]) -> None:
    exported = declared_names() | {"up"}
    for url in fleet.metrics.values():
        exported |= exported_names(_exposition(url))
    missing = {
        name
        for name in referenced_metrics()
        if name not in exported and re.sub(r"_(bucket|count|sum)$", "", name) not in exported
    }
    assert missing == set()
    assert len(referenced_metrics()) > 15  # the parse found the expressions


def test_the_scheduler_exports_the_bulk_and_dead_letter_gauges(
    fleet: Fleet, prometheus: RunningPrometheus, engine: Engine, traffic: dict[str, float]
) -> None:
    names = exported_names(_exposition(fleet.metrics["scheduler"]))
    assert {
        "adsapp_bulk_items_pending", "adsapp_dead_letters_current", "adsapp_dead_letters_xq_depth",
        "adsapp_dead_letters_oldest_age_seconds",
    } <= names  # fmt: skip
    expr = 'adsapp_bulk_items_pending{job="scheduler"}'
    assert wait_for(lambda: prometheus.query(expr) != [], 60, interval=0.25)
    before = prometheus.value(expr)
    tenant = bulk_tenant(engine)
    tenant.templates([TEMPLATE])
    created = httpx.post(
        f"{fleet.url}/api/v1/bulk-jobs",
        json=broadcast([recipient() for _ in range(3)]),
        headers={"authorization": f"Bearer {tenant.api_key(BULK_SCOPES)}"},
        timeout=10,
    )
    assert created.status_code == 202, created.text
    # No bulk worker runs in this fleet: the three items stay pending, as the scheduler counts them.
    assert wait_value(prometheus, expr, before + 3) == before + 3
