"""Vendor timestamps into int ns since the epoch (UTC): the one time parser that feeds, venues and
normalize share."""

from __future__ import annotations

import calendar
import re

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def rfc3339_to_ns(text: str) -> int:
    """``2024-01-02T14:30:00.123456789Z`` (or with a ``+hh:mm`` offset) as int ns since the epoch.

    Parsed by hand: ``datetime`` keeps only microseconds and Alpaca stamps nanoseconds. Raises
    ValueError on anything else, a date that does not exist (``2024-02-31``, ``2023-02-29``) included.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, frac, _z, sign, off_h, off_m = match.groups()
    if not (1 <= int(month) <= 12 and int(hour) < 24 and int(minute) < 60 and int(second) < 61):
        raise ValueError(f"{text!r} has a field out of range")
    # timegm normalises an impossible date (Feb 31 -> Mar 2): refuse it instead of moving the event.
    days_in_month = calendar.monthrange(int(year), int(month))[1]
    if not 1 <= int(day) <= days_in_month:
        raise ValueError(f"{text!r} is not a date: {year}-{month} has {days_in_month} days")
    if sign is not None and (int(off_h) > 23 or int(off_m) > 59):
        raise ValueError(f"{text!r} has an offset out of range")
    seconds = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    if sign is not None:
        offset = int(off_h) * 3600 + int(off_m) * 60
        seconds -= offset if sign == "+" else -offset
    return seconds * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
