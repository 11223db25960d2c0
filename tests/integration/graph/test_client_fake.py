"""GraphClient against the fake Graph API over real HTTP, with faults injected at runtime."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import httpx
import pytest

from domain.errors import ErrorKind, GraphAmbiguousOutcome, GraphApiPermanent, GraphApiTransient
from domain.media import decode_sha256
from tests.support.fake_graph import RunningFakeGraph
from workers.graph.client import GraphClient

pytestmark = pytest.mark.integration


def client(fake: RunningFakeGraph, **kwargs: Any) -> GraphClient:
    return GraphClient(fake.url, "v21.0", retry_initial_wait=0.01, retry_max_wait=0.05, **kwargs)


def text(marker: str, to: str = "15550100") -> dict[str, Any]:
    return {"to": to, "type": "text", "text": {"body": "hi"}, "biz_opaque_callback_data": marker}


def test_send_is_accepted_once_and_logged(fake: RunningFakeGraph) -> None:
    with client(fake) as graph:
        result = graph.send_message("111", "tok", text("m-1"))
        template = graph.send_message(
            "111", "tok", {"to": "15550100", "type": "template", "template": {"name": "hello"}}
        )
    assert result.wamid.startswith("wamid.") and result.wa_id == "15550100"
    assert template.message_status == "accepted" and template.wamid != result.wamid
    log = fake.log()
    assert log["total"] == 2
    assert log["counts"] == [{"phone_number_id": "111", "marker": "m-1", "count": 1}]
    assert log["sends"][0]["wamid"] == result.wamid


def test_permanent_error_reaches_the_caller_with_its_code(fake: RunningFakeGraph) -> None:
    fake.add_fault(kind="error", code=131047, count=1)
    with client(fake) as graph, pytest.raises(GraphApiPermanent) as caught:
        graph.send_message("111", "tok", text("m-2"))
    assert caught.value.info.code == 131047 and caught.value.info.http_status == 400
    assert caught.value.info.title == "(#131047) Re-engagement message"
    assert fake.sends() == 0 and fake.requests("messages", "111") == 1


def test_bad_token_is_an_auth_error(fake: RunningFakeGraph) -> None:
    fake.configure(bad_tokens=["expired"])
    with client(fake) as graph, pytest.raises(GraphApiPermanent) as caught:
        graph.send_message("111", "expired", text("m-3"))
    assert caught.value.kind is ErrorKind.AUTH and caught.value.info.code == 190


def test_throttle_burst_is_retried_and_sent_exactly_once(fake: RunningFakeGraph) -> None:
    fake.add_fault(kind="throttle", count=2)
    with client(fake) as graph:
        graph.send_message("111", "tok", text("m-4"))
    assert fake.requests("messages", "111") == 3
    assert fake.log()["counts"] == [{"phone_number_id": "111", "marker": "m-4", "count": 1}]


def test_outage_is_transient(fake: RunningFakeGraph) -> None:
    fake.add_fault(kind="outage")
    with client(fake, retry_attempts=2) as graph, pytest.raises(GraphApiTransient) as caught:
        graph.send_message("111", "tok", text("m-5"))
    assert caught.value.info.http_status == 503 and caught.value.info.code == 2
    assert fake.sends() == 0


def test_timeout_after_meta_accepted_is_ambiguous_and_not_resent(fake: RunningFakeGraph) -> None:
    fake.add_fault(kind="timeout", hang_seconds=1.0, count=1)
    with client(fake, timeout=0.2) as graph, pytest.raises(GraphAmbiguousOutcome):
        graph.send_message("111", "tok", text("m-6"))
    assert fake.requests("messages", "111") == 1
    assert fake.log()["counts"] == [{"phone_number_id": "111", "marker": "m-6", "count": 1}]


def test_timeout_answered_before_the_client_gives_up_is_a_gateway_504_and_ambiguous(
    fake: RunningFakeGraph,
) -> None:
    fake.add_fault(kind="timeout", hang_seconds=0.2, count=1)
    answer = httpx.post(f"{fake.url}/v21.0/111/messages", headers={"authorization": "Bearer tok"},
                        json={"messaging_product": "whatsapp", **text("m-6b")}, timeout=5)  # fmt: skip
    # Meta accepted it; the gateway that gave up says nothing Meta would (no error body, no code 2).
    assert answer.status_code == 504 and "error" not in answer.text
    fake.add_fault(kind="timeout", hang_seconds=0.2, count=1)
    with client(fake, timeout=5.0) as graph, pytest.raises(GraphAmbiguousOutcome):
        graph.send_message("111", "tok", text("m-6c"))
    assert fake.requests("messages", "111") == 2
    counts = {row["marker"]: row["count"] for row in fake.log()["counts"]}
    assert counts == {"m-6b": 1, "m-6c": 1}


def test_dropped_connection_is_ambiguous(fake: RunningFakeGraph) -> None:
    fake.add_fault(kind="drop", phone_number_id="222", count=1)
    with client(fake) as graph:
        graph.send_message("111", "tok", text("m-7"))  # another number: unaffected
        with pytest.raises(GraphAmbiguousOutcome):
            graph.send_message("222", "tok", text("m-8"))
    assert fake.requests("messages", "222") == 1


def test_connection_refused_is_transient_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    graph = GraphClient(f"http://127.0.0.1:{port}", "v21.0", retry_initial_wait=0.001, retry_max_wait=0.01)
    with graph, pytest.raises(GraphApiTransient) as caught:
        graph.send_message("111", "tok", text("m-9"))
    assert caught.value.info.code is None and "ConnectError" in caught.value.info.title


def test_media_metadata_and_download_match(fake: RunningFakeGraph) -> None:
    fake.seed_media("media-1", mime_type="application/pdf", file_size=70_000)
    with client(fake) as graph:
        info = graph.get_media("media-1", "tok")
        content = graph.download(info.url, "tok")
        assert (info.mime_type, info.file_size, info.id) == ("application/pdf", 70_000, "media-1")
        assert decode_sha256(info.sha256) == hashlib.sha256(content).digest() and len(content) == 70_000
        with pytest.raises(GraphApiPermanent):
            graph.download(info.url, "tok", max_bytes=65_536)


def test_templates_are_read_across_pages(fake: RunningFakeGraph) -> None:
    seeded = [{"name": f"t{i}", "language": "en_US", "status": "APPROVED"} for i in range(23)]
    fake.seed_templates("waba-1", seeded)
    with client(fake) as graph:
        templates = graph.list_templates("waba-1", "tok", limit=5)
    assert [t["name"] for t in templates] == [t["name"] for t in seeded]
    assert fake.requests("templates", "waba-1") == 5


def test_error_rate_applies_to_roughly_that_share(fake: RunningFakeGraph) -> None:
    fake.add_fault(kind="error", code=131026, rate=0.5)
    failed = 0
    with client(fake) as graph:
        for i in range(200):
            try:
                graph.send_message("111", "tok", text(f"r-{i}"))
            except GraphApiPermanent:
                failed += 1
    assert 60 < failed < 140
    assert fake.sends() == 200 - failed
