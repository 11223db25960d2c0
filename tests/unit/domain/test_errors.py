from __future__ import annotations

import pytest

from domain.errors import (
    ErrorKind,
    GraphApiPermanent,
    GraphApiTransient,
    GraphErrorInfo,
    PermanentError,
    TransientError,
    classify_graph_error,
    graph_error,
)


@pytest.mark.parametrize("code", [4, 80007, 130429, 131056, 133016])
def test_throttling_codes_are_transient(code: int) -> None:
    assert classify_graph_error(400, code) is ErrorKind.TRANSIENT
    assert isinstance(graph_error(GraphErrorInfo(code, "t", 400)), TransientError)


@pytest.mark.parametrize("code", [131026, 131047, 131050, 132000, 132001, 132015, 368, 131051])
def test_message_errors_are_permanent(code: int) -> None:
    assert classify_graph_error(400, code) is ErrorKind.PERMANENT
    err = graph_error(GraphErrorInfo(code, "t", 400))
    assert isinstance(err, GraphApiPermanent) and isinstance(err, PermanentError)


@pytest.mark.parametrize("code", [190, 10, 200])
def test_auth_codes_are_their_own_kind(code: int) -> None:
    assert classify_graph_error(401, code) is ErrorKind.AUTH


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, "transient"),
        (503, "transient"),
        (429, "transient"),
        (None, "transient"),
        (400, "permanent"),
        (404, "permanent"),
    ],
)
def test_http_status_without_a_code(status: int | None, kind: str) -> None:
    assert classify_graph_error(status, None) == kind


def test_transient_subclass() -> None:
    assert isinstance(graph_error(GraphErrorInfo(None, "boom", 502)), GraphApiTransient)
