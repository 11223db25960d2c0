"""Which failures count against which breaker."""

from __future__ import annotations

from domain.errors import GraphAmbiguousOutcome, GraphErrorInfo, graph_error
from workers.graph.breaker import counts_against_api, counts_against_number


def error(code: int | None, status: int | None) -> Exception:
    return graph_error(GraphErrorInfo(code=code, title="x", http_status=status))


def test_permanent_and_auth_errors_count_against_nothing() -> None:
    for failure in (error(131047, 400), error(132000, 400), error(190, 401), error(None, 404)):
        assert not counts_against_number(failure)
        assert not counts_against_api(failure)


def test_server_trouble_counts_against_both() -> None:
    for failure in (
        error(None, 500),
        error(None, None),
        error(2, 503),
        GraphAmbiguousOutcome("read timeout"),
    ):
        assert counts_against_number(failure)
        assert counts_against_api(failure)


def test_throttling_counts_against_the_number_only_and_pair_rate_against_neither() -> None:
    assert counts_against_number(error(130429, 429))
    assert not counts_against_api(error(130429, 429))
    assert not counts_against_number(error(131056, 400))
    assert not counts_against_api(error(131056, 400))


def test_foreign_exceptions_count_against_nothing() -> None:
    assert not counts_against_number(KeyError("bug"))
    assert not counts_against_api(KeyError("bug"))
