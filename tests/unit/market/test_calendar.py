"""Trading sessions (market/calendar.py): NYSE hours in summer and winter, early closes, holidays,
the trading day rolling at the close, 24/7 for crypto, and calendars that pickle by name."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone

import pytest

from market.calendar import AlwaysOpen, ExchangeCalendar, calendar_by_name

NS = 1_000_000_000
XNYS = calendar_by_name("XNYS")


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * NS


def day(text: str) -> int:
    return utc(text) // (86_400 * NS)


@pytest.mark.parametrize("at, close", [
    ("2024-01-02T15:00", "2024-01-02T21:00"),  # winter: 16:00 New York = 21:00 UTC
    ("2024-07-05T15:00", "2024-07-05T20:00"),  # summer: 16:00 New York = 20:00 UTC
    ("2024-07-03T15:00", "2024-07-03T17:00"),  # early close, 13:00 New York
    ("2024-11-29T15:00", "2024-11-29T18:00"),  # day after Thanksgiving, 13:00 New York
    ("2024-07-04T15:00", "2024-07-05T20:00"),  # Independence Day: the next session's close
    ("2024-12-24T19:00", "2024-12-26T21:00"),  # after Christmas Eve's early close, past Christmas
    ("2024-01-02T21:00", "2024-01-03T21:00"),  # exactly at a close: strictly after it
])
def test_session_close_after_when_xnys_then_the_real_close(at, close):
    assert XNYS.session_close_after(utc(at)) == utc(close)


@pytest.mark.parametrize("at, is_open", [
    ("2024-01-02T14:30", True), ("2024-01-02T14:29:59", False),  # winter open 09:30 New York
    ("2024-01-02T20:59:59", True), ("2024-01-02T21:00", False),  # the close is outside the session
    ("2024-07-05T13:30", True), ("2024-07-05T20:00", False),  # summer: an hour earlier in UTC
    ("2024-07-03T16:59:59", True), ("2024-07-03T17:00", False),  # early close
    ("2024-07-04T15:00", False), ("2024-12-25T15:00", False),  # holidays
    ("2024-01-06T15:00", False),  # a Saturday
])
def test_is_open_when_xnys_then_regular_hours_only(at, is_open):
    assert XNYS.is_open(utc(at)) is is_open


def test_session_day_when_xnys_then_rolls_at_the_close():
    assert XNYS.session_day(utc("2024-01-02T14:30")) == day("2024-01-02")
    assert XNYS.session_day(utc("2024-01-02T21:00")) == day("2024-01-02")  # a snapshot at the close counts in it
    assert XNYS.session_day(utc("2024-01-02T21:00:01")) == day("2024-01-03")
    assert XNYS.session_day(utc("2024-01-03T02:00")) == day("2024-01-03")
    assert XNYS.session_day(utc("2024-07-03T18:00")) == day("2024-07-05")  # after the early close, past the holiday
    assert XNYS.session_day(utc("2024-01-06T12:00")) == day("2024-01-08")  # a weekend belongs to Monday


def test_xnys_when_outside_known_sessions_then_closed_and_close_refused():
    assert XNYS.is_open(utc("1990-01-02T15:00")) is False
    assert XNYS.session_day(utc("1990-01-02T15:00")) == day("1990-01-02")
    with pytest.raises(ValueError, match="outside the XNYS calendar's known sessions"):
        XNYS.session_close_after(utc("1990-01-02T15:00"))


def test_always_open_when_any_time_then_open_and_sessions_are_utc_dates():
    crypto = calendar_by_name("24/7")
    saturday = utc("2020-02-22T13:05")
    assert isinstance(crypto, AlwaysOpen) and crypto.is_open(saturday)
    assert crypto.session_close_after(saturday) == utc("2020-02-23T00:00")
    assert crypto.session_close_after(utc("2020-02-23T00:00")) == utc("2020-02-24T00:00")
    assert crypto.session_day(saturday) == day("2020-02-22")


def test_calendar_when_pickled_then_restored_by_name_to_the_same_instance():
    assert isinstance(XNYS, ExchangeCalendar)
    for calendar in (XNYS, calendar_by_name("24/7")):
        data = pickle.dumps(calendar)
        assert len(data) < 200  # the name, not the session arrays
        assert pickle.loads(data) is calendar


def test_calendar_by_name_when_unknown_then_error_lists_calendars():
    with pytest.raises(ValueError, match=r"unknown calendar 'XLON'; calendars: XNYS, 24/7"):
        calendar_by_name("XLON")
