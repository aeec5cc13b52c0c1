"""The venue on ticks as columns: ``SimVenue.on_ticks`` gives the reports ``on_trade`` / ``on_quote``
give row by row, at the same rows, whatever the orders (market, limit, IOC, DAY through a session
close) and however the tape is cut into runs; the recent volume is the same however its prints
were recorded and read."""

from __future__ import annotations

import pickle
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Order, Side, TimeInForce, Trade, content_hash
from schemas.columns import TickBatch
from tests.unit.venues.factories import MS, cancel, order, quote, trade
from venues import SimVenue, SimVenueConfig
from venues.fill_model import RecentVolume

SYMBOLS = ("AAPL", "MSFT", "IBM", "SPY")  # orders in the first two only: the others are always quiet
# 2024-07-03 16:59:00 UTC: the NYSE closes early that day, at 17:00 UTC, 60 s into the tape
T0 = 1_720_025_940 * 1_000_000_000
CONFIG = SimVenueConfig()


def tape(seed: int, n_orders: int = 50, n_ticks: int = 1_500) -> list:
    """Orders, cancels, trades and quotes in event order over 120 s, a session close at 60 s."""
    rng = random.Random(seed)
    # a DAY buy far below the market: rests until the close, where it expires
    events = [(T0, 0, order("resting", Side.BUY, 10, limit=90.0, tif=TimeInForce.DAY, ts=T0, symbol="AAPL"))]
    for i in range(n_orders):
        ts = T0 + rng.randrange(0, 100_000) * MS
        symbol = rng.choice(SYMBOLS[:2])
        side = rng.choice([Side.BUY, Side.SELL])
        # limits on the passive side, some beyond where the market goes: they rest until the close
        limit = round(100 - side.sign * rng.uniform(0.0, 0.9), 2) if rng.random() < 0.6 else None
        events.append((ts, 0, order(f"o{i}", side, rng.choice([1, 10, 55.5, 300]),
                                    limit=limit, tif=rng.choice(list(TimeInForce)), ts=ts, symbol=symbol)))
        if rng.random() < 0.2:
            events.append((ts + rng.randrange(1, 5_000) * MS, 1, cancel(f"o{i}", ts=ts + 1, symbol=symbol)))
    for j in range(n_ticks):
        ts = T0 + j * 80 * MS
        symbol = rng.choice(SYMBOLS)
        mid = 100 + rng.uniform(-0.5, 0.5)
        if rng.random() < 0.5:
            events.append((ts, 2, trade(round(mid, 2), rng.choice([0.5, 5, 20.25, 100]), ts=ts, symbol=symbol)))
        else:
            events.append((ts, 2, quote(round(mid - 0.01, 2), round(mid + 0.01, 2), bid_size=rng.choice([0, 50]),
                                        ask_size=rng.choice([0, 50.5]), ts=ts, symbol=symbol)))
    events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in events]


def row_by_row(events: list) -> list:
    venue = SimVenue(CONFIG)
    out = []
    for event in events:
        if type(event) is Order:
            out.extend(venue.on_order(event))
        else:
            out.extend(venue.on_trade(event) if type(event) is Trade else venue.on_quote(event))
    return out, venue


def as_columns(events: list, cuts: list[int]) -> list:
    """Orders one by one; the ticks between them in runs cut every ``cuts`` rows (cycled)."""
    venue = SimVenue(CONFIG)
    out: list = []
    ticks: list = []

    def run() -> None:
        if not ticks:
            return
        batch = TickBatch.from_records(ticks)
        rows: list[int] = []
        venue.on_ticks(batch, lambda row, reports: (rows.append(row), out.extend(reports)))
        assert rows == sorted(set(rows))  # each row once, in order
        ticks.clear()

    for event in events:
        if type(event) is Order:
            run()
            out.extend(venue.on_order(event))
        else:
            ticks.append(event)
            if len(ticks) >= cuts[len(out) % len(cuts)]:
                run()
    run()
    return out, venue


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 400), min_size=1, max_size=5))
def test_on_ticks_when_the_tape_comes_as_runs_then_the_same_reports_and_stats_as_row_by_row(seed, cuts):
    events = tape(seed)
    expected, venue = row_by_row(events)
    got, columns = as_columns(events, cuts)
    assert any(r.is_fill for r in expected) and any(r.reason == "day_expired" for r in expected)
    assert content_hash(got) == content_hash(expected)
    assert columns.stats() == venue.stats()
    probe = T0 + 121_000 * MS
    for symbol in SYMBOLS:
        assert columns._volume.volume(symbol, probe) == venue._volume.volume(symbol, probe)


def test_on_ticks_when_no_order_works_then_no_row_goes_through_the_matching():
    venue = SimVenue(CONFIG)
    ticks = [trade(100.0, 5, ts=T0 + i * MS, symbol=SYMBOLS[i % 4]) for i in range(200)]
    venue._on_trade_at = None  # would raise if any row were taken one by one
    venue.on_ticks(TickBatch.from_records(ticks), lambda row, reports: None)
    assert venue.stats()["trades_seen"] == 200
    assert venue._volume.volume("AAPL", T0 + 300 * MS) == 250.0


@settings(max_examples=50, deadline=None)
@given(prints=st.lists(st.tuples(st.integers(0, 90_000), st.floats(0.01, 1e4)), min_size=1, max_size=300),
       cuts=st.lists(st.integers(1, 50), min_size=1, max_size=4), reads=st.sets(st.integers(0, 299)))
def test_recent_volume_when_prints_come_as_columns_then_the_same_volume_as_one_by_one(prints, cuts, reads):
    """Any sizes (float sums depend on order), gaps longer than the window (fresh starts), reads at any
    time, a snapshot in between."""
    prints = sorted(prints)
    one, many = RecentVolume(30 * 1_000 * MS), RecentVolume(30 * 1_000 * MS)
    start, step = 0, 0
    while start < len(prints):
        stop = min(len(prints), start + cuts[step % len(cuts)])
        chunk = prints[start:stop]
        for ms, size in chunk:
            one.record("X", ms * MS, size)
        many.record_many("X", np.array([ms * MS for ms, _ in chunk]), np.array([size for _, size in chunk]))
        if step in reads:
            at = chunk[-1][0] * MS
            assert many.volume("X", at) == one.volume("X", at)
        if step == 3:
            many = pickle.loads(pickle.dumps(many))
        start, step = stop, step + 1
    for ms in (prints[-1][0], prints[-1][0] + 15_000, prints[-1][0] + 40_000):
        assert many.volume("X", ms * MS) == one.volume("X", ms * MS)
