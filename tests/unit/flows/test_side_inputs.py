"""The side inputs beside the feed (operator commands, a live venue's reports): woken as often as
the feed's input, so their Bytewax epochs never fall behind the feed's (flows/source.py), and
reading their channel at their own cadence."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

import flows.source as source
from config.control_channel import ControlChannel, make_command
from flows.source import ControlSource, FeedLimits, VenueReportSource
from schemas import ControlKind


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(source.time, "monotonic", fake)
    return fake


def control_partition(tmp_path, limits: FeedLimits, wake_every_s: float | None = None):
    channel = ControlChannel(tmp_path / "control.jsonl")
    part = ControlSource(channel, limits, wake_every_s).build_part("control", "control", None)
    return channel, part


def test_control_is_due_at_every_activation_and_reads_the_spool_every_100_ms(tmp_path, clock):
    channel, part = control_partition(tmp_path, FeedLimits())
    assert part.next_batch() == []  # the first read: nothing sent yet
    sent = channel.send(make_command(ControlKind.KILL_SWITCH, value=1.0))
    assert part.next_awake() is None  # woken with the feed, never left behind it
    clock.now += 0.05
    assert part.next_batch() == []  # between reads: no file access
    clock.now += 0.06
    assert [c.id for c in part.next_batch()] == [sent.id]
    assert part.snapshot() == channel.end_offset()
    assert part.next_awake() is None


def test_control_woken_at_a_given_cadence_asks_for_it(tmp_path, clock):
    _, part = control_partition(tmp_path, FeedLimits(), wake_every_s=0.002)
    before = datetime.now(timezone.utc)
    part.next_batch()
    awake = part.next_awake()
    assert awake is not None and 0 < (awake - before).total_seconds() < 1.0


def test_control_ends_with_the_feed(tmp_path, clock):
    limits = FeedLimits()
    _, part = control_partition(tmp_path, limits)
    limits.feed_done.set()
    with pytest.raises(StopIteration):
        part.next_batch()


class Venue:
    def __init__(self) -> None:
        self.reports: list[str] = []
        self.drains = 0

    def drain_reports(self) -> list[str]:
        self.drains += 1
        out, self.reports = self.reports, []
        return out


def test_venue_reports_are_drained_every_50_ms_and_all_of_them_at_the_feed_end(clock):
    venue, done = Venue(), threading.Event()
    part = VenueReportSource(venue, FeedLimits(feed_done=done)).build_part("venue_reports", "venue", None)
    assert part.next_batch() == [] and venue.drains == 1
    venue.reports = ["fill-1"]
    clock.now += 0.01
    assert part.next_batch() == [] and venue.drains == 1  # not due yet
    assert part.next_awake() is None
    clock.now += 0.05
    assert part.next_batch() == ["fill-1"]
    venue.reports = ["fill-2"]
    done.set()  # the tape ended: what the venue holds goes out at once, then the input ends
    assert part.next_batch() == ["fill-2"]
    with pytest.raises(StopIteration):
        part.next_batch()
