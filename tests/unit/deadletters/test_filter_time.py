"""How an operator's `since`/`until` is read, the same in the CLI and the console."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.deadletters import filter_time


def test_a_time_without_an_offset_is_utc_and_one_with_keeps_it() -> None:
    assert filter_time("2026-12-01T09:30") == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert filter_time("2026-12-01T09:30+02:00") == datetime(2026, 12, 1, 9, 30, tzinfo=plus_two)


def test_text_that_is_not_a_time_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        filter_time("yesterday")
