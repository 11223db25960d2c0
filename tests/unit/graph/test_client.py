"""GraphClient edge cases over httpx.MockTransport: parsing, error mapping, retry policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from domain.errors import (
    ErrorKind,
    FleetError,
    GraphAmbiguousOutcome,
    GraphApiPermanent,
    GraphApiTransient,
    TransientError,
)
from workers.graph.client import GraphClient

Handler = Callable[[httpx.Request], httpx.Response]
SEND_OK = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "+1 555 0100", "wa_id": "15550100"}],
    "messages": [{"id": "wamid.ABC"}],
}
TEXT = {"to": "15550100", "type": "text", "text": {"body": "hi"}}


class Recorder:
    """A MockTransport handler that answers from a script and keeps every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            if isinstance(answer, httpx.RequestError):
                answer._request = request
            raise answer
        return answer


def meta_error(status: int, code: int, message: str = "boom", **extra: Any) -> httpx.Response:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Atrace", **extra}
    return httpx.Response(status, json={"error": error})


def client_for(handler: Handler, **kwargs: Any) -> GraphClient:
    return GraphClient(
        "https://graph.test",
        "v21.0",
        transport=httpx.MockTransport(handler),
        retry_initial_wait=0.001,
        retry_max_wait=0.005,
        **kwargs,
    )


def test_send_parses_wamid_and_contact_and_sends_meta_shape() -> None:
    recorder = Recorder(httpx.Response(200, json=SEND_OK))
    result = client_for(recorder).send_message("123", "tok", TEXT)
    assert (result.wamid, result.wa_id, result.input) == ("wamid.ABC", "15550100", "+1 555 0100")
    request = recorder.requests[0]
    assert request.url == "https://graph.test/v21.0/123/messages"
    assert request.headers["authorization"] == "Bearer tok"
    assert b'"messaging_product":"whatsapp"' in request.content


def test_template_send_keeps_message_status() -> None:
    body = {**SEND_OK, "messages": [{"id": "wamid.T", "message_status": "accepted"}]}
    result = client_for(Recorder(httpx.Response(200, json=body))).send_message("1", "t", TEXT)
    assert result.message_status == "accepted"


def test_permanent_meta_error_is_mapped_with_all_fields_and_not_retried() -> None:
    recorder = Recorder(
        meta_error(400, 131047, "Re-engagement message", error_subcode=2494010, error_data={"details": "24h"})
    )
    with pytest.raises(GraphApiPermanent) as caught:
        client_for(recorder).send_message("1", "t", TEXT)
    info = caught.value.info
    assert (info.code, info.title, info.http_status, info.details) == (
        131047,
        "Re-engagement message",
        400,
        "24h",
    )
    assert (info.subcode, info.error_type, info.fbtrace_id) == (2494010, "OAuthException", "Atrace")
    assert caught.value.kind is ErrorKind.PERMANENT
    assert len(recorder.requests) == 1


def test_auth_error_is_permanent_of_kind_auth_and_not_retried() -> None:
    recorder = Recorder(meta_error(401, 190, "Invalid OAuth access token"))
    with pytest.raises(GraphApiPermanent) as caught:
        client_for(recorder).send_message("1", "t", TEXT)
    assert caught.value.kind is ErrorKind.AUTH
    assert len(recorder.requests) == 1


def test_throughput_throttle_is_retried_in_call_and_can_succeed() -> None:
    recorder = Recorder(meta_error(429, 130429), meta_error(429, 130429), httpx.Response(200, json=SEND_OK))
    assert client_for(recorder).send_message("1", "t", TEXT).wamid == "wamid.ABC"
    assert len(recorder.requests) == 3


@pytest.mark.parametrize("code", [131056, 80007, 4, 131048])
def test_long_throttles_are_transient_but_left_to_the_caller(code: int) -> None:
    recorder = Recorder(meta_error(400, code))
    with pytest.raises(GraphApiTransient) as caught:
        client_for(recorder).send_message("1", "t", TEXT)
    assert caught.value.info.code == code
    assert len(recorder.requests) == 1


