from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.pacing import Pacer
from tests.unit.feeds.conftest import FakeClock

S = 1_000_000_000


def _run(pacer: Pacer, event_times: list[int]) -> None:
    for ts in event_times:
        pacer.wait_until(ts)


def test_pacer_when_speed_2x_then_paced_at_half_event_gaps(fake_clock):
    pacer = Pacer(2.0, clock=fake_clock.clock, sleep=fake_clock.sleep)
    start = fake_clock.now_ns
    _run(pacer, [100 * S, 101 * S, 103 * S, 103 * S, 107 * S])
    assert fake_clock.sleeps == pytest.approx([0.5, 1.0, 2.0])
    assert fake_clock.now_ns - start == pytest.approx(3.5 * S)


def test_pacer_when_speed_1x_then_wall_time_tracks_event_time(fake_clock):
    pacer = Pacer(1.0, clock=fake_clock.clock, sleep=fake_clock.sleep)
    start = fake_clock.now_ns
    events = [i * 250_000_000 for i in range(41)]  # 10 s of event time, a tick every 250 ms
    _run(pacer, events)
    assert fake_clock.now_ns - start == pytest.approx(10 * S, abs=1_000)


def test_pacer_when_speed_10x_then_one_second_gap_takes_a_tenth(fake_clock):
    pacer = Pacer(10.0, clock=fake_clock.clock, sleep=fake_clock.sleep)
    _run(pacer, [0, 1 * S])
    assert fake_clock.sleeps == pytest.approx([0.1])


def test_pacer_when_speed_zero_then_never_sleeps(fake_clock):
    pacer = Pacer(0.0, clock=fake_clock.clock, sleep=fake_clock.sleep)
    _run(pacer, [0, 10 * S, 20 * S])
    assert fake_clock.sleeps == []
    assert not pacer.paced


def test_pacer_when_consumer_fell_behind_then_catches_up_without_sleeping(fake_clock):
    pacer = Pacer(1.0, clock=fake_clock.clock, sleep=fake_clock.sleep)
    pacer.wait_until(0)
    fake_clock.advance(5.0)  # the consumer stalled for 5 s
    _run(pacer, [1 * S, 2 * S, 3 * S, 4 * S])  # all overdue: emitted at once
    assert fake_clock.sleeps == []
    pacer.wait_until(6 * S)  # the schedule is absolute, so only the remaining 1 s is waited
    assert fake_clock.sleeps == pytest.approx([1.0])


def test_pacer_when_gaps_below_min_sleep_then_absorbed_by_a_later_sleep(fake_clock):
    pacer = Pacer(1.0, clock=fake_clock.clock, sleep=fake_clock.sleep, min_sleep_ns=1_000_000)
    _run(pacer, [0, 100_000, 200_000, 300_000, 5_000_000])  # 0.1 ms gaps, then 4.7 ms
    assert fake_clock.sleeps == pytest.approx([0.005])


def test_pacer_when_reset_then_next_tick_is_new_origin(fake_clock):
    pacer = Pacer(1.0, clock=fake_clock.clock, sleep=fake_clock.sleep)
    _run(pacer, [0, 1 * S])
    pacer.reset()
    _run(pacer, [100 * S, 101 * S])
    assert fake_clock.sleeps == pytest.approx([1.0, 1.0])


def test_pacer_when_speed_not_finite_then_rejected():
    with pytest.raises(ValueError, match="finite"):
        Pacer(float("nan"))


@settings(max_examples=200, deadline=None)
@given(speed=st.floats(0.01, 1e5), gap=st.integers(0, 10**15))
def test_pacer_when_due_at_reached_then_the_tick_counts_as_reached_and_not_a_ns_before(speed, gap):
    """due_at and reached agree whatever the float error of dividing by speed: a batching feed
    that sleeps until a tick is due then finds it due (else it would spin)."""
    clock = FakeClock()
    pacer = Pacer(speed, clock=clock.clock, sleep=clock.sleep)
    pacer.anchor(10**18)
    due = pacer.due_at(10**18 + gap)
    assert pacer.reached(due) >= 10**18 + gap
    assert 0 <= (due - clock.now_ns) - gap / speed <= 1  # and not later than the schedule


def test_pacer_when_sleep_until_then_sleeps_the_rest_only(fake_clock):
    pacer = Pacer(1.0, clock=fake_clock.clock, sleep=fake_clock.sleep)
    pacer.sleep_until(fake_clock.now_ns - 5)
    pacer.sleep_until(fake_clock.now_ns + 2_500_000)
    assert fake_clock.sleeps == pytest.approx([0.0025])
