"""Trading sessions in event time: when a venue is open, when its session closes, which trading day
an instant belongs to.

Two calendars, chosen per run by name (:func:`calendar_by_name`, ``TAPEFLOW_CALENDAR``):

- ``XNYS`` (:class:`ExchangeCalendar`): the New York Stock Exchange's regular sessions from the
  maintained ``exchange_calendars`` library (holidays, early closes such as 13:00 New York the day
  after Thanksgiving, daylight saving time). Sessions are loaded once per process into two sorted
  lists of int (open and close, UTC nanoseconds), so a per-order call is one binary search, no pandas.
- ``24/7`` (:class:`AlwaysOpen`): crypto venues never close; a "session" is the UTC date.

Contracts shared by both (``ts_ns`` is UTC nanoseconds since the epoch):

- ``is_open(ts_ns)``: ``open <= ts_ns < close`` of some session (a session is half-open, so an order
  stamped exactly at the close is outside it).
- ``session_close_after(ts_ns)``: the first session close strictly after ``ts_ns`` (a DAY order live
  at ``ts_ns`` expires there; live between sessions, at the next session's close).
- ``session_day(ts_ns)``: the trading day of ``ts_ns`` as a day number (days since 1970-01-01 of the
  session's date): the session whose close is the first at/after ``ts_ns``. So the trading day
  rolls at each close: an instant after one close and up to the next belongs to the next session
  (a P&L snapshot stamped exactly at the close still counts in the closing session). For 24/7 it is
  the UTC date.

Calendars pickle by name (a recovery snapshot holds a few bytes, not the session arrays) and
unpickle to the one instance of this process.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left, bisect_right
from functools import lru_cache

import numpy as np

NANOS_PER_DAY = 86_400 * 1_000_000_000
ALWAYS_OPEN = "24/7"
XNYS = "XNYS"
CALENDARS = (XNYS, ALWAYS_OPEN)
# Sessions loaded: far enough back for any replay of recorded history, up to what the library knows ahead.
FIRST_SESSION = "2000-01-03"


class TradingCalendar:
    """Interface of a venue's trading sessions (see the module docstring for the contracts)."""

    name: str

    def is_open(self, ts_ns: int) -> bool:
        raise NotImplementedError

    def session_close_after(self, ts_ns: int) -> int:
        raise NotImplementedError

    def session_day(self, ts_ns: int) -> int:
        raise NotImplementedError

    def __reduce__(self):
        return calendar_by_name, (self.name,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class AlwaysOpen(TradingCalendar):
    """A 24/7 venue (crypto): always open; the session is the UTC date, closing at UTC midnight."""

    name = ALWAYS_OPEN

    def is_open(self, ts_ns: int) -> bool:
        return True

    def session_close_after(self, ts_ns: int) -> int:
        return (ts_ns // NANOS_PER_DAY + 1) * NANOS_PER_DAY

    def session_day(self, ts_ns: int) -> int:
        return ts_ns // NANOS_PER_DAY


class ExchangeCalendar(TradingCalendar):
    """An exchange's regular sessions from ``exchange_calendars`` (e.g. ``ExchangeCalendar("XNYS")``).

    Outside the loaded range (before 2000, or past the library's last known session, about a year
    ahead) hours are unknown: ``is_open`` says closed (an order there is refused, not guessed
    into a session), ``session_day`` falls back to the UTC date, and ``session_close_after``
    raises ``ValueError``.
    """

    def __init__(self, name: str = XNYS) -> None:
        import exchange_calendars  # pandas underneath: paid once per process, never per tick

        with warnings.catch_warnings():
            # the library's own use of a pandas API pandas 3.1 deprecates; nothing a caller can act on
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            schedule = exchange_calendars.get_calendar(name, start=FIRST_SESSION).schedule
        opens = _utc_nanos(schedule["open"])
        closes = _utc_nanos(schedule["close"])
        if not (np.all(np.diff(closes) > 0) and np.all(opens < closes)):
            raise ValueError(f"calendar {name}: sessions are not ordered")
        self.name = name
        # Python ints and bisect: a scalar search is ~10x cheaper than numpy's on one value.
        self.opens: list[int] = opens.tolist()
        self.closes: list[int] = closes.tolist()
        self.days: list[int] = (_utc_nanos(schedule.index.tz_localize(None).to_series()) // NANOS_PER_DAY).tolist()

    def session_close_after(self, ts_ns: int) -> int:
        i = bisect_right(self.closes, ts_ns)
        if i >= len(self.closes) or ts_ns < self.opens[0] - NANOS_PER_DAY:
            first, last = (np.datetime64(t, "ns") for t in (self.opens[0], self.closes[-1]))
            raise ValueError(f"{np.datetime64(ts_ns, 'ns')} is outside the {self.name} calendar's known "
                             f"sessions ({first} to {last})")
        return self.closes[i]

    def is_open(self, ts_ns: int) -> bool:
        i = bisect_right(self.closes, ts_ns)
        return i < len(self.closes) and self.opens[i] <= ts_ns

    def session_day(self, ts_ns: int) -> int:
        i = bisect_left(self.closes, ts_ns)
        if i >= len(self.closes) or ts_ns < self.opens[0] - NANOS_PER_DAY:
            return ts_ns // NANOS_PER_DAY
        return self.days[i]


def _utc_nanos(column) -> np.ndarray:
    """A pandas datetime column (UTC or naive) as int64 nanoseconds."""
    values = column.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(column.dt, "tz", None) else column
    return values.to_numpy(dtype="datetime64[ns]").astype(np.int64)


@lru_cache(maxsize=None)
def calendar_by_name(name: str) -> TradingCalendar:
    """The calendar ``name`` names (one of ``CALENDARS``), one instance per process."""
    if name == ALWAYS_OPEN:
        return AlwaysOpen()
    if name == XNYS:
        return ExchangeCalendar(XNYS)
    raise ValueError(f"unknown calendar {name!r}; calendars: {', '.join(CALENDARS)}")
