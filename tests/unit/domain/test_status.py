from __future__ import annotations

import pytest

from domain.status import MessageStatus as S
from domain.status import advances, parse_webhook_status


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (S.SENT, S.DELIVERED, True),
        (S.DELIVERED, S.READ, True),
        (S.SENT, S.READ, True),
        (S.READ, S.DELIVERED, False),
        (S.DELIVERED, S.SENT, False),
        (S.SENT, S.SENT, False),
        (S.SENT, S.FAILED, True),
        (S.DELIVERED, S.FAILED, True),
        (S.FAILED, S.DELIVERED, False),
        (S.FAILED, S.READ, False),
        (S.READ, S.FAILED, False),
        (S.QUEUED, S.SENDING, True),
        (S.SENDING, S.SENT, True),
    ],
)
def test_status_only_moves_forward(current: S, incoming: S, expected: bool) -> None:
    assert advances(current, incoming) is expected


def test_webhook_status_names() -> None:
    assert parse_webhook_status("played") is S.READ
    assert parse_webhook_status("delivered") is S.DELIVERED
    assert parse_webhook_status("deleted") is None
