"""Replays are reproducible: same input, same reports (wall-clock stamps aside), across restarts."""

import pickle
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import OrderState, Side, TimeInForce, content_hash
from tests.unit.venues.factories import MS, T0, cancel, order, quote, trade
from venues import SimVenue, SimVenueConfig


def _tape(seed: int, n_orders: int = 60, n_ticks: int = 400):
    """A random but seeded interleaving of orders, cancels, trades and quotes over two symbols."""
    rng = random.Random(seed)
    events = []
    for i in range(n_orders):
        ts = T0 + rng.randrange(0, 2_000) * MS
        symbol = rng.choice(["AAPL", "MSFT"])
        side = rng.choice([Side.BUY, Side.SELL])
        tif = rng.choice(list(TimeInForce))
        limit = round(100 + rng.uniform(-1, 1), 2) if rng.random() < 0.5 else None
        events.append((ts, 0, order(f"o{i}", side, rng.choice([1, 10, 55.5, 300]), limit=limit, tif=tif,
                                    ts=ts, symbol=symbol)))
        if rng.random() < 0.2:
            events.append((ts + rng.randrange(1, 500) * MS, 1, cancel(f"o{i}", ts=ts + 1, symbol=symbol)))
    for j in range(n_ticks):
        ts = T0 + j * 5 * MS
        symbol = rng.choice(["AAPL", "MSFT"])
        mid = 100 + rng.uniform(-1, 1)
        if rng.random() < 0.5:
            events.append((ts, 2, trade(round(mid, 2), rng.choice([5, 20, 100]), ts=ts, symbol=symbol)))
        else:
            events.append((ts, 2, quote(round(mid - 0.01, 2), round(mid + 0.01, 2), bid_size=rng.choice([0, 50]),
                                        ask_size=rng.choice([0, 50]), ts=ts, symbol=symbol)))
    events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in events]


def _run(venue: SimVenue, tape) -> list:
    reports = []
    for event in tape:
        kind = type(event).__name__
        if kind == "Order":
            reports += venue.on_order(event)
        elif kind == "Trade":
            reports += venue.on_trade(event)
        else:
            reports += venue.on_quote(event)
    return reports


def test_replay_when_same_input_twice_then_identical_reports_excluding_ingest_stamps():
    tape = _tape(seed=1)
    first, second = _run(SimVenue(), tape), _run(SimVenue(), tape)
    assert len(first) > 100 and any(r.is_fill for r in first)
    assert [r.content() for r in first] == [r.content() for r in second]
    assert content_hash(first) == content_hash(second)


def test_report_ids_when_full_run_then_unique_and_fill_ids_sequential_per_order():
    reports = _run(SimVenue(), _tape(seed=2))
    assert len({r.id for r in reports}) == len(reports)
    fills_by_order: dict[str, list[str]] = {}
    for r in reports:
        if r.is_fill:
            fills_by_order.setdefault(r.client_order_id, []).append(r.fill_id)
    for coid, fill_ids in fills_by_order.items():
        assert fill_ids == [f"{coid}:{n}" for n in range(1, len(fill_ids) + 1)]


def test_venue_when_pickled_mid_run_then_restored_copy_continues_identically():
    tape = _tape(seed=3)
    half = len(tape) // 2
    uninterrupted = SimVenue()
    _run(uninterrupted, tape[:half])
    restored = pickle.loads(pickle.dumps(uninterrupted))
    tail_a, tail_b = _run(uninterrupted, tape[half:]), _run(restored, tape[half:])
    assert [r.content() for r in tail_a] == [r.content() for r in tail_b]
    assert restored.stats() == uninterrupted.stats()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000), participation=st.sampled_from([0.1, 0.5, 1.0]))
def test_every_order_when_replayed_then_reports_follow_the_life_cycle(seed, participation):
    venue = SimVenue(SimVenueConfig(participation=participation))
    reports = _run(venue, _tape(seed, n_orders=25, n_ticks=150))
    by_order: dict[str, list] = {}
    for r in reports:
        by_order.setdefault(r.client_order_id, []).append(r)
    for coid, history in by_order.items():
        transitions = [r for r in history if not r.reason.startswith(("cancel_rejected", "new_rejected"))]
        states = [r.state for r in transitions]
        assert states[0] in (OrderState.ACCEPTED, OrderState.REJECTED), coid
        assert all(not s.is_terminal for s in states[:-1]), coid  # nothing after a terminal state
        fills = [r for r in history if r.is_fill]
        if fills:
            assert abs(sum(r.last_qty for r in fills) - fills[-1].cum_qty) < 1e-9, coid
        for r in transitions:
            if not r.state.is_terminal:
                assert abs(r.cum_qty + r.leaves_qty - r.order_qty) < 1e-9
            assert r.cum_qty <= r.order_qty + 1e-9
    open_ids = {o.client_order_id for o in venue.open_orders()}
    assert open_ids == {coid for coid, history in by_order.items() if not history[-1].state.is_terminal}
