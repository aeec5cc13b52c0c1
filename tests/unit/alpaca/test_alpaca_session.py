"""The Alpaca stock feed's watchdog only counts silence while the NYSE is in session
(feeds/alpaca.py ``us_equity_session_open``, from the XNYS calendar)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from feeds.alpaca import us_equity_session_open

NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize("moment, is_open", [
    (datetime(2024, 1, 2, 20, 59, tzinfo=timezone.utc), True),  # winter: 15:59 New York
    (datetime(2024, 7, 5, 20, 30, tzinfo=timezone.utc), False),  # summer: 16:30 New York, closed
    (datetime(2024, 7, 5, 13, 30, tzinfo=timezone.utc), True),  # summer open, 09:30 New York
    (datetime(2024, 7, 4, 15, 0, tzinfo=timezone.utc), False),  # Independence Day
    (datetime(2024, 12, 25, 11, 0, tzinfo=NEW_YORK), False),  # Christmas
    (datetime(2024, 11, 29, 13, 30, tzinfo=NEW_YORK), False),  # after the 13:00 early close
    (datetime(2024, 11, 29, 12, 59, tzinfo=NEW_YORK), True),
])
def test_us_equity_session_open_when_calendar_then_holidays_and_early_closes_known(moment, is_open):
    assert us_equity_session_open(moment) is is_open


def test_us_equity_session_open_when_microseconds_before_the_close_then_still_open():
    close = datetime(2024, 1, 2, 21, 0, tzinfo=timezone.utc)
    assert us_equity_session_open(close - timedelta(microseconds=1)) is True
    assert us_equity_session_open(close) is False
