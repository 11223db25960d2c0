"""The bulk job rules that need no I/O: chunk sizes, outcomes, final states, allowed operations."""

from __future__ import annotations

import pytest

from domain import bulk as rules


@pytest.mark.parametrize(("mps", "size"), [(1, 10), (20, 20), (80, 80), (1000, 500)])
def test_a_chunk_is_about_a_second_of_the_numbers_sends_within_bounds(mps: int, size: int) -> None:
    assert rules.chunk_size_for(mps) == size
    assert rules.chunks_of(1001, size) == -(-1001 // size)


def test_an_item_takes_its_messages_outcome_once_it_has_one() -> None:
    assert [rules.item_outcome(s) for s in ("queued", "sending", "sent", "delivered", "read")] == [
        None, None, "succeeded", "succeeded", "succeeded",
    ]  # fmt: skip
    assert rules.item_outcome("failed") == rules.item_outcome("ambiguous") == "failed"


def test_final_status_names_errors_and_cancellation() -> None:
    assert rules.final_status({}, cancelling=False) == "completed"
    assert rules.final_status({"failed": 1}, cancelling=False) == "completed_with_errors"
    assert rules.final_status({"skipped": 2}, cancelling=False) == "completed_with_errors"
    assert rules.final_status({"failed": 1}, cancelling=True) == "cancelled"


def test_operations_allowed_by_state() -> None:
    assert [s for s in rules.JOB_STATUSES if rules.can_pause(s)] == ["pending", "running"]
    assert [s for s in rules.JOB_STATUSES if rules.can_resume(s, "pending")] == ["paused"]
    assert [s for s in rules.JOB_STATUSES if rules.can_resume(s, "failed")] == [
        "running", "paused", "completed_with_errors",
    ]  # fmt: skip
    assert [s for s in rules.JOB_STATUSES if rules.can_cancel(s)] == ["pending", "running", "paused"]


def test_settles_are_looked_at_about_when_the_sends_should_be_done() -> None:
    assert rules.settle_delay_ms(80, 80) == 1000
    assert rules.settle_delay_ms(10, 1000) == 500
    assert rules.settle_delay_ms(500, 20) == 10_000
    assert "131026" in rules.PERMANENT_FOR_RECIPIENT and "131049" not in rules.PERMANENT_FOR_RECIPIENT


def test_a_running_job_keeps_about_three_seconds_of_its_numbers_sends_released() -> None:
    assert rules.release_window(rules.chunk_size_for(80), 80) == rules.RELEASE_WINDOW
    assert rules.release_window(rules.chunk_size_for(200), 200) == rules.RELEASE_WINDOW
    # 500-item chunks at 1,000 mps are half a second each: six of them are three seconds.
    assert rules.release_window(rules.chunk_size_for(1000), 1000) == 6
    assert rules.release_window(10, 0) >= rules.RELEASE_WINDOW