def test_server_error_is_transient_after_the_in_call_attempts() -> None:
    recorder = Recorder(meta_error(500, 131000, "Something went wrong"))
    with pytest.raises(GraphApiTransient) as caught:
        client_for(recorder, retry_attempts=3).send_message("1", "t", TEXT)
    assert caught.value.info.http_status == 500
    assert len(recorder.requests) == 3


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(502, text="<html>Bad Gateway</html>"),
        httpx.Response(504, json={"error": {"message": "timeout", "code": 2}}),
        httpx.Response(500, text="upstream trouble"),
    ],
)
def test_a_gateway_answer_to_a_send_is_ambiguous_and_never_resent(answer: httpx.Response) -> None:
    recorder = Recorder(answer)
    with pytest.raises(GraphAmbiguousOutcome) as caught:
        client_for(recorder, retry_attempts=3).send_message("1", "t", TEXT)
    assert f"HTTP {answer.status_code}" in caught.value.detail
    assert len(recorder.requests) == 1


def test_a_gateway_answer_to_a_read_is_transient() -> None:
    recorder = Recorder(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(GraphApiTransient) as caught:
        client_for(recorder, retry_attempts=1).get_media("m1", "t")
    assert caught.value.info.code is None
    assert caught.value.info.title.startswith("HTTP 502")


def test_connect_error_is_transient_and_retried() -> None:
    recorder = Recorder(
        httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.Response(200, json=SEND_OK)
    )
    assert client_for(recorder).send_message("1", "t", TEXT).wamid == "wamid.ABC"
    assert len(recorder.requests) == 3


def test_connect_error_that_persists_ends_transient() -> None:
    recorder = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(TransientError):
        client_for(recorder, retry_attempts=2).send_message("1", "t", TEXT)
    assert len(recorder.requests) == 2


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.ReadError("connection reset"),
        httpx.WriteTimeout("write timed out"),
    ],
)
def test_failure_after_the_request_left_is_ambiguous_and_never_resent(failure: Exception) -> None:
    recorder = Recorder(failure)
    with pytest.raises(GraphAmbiguousOutcome) as caught:
        client_for(recorder).send_message("555", "t", TEXT)
    assert not isinstance(caught.value, TransientError)
    assert isinstance(caught.value, FleetError)
    assert caught.value.phone_number_id == "555"
    assert len(recorder.requests) == 1


def test_success_without_a_wamid_is_ambiguous() -> None:
    recorder = Recorder(httpx.Response(200, json={"messaging_product": "whatsapp"}))
    with pytest.raises(GraphAmbiguousOutcome):
        client_for(recorder).send_message("1", "t", TEXT)
    assert len(recorder.requests) == 1


def test_read_timeout_on_a_read_is_transient_and_retried() -> None:
    media = {
        "url": "https://cdn.test/m",
        "mime_type": "image/png",
        "sha256": "ab",
        "file_size": 3,
        "id": "m1",
    }
    recorder = Recorder(httpx.ReadTimeout("slow"), httpx.Response(200, json=media))
    info = client_for(recorder).get_media("m1", "t")
    assert (info.url, info.mime_type, info.file_size, info.id) == ("https://cdn.test/m", "image/png", 3, "m1")
    assert len(recorder.requests) == 2


def test_download_is_capped() -> None:
    recorder = Recorder(httpx.Response(200, content=b"x" * 5000))
    client = client_for(recorder)
    assert client.download("https://cdn.test/m", "t", max_bytes=5000) == b"x" * 5000
    with pytest.raises(GraphApiPermanent):
        client.download("https://cdn.test/m", "t", max_bytes=4999)


def test_templates_follow_cursors_through_every_page() -> None:
    pages = {
        None: {
            "data": [{"name": "a"}, {"name": "b"}],
            "paging": {"cursors": {"after": "c1"}, "next": "https://x/?after=c1"},
        },
        "c1": {
            "data": [{"name": "c"}],
            "paging": {"cursors": {"after": "c2"}, "next": "https://x/?after=c2"},
        },
        "c2": {"data": [{"name": "d"}], "paging": {"cursors": {"before": "c2", "after": "c3"}}},
    }
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        seen.append(after)
        assert request.url.host == "graph.test"  # the token never follows a `next` link elsewhere
        return httpx.Response(200, json=pages[after])

    names = [t["name"] for t in client_for(handler).list_templates("waba", "t", limit=2)]
    assert names == ["a", "b", "c", "d"]
    assert seen == [None, "c1", "c2"]


def test_missing_token_is_refused_before_any_call() -> None:
    recorder = Recorder(httpx.Response(200, json=SEND_OK))
    with pytest.raises(FleetError):
        client_for(recorder).send_message("1", "", TEXT)
    assert recorder.requests == []
