"""A tapeflow feed as a resumable Bytewax source.

The feed is one partition; its resume state is the sequence number of the next tick, so a
restarted embedded pipeline continues at exactly the tick after the last snapshot (feeds are
deterministic from any ``start_seq``).

A feed with ``batches()`` (synthetic, replay) hands over :class:`schemas.columns.RawTickBatch`
columns, with a replay's irregular rows as RawTick records between them, in seq order; empty
batches are heartbeats that carry a paced feed's watermark. A feed with only ``ticks()`` (Alpaca)
hands over RawTick records, gathered up to ``BATCH_MAX_TICKS`` or ``BATCH_MAX_SECONDS``.

When the run ends and will flush (``end_of_tape``: the tape ran out, or a run without recovery was
stopped by a limit or Ctrl-C), the last handover is an empty batch whose watermark is
:data:`schemas.columns.END_OF_TAPE_WATERMARK`: bars close and the desk trades the last bar on it at
once, as on any heartbeat, instead of waiting for the engine's end of input to reach each stage. A
resumable run that was cut short sends none: its open bars stay open for the resume.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator, Protocol, Union

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from schemas import ControlCommand, ExecutionReport, RawTick
from schemas.columns import END_OF_TAPE_WATERMARK, RawTickBatch
from config.control_channel import ControlChannel
from feeds.batching import empty_batch

# Rows a handover holds at most. Unpaced, each stage's cost per batch is a few NumPy calls, so larger
# batches replay faster (1M synthetic ticks, market-data half: ~410k ticks/s at 2,000 rows, ~540k at
# 8,000). A paced feed hands over every millisecond (~10 rows at 10,000 ticks/s) and the cap only
# bounds a backlog; there 2,000 measured better (tick -> order p50 2.5 ms against 4.9-5.6 ms with
# 8,000 in alternating 100 s runs at 10,000 ticks/s; the cause was not found).
BATCH_MAX_TICKS = 8_000
PACED_BATCH_MAX_TICKS = 2_000
BATCH_MAX_SECONDS = 0.02  # a paced feed hands over what it has at least this often


FeedItem = Union[RawTickBatch, RawTick]


class Feed(Protocol):
    def ticks(self, start_seq: int = 0) -> Iterator[RawTick]: ...


class BatchFeed(Feed, Protocol):
    def batches(self, start_seq: int = 0, max_rows: int = ...) -> Iterator[FeedItem]: ...


def as_records(item: FeedItem) -> list[RawTick]:
    """A feed item as RawTick records (a heartbeat batch has none): the bridge for stages that
    still read records."""
    return item.to_records() if type(item) is RawTickBatch else [item]


class TickCounter(Protocol):
    def count_ticks(self, n: int) -> None: ...


@dataclass
class FeedLimits:
    """When a run ends before its feed does: a tick count (from seq 0), a wall-clock duration, or
    an external stop (Ctrl-C). Ending this way is a normal end of input: stages flush and the
    sink writes everything."""

    max_ticks: int | None = None
    duration_s: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    # Set when the source ended because of a limit rather than the end of the tape: a resumable
    # run then keeps its open bars in state instead of flushing them half-built.
    cut_short: threading.Event = field(default_factory=threading.Event)
    # Set when the feed source has ended for any reason; other sources (control) end with it.
    feed_done: threading.Event = field(default_factory=threading.Event)

    def deadline(self) -> float | None:
        return None if self.duration_s is None else time.monotonic() + self.duration_s


class _FeedPartition(StatefulSourcePartition[FeedItem, int]):
    def __init__(self, feed: Feed, start_seq: int, counter: TickCounter | None, limits: FeedLimits,
                 end_of_tape: Callable[[], bool] | None = None):
        batches = getattr(feed, "batches", None)
        max_rows = PACED_BATCH_MAX_TICKS if getattr(feed, "speed", 0) > 0 else BATCH_MAX_TICKS
        self._items: Iterator[FeedItem] = (
            batches(start_seq, max_rows=max_rows) if batches is not None else feed.ticks(start_seq)
        )
        self._next_seq = start_seq
        self._counter = counter
        self._limits = limits
        self._deadline = limits.deadline()
        self._end_of_tape = end_of_tape
        self._end_marked = False
        self._source = "feed"  # the source the end-of-tape batch names: the tape's own, once seen

    def _exhausted(self, now: float) -> bool:
        limits = self._limits
        return (
            (limits.max_ticks is not None and self._next_seq >= limits.max_ticks)
            or (self._deadline is not None and now >= self._deadline)
            or limits.stop.is_set()
        )

    def next_batch(self) -> list[FeedItem]:
        """The feed's next handover: records until BATCH_MAX_TICKS rows or BATCH_MAX_SECONDS, and
        up to (including) the next RawTickBatch, which is a whole handover of its feed."""
        items: list[FeedItem] = []
        now = time.monotonic()
        if self._exhausted(now):
            self._limits.cut_short.set()
            return self._ended()
        deadline = now + BATCH_MAX_SECONDS
        max_ticks = self._limits.max_ticks
        rows = 0
        for item in self._items:
            if type(item) is RawTickBatch:
                if max_ticks is not None and len(item) and item.seq[-1] >= max_ticks:
                    self._limits.cut_short.set()
                    kept = np.flatnonzero(item.seq < max_ticks)  # seq ascends: a head
                    # The rows cut off come after a resume: the promise can reach only the first of them.
                    watermark = None if item.watermark is None else min(item.watermark, int(item.ts_event[len(kept)]))
                    item = replace(item.take(kept), watermark=watermark)
                    if not len(item):
                        break
                items.append(item)
                rows += len(item)
                if len(item):
                    self._next_seq = int(item.seq[-1]) + 1
                break
            if max_ticks is not None and item.seq >= max_ticks:
                self._limits.cut_short.set()
                break
            items.append(item)
            rows += 1
            self._next_seq = item.seq + 1
            if rows >= BATCH_MAX_TICKS or time.monotonic() >= deadline:
                break
        if not items:
            return self._ended()
        self._source = items[-1].source
        if self._counter is not None and rows:
            self._counter.count_ticks(rows)
        return items

    def _ended(self) -> list[FeedItem]:
        """The end of the feed: first the end-of-tape batch (see the module docstring) when the run
        flushes at its end, then the end of input."""
        if self._end_of_tape is not None and not self._end_marked and self._end_of_tape():
            self._end_marked = True
            return [empty_batch(self._source, (), END_OF_TAPE_WATERMARK)]
        self._limits.feed_done.set()
        raise StopIteration()

    def snapshot(self) -> int:
        return self._next_seq


class FeedSource(FixedPartitionedSource[FeedItem, int]):
    """The feed as one partition of :data:`FeedItem` lists; resume state: the next seq."""

    PARTITION = "feed"

    def __init__(self, feed: Feed, counter: TickCounter | None = None, limits: FeedLimits | None = None,
                 end_of_tape: Callable[[], bool] | None = None):
        """``end_of_tape``: asked when the feed ends; true hands over the end-of-tape batch first
        (the run's ``flush_at_end``). None: never."""
        self._feed = feed
        self._counter = counter
        self._limits = limits or FeedLimits()
        self._end_of_tape = end_of_tape

    def list_parts(self) -> list[str]:
        return [self.PARTITION]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FeedPartition:
        return _FeedPartition(self._feed, resume_state or 0, self._counter, self._limits, self._end_of_tape)


# Side inputs (operator commands, a live venue's reports) beside the feed. Bytewax starts an input's
# next epoch at the first activation that finds the epoch interval elapsed, and an input emits
# nothing in a new epoch until the whole dataflow has finished the previous one. A side input woken
# every P ms (``next_awake``) therefore starts each epoch up to P ms later than the feed, which is
# activated every millisecond; the lateness adds up epoch after epoch, and the feed stood still at
# every epoch end for as long: measured at 10,000 ticks/s with a 100 ms poll, +30 ms per 2 s epoch,
# 1.1 s after 90 s (bar end -> order p99 1.2 s). So a side input is woken as often as the input it
# runs beside: at every activation (``wake_every_s`` None: the feed sleeps inside ``next_batch``
# when paced, so this costs one cheap call per hand-over), or at that input's own cadence; and it
# reads its channel only every ``read_every_s``.
class _SideInput:
    def __init__(self, read_every_s: float, wake_every_s: float | None):
        self._read_every_s = read_every_s
        self._wake_every = None if wake_every_s is None else timedelta(seconds=wake_every_s)
        self._next_read = 0.0
        self._next_awake: datetime | None = None

    def _read_due(self) -> bool:
        """Whether to read the channel now; schedules the next wake-up either way."""
        if self._wake_every is not None:
            self._next_awake = datetime.now(timezone.utc) + self._wake_every
        now = time.monotonic()
        if now < self._next_read:
            return False
        self._next_read = now + self._read_every_s
        return True

    def next_awake(self) -> datetime | None:
        return self._next_awake


class _ControlPartition(_SideInput, StatefulSourcePartition[ControlCommand, int]):
    READ_EVERY_S = 0.1

    def __init__(self, channel: ControlChannel, offset: int, feed_done: threading.Event, wake_every_s: float | None):
        super().__init__(self.READ_EVERY_S, wake_every_s)
        self._channel = channel
        self._offset = offset
        self._feed_done = feed_done

    def next_batch(self) -> list[ControlCommand]:
        if self._feed_done.is_set():
            raise StopIteration()  # the run ends with its tape
        if not self._read_due():
            return []
        commands, _, self._offset = self._channel.read_from(self._offset)
        return commands

    def snapshot(self) -> int:
        return self._offset


class ControlSource(FixedPartitionedSource[ControlCommand, int]):
    """Operator commands from the control spool, from its end at start (or the resumed offset).
    Ends when the feed ends, so a finite tape still finishes the dataflow. ``wake_every_s``: how
    often Bytewax wakes it (None: at every activation; see ``_SideInput`` for why it must keep up
    with the feed's input); the spool is read every 100 ms."""

    def __init__(self, channel: ControlChannel, limits: FeedLimits, wake_every_s: float | None = None):
        self._channel = channel
        self._limits = limits
        self._wake_every_s = wake_every_s

    def list_parts(self) -> list[str]:
        return ["control"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ControlPartition:
        offset = self._channel.end_offset() if resume_state is None else resume_state
        return _ControlPartition(self._channel, offset, self._limits.feed_done, self._wake_every_s)


class _VenueReportPartition(_SideInput, StatefulSourcePartition[ExecutionReport, None]):
    READ_EVERY_S = 0.05

    def __init__(self, venue, feed_done: threading.Event, wake_every_s: float | None):
        super().__init__(self.READ_EVERY_S, wake_every_s)
        self._venue = venue
        self._feed_done = feed_done

    def next_batch(self) -> list[ExecutionReport]:
        done = self._feed_done.is_set()
        if not self._read_due() and not done:
            return []
        reports = self._venue.drain_reports()
        if not reports and done:
            raise StopIteration()
        return reports

    def snapshot(self) -> None:
        return None


class VenueReportSource(FixedPartitionedSource[ExecutionReport, None]):
    """Execution reports a live venue (Alpaca) receives on its own stream, polled into the desk
    every 50 ms. Ends with the feed, after handing over what the venue still holds.
    ``wake_every_s``: as :class:`ControlSource`'s."""

    def __init__(self, venue, limits: FeedLimits, wake_every_s: float | None = None):
        self._venue = venue
        self._limits = limits
        self._wake_every_s = wake_every_s

    def list_parts(self) -> list[str]:
        return ["venue"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _VenueReportPartition:
        return _VenueReportPartition(self._venue, self._limits.feed_done, self._wake_every_s)
