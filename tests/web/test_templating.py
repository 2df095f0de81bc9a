"""The time words pages use; static/js/ui.js says them the same way (tests/ui checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from astra.web.templating import ago, iso_time

NOW = datetime(2026, 5, 2, 14, 15, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds_before", "said"),
    [
        (-90, "seconds ago"),  # the store's clock, or ours, runs ahead
        (0, "seconds ago"),
        (59, "seconds ago"),
        (60, "1 min ago"),
        (3599, "59 min ago"),
        (3600, "1 h ago"),
        (86399, "23 h ago"),
        (86400, "1 d ago"),
        (86400 * 45, "45 d ago"),
    ],
)
def test_ago(seconds_before: int, said: str) -> None:
    assert ago(NOW - timedelta(seconds=seconds_before), NOW) == said


def test_iso_time_is_utc_to_the_second() -> None:
    berlin = timezone(timedelta(hours=2))
    moment = datetime(2026, 5, 2, 16, 15, 31, 987654, tzinfo=berlin)
    assert iso_time(moment) == "2026-05-02T14:15:31Z"
