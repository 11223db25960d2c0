"""One trace per request across the fleet's processes, exported over OTLP to a receiver of the test:
a signed webhook gives the ingress's server and publish spans, the worker's consume span and its
commit; an API send gives the request, the consume of the send job and the Graph API call."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine

from config import Settings
from devkit import whatsapp as wa
from devkit.processes import Process, free_port, start_ingress, start_worker, wait_for
from devkit.tenants import make_tenant, recipient
from tests.e2e.otlp_receiver import ReceivedSpan, Receiver, otlp_receiver
from tests.support.fake_graph import running_fake_graph

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SECRET = "trace-app-secret"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def env(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with running_fake_graph() as fake:
        yield {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second, not five
            "WHATSAPP_APP_SECRET": SECRET,
            "GRAPH_API_URL": fake.url,
            "MEDIA_DIR": str(tmp_path_factory.mktemp("media")),
            "INGRESS_METRICS_PORT": str(free_port()),
            "LOG_LEVEL": "WARNING",
        }


@pytest.fixture(scope="module")
def fleet(settings: Settings, env: dict[str, str]) -> Iterator[str]:
    ingress, url = start_ingress(env)
    workers: list[Process] = []
    try:
        workers.append(start_worker(["inbound", "media"], processes=1, threads=2, env=env))
        workers.append(start_worker(["outbound"], processes=1, threads=2, env=env))
        yield url
    finally:
        for worker in workers:
            worker.stop()
        ingress.stop()


def _trace(receiver: Receiver, root: ReceivedSpan | None) -> list[ReceivedSpan]:
    return [s for s in receiver.spans() if root is not None and s.trace_id == root.trace_id]


def _wait_trace(receiver: Receiver, route: str, wanted: set[tuple[str, str]]) -> list[ReceivedSpan]:
    """Spans of the trace whose ingress server span is for `route`, once it has every (service, name)."""
    found: list[list[ReceivedSpan]] = [[]]

    def complete() -> bool:
        root = next((s for s in receiver.spans() if s.service == "adsapp-ingress" and s.name == route), None)
        found[0] = _trace(receiver, root)
        return wanted <= {(s.service, s.name) for s in found[0]}

    assert wait_for(complete, 60, interval=0.2), sorted({(s.service, s.name) for s in found[0]})
    return found[0]


def _parent(spans: list[ReceivedSpan], child: ReceivedSpan) -> ReceivedSpan:
    return next(s for s in spans if s.span_id == child.parent_span_id)


def test_a_webhook_is_one_trace_from_request_to_commit(
    fleet: str, receiver: Receiver, engine: Engine
) -> None:
    tenant = make_tenant(engine)
    body = wa.encode(
        wa.delivery(
            wa.change(tenant.number, messages=[wa.text(recipient(), "traced")]), waba_id=tenant.waba_id
        )
    )
    answer = httpx.post(
        f"{fleet}/webhooks/whatsapp",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": wa.sign(body, SECRET),
                 "x-request-id": "trace-req-1"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    spans = _wait_trace(
        receiver,
        "POST /webhooks/whatsapp",
        {
            ("adsapp-ingress", "POST /webhooks/whatsapp"),
            ("adsapp-ingress", "publish inbound"),
            ("adsapp-worker", "consume inbound"),
            ("adsapp-worker", "db.commit"),
        },
    )
    by_name = {s.name: s for s in spans}
    consume = by_name["consume inbound"]
    assert _parent(spans, consume).name == "publish inbound"
    assert _parent(spans, by_name["publish inbound"]).name == "POST /webhooks/whatsapp"
    assert consume.attributes["adsapp.request_id"] == "trace-req-1"
    commits = [s for s in spans if s.name == "db.commit"]
    assert all(_parent(spans, c).span_id == consume.span_id for c in commits)


def test_an_api_send_is_one_trace_from_request_to_the_graph_call(
    fleet: str, receiver: Receiver, engine: Engine
) -> None:
    tenant = make_tenant(engine)
    answer = httpx.post(
        f"{fleet}/api/v1/messages",
        json={"to": tenant.contact(), "type": "text", "text": {"body": "traced send"}},
        headers={"authorization": f"Bearer {tenant.api_key()}"},
    )
    assert answer.status_code == 202, answer.text
    spans = _wait_trace(
        receiver,
        "POST /api/v1/messages",
        {
            ("adsapp-ingress", "POST /api/v1/messages"),
            ("adsapp-worker", "consume outbound"),
            ("adsapp-worker", "POST"),  # httpx's client span: the Graph API send
        },
    )
    consume = next(s for s in spans if s.name == "consume outbound")
    graph = [s for s in spans if s.service == "adsapp-worker" and s.name == "POST"]
    assert any(
        s.attributes.get("url.full", s.attributes.get("http.url", "")).endswith(f"/{tenant.number}/messages")
        for s in graph
    ), graph
    # The Graph call is inside the consume span (directly or under the handler's own spans).
    ids = {s.span_id: s for s in spans}
    for call in graph:
        ancestor = call
        while ancestor.parent_span_id and ancestor.span_id != consume.span_id:
            ancestor = ids[ancestor.parent_span_id]
        assert ancestor.span_id == consume.span_id
