"""Pacing a feed by the wall clock: speed N replays event-time gaps in 1/N of the wall time.

The schedule is absolute, anchored at the first tick: tick k is due at
``wall0 + (ts_event_k - ts_event_0) / speed``. A consumer that falls behind therefore gets the
backlog as fast as it can take it and then the feed is on schedule again; errors never accumulate
the way they would with one ``sleep(gap / speed)`` per tick. Gaps shorter than ``min_sleep_ns``
(1 ms) are not slept; the next longer sleep absorbs them, so a dense tape goes out in bursts of up
to a millisecond, as a venue's feed arrives anyway. Why 1 ms: at 5,000 ticks/s a sleep per tick
(every 200 us) cost the feed about a quarter of its CPU in wake-ups, and an OS sleep that short
overshoots by a good part of what it waits.

Only the feed uses the wall clock (DESIGN §3); everything downstream runs on event time.
"""

from __future__ import annotations

import math
import time
from typing import Callable

NANOS_PER_SECOND = 1_000_000_000


class Pacer:
    """``Pacer(speed)``: 0 (or less) = as fast as possible; 1.0 = event time tracks wall time; N = N× real time.

    ``clock`` (monotonic ns) and ``sleep`` (seconds) are injectable so tests can check the schedule
    without sleeping.
    """

    def __init__(
        self,
        speed: float = 0.0,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
        min_sleep_ns: int = 1_000_000,
    ) -> None:
        if speed != speed or speed in (float("inf"), float("-inf")):
            raise ValueError(f"pacing speed must be a finite number, got {speed!r}")
        self.speed = float(speed)
        self._clock = clock
        self._sleep = sleep
        self._min_sleep_ns = min_sleep_ns
        self._anchor_event: int | None = None
        self._anchor_wall = 0

    @property
    def paced(self) -> bool:
        return self.speed > 0.0

    def wait_until(self, ts_event: int) -> None:
        """Block until the tick with event time ``ts_event`` is due (returns at once when unpaced)."""
        if self.speed <= 0.0:
            return
        now = self._clock()
        if self._anchor_event is None:
            self._anchor_event = ts_event
            self._anchor_wall = now
            return
        due = self._anchor_wall + (ts_event - self._anchor_event) / self.speed
        ahead_ns = due - now
        if ahead_ns >= self._min_sleep_ns:
            self._sleep(ahead_ns / NANOS_PER_SECOND)

    def now(self) -> int:
        """The pacer's wall clock (monotonic ns)."""
        return self._clock()

    def anchor(self, ts_event: int) -> None:
        """Make ``ts_event`` due now, unless the schedule already has an origin."""
        if self._anchor_event is None:
            self._anchor_event = ts_event
            self._anchor_wall = self._clock()

    def reached(self, now: int) -> int:
        """The latest event time due at wall time ``now`` (needs :meth:`anchor` first).

        Rounded to the nearest ns, so a tick is due once the wall clock reaches :meth:`due_at` of it
        whatever the float error of the division by ``speed``.
        """
        return self._anchor_event + math.floor((now - self._anchor_wall) * self.speed + 0.5)

    def due_at(self, ts_event: int) -> int:
        """The wall time (monotonic ns) at which ``ts_event`` is due (needs :meth:`anchor` first)."""
        return self._anchor_wall + math.ceil((ts_event - self._anchor_event) / self.speed)

    def sleep_until(self, wall_ns: int) -> None:
        """Sleep until the wall clock reads ``wall_ns`` (not at all if it already does)."""
        ahead_ns = wall_ns - self._clock()
        if ahead_ns > 0:
            self._sleep(ahead_ns / NANOS_PER_SECOND)

    def reset(self) -> None:
        """Forget the anchor: the next tick is emitted at once and becomes the new schedule origin."""
        self._anchor_event = None
