from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.outbound import ClaimVerdict, decide_claim, send_job, within_customer_window

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_the_customer_window_is_24_hours_from_their_last_message() -> None:
    assert within_customer_window(NOW - timedelta(hours=23, minutes=59), NOW)
    assert not within_customer_window(NOW - timedelta(hours=24), NOW)
    assert not within_customer_window(None, NOW)


@pytest.mark.parametrize(
    ("status", "wamid", "lease_expired", "verdict"),
    [
        ("queued", None, False, ClaimVerdict.SEND),
        ("queued", None, True, ClaimVerdict.SEND),
        ("sending", None, False, ClaimVerdict.WAIT),
        ("sending", None, True, ClaimVerdict.AMBIGUOUS),
        ("sending", "wamid.x", True, ClaimVerdict.DONE),
        ("sent", "wamid.x", False, ClaimVerdict.DONE),
        ("failed", None, False, ClaimVerdict.DONE),
        ("ambiguous", None, True, ClaimVerdict.DONE),
        ("delivered", "wamid.x", False, ClaimVerdict.DONE),
    ],
)
def test_what_a_send_job_does_with_its_message(
    status: str, wamid: str | None, lease_expired: bool, verdict: ClaimVerdict
) -> None:
    assert decide_claim(status, wamid, lease_expired) is verdict


def test_the_send_job_carries_what_pacing_needs() -> None:
    org, message = uuid4(), uuid4()
    job = send_job(org, message, "pn-1", "15550001", delay_ms=250)
    assert (job.queue, job.actor, job.delay_ms) == ("outbound", "send_message", 250)
    assert job.kwargs == {
        "organization_id": str(org),
        "message_id": str(message),
        "phone_number_id": "pn-1",
        "to": "15550001",
    }
