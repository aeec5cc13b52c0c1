"""SignalState: cross-section completion in event time, signals and delta orders, book feedback."""

from __future__ import annotations

import pickle

import pytest

from schemas import DeadLetter, Order, OrderState, RiskReject, Side, Signal, content_hash
from strategies.signals import CrossSection, RELEASED_MEMORY, SignalState
from strategies.base import Strategy
from strategies.baseline import BaselineConfig, BaselineStrategy
from strategies.ids import client_order_id
from strategies.portfolio import PortfolioConfig, PortfolioConstructor
from tests.unit.strategies.fixtures import EIGHT, SECOND, T0, fill_report, state_report, vector

T1, T2, T3 = T0 + SECOND, T0 + 2 * SECOND, T0 + 3 * SECOND
ABC = ("A", "B", "C")
# top_n = 1 over three names: long the strongest buying, short the strongest selling, 0.5 each.
STRATEGY = BaselineConfig(top_n=1)
PORTFOLIO = PortfolioConfig(capital=10_000.0, max_weight_per_name=0.5)
BULLISH = {"A": 0.6, "B": 0.0, "C": -0.6}  # -> A +0.5 (50 shares at 100), C -0.5 (-50)


def make_state(symbols=ABC, **kwargs) -> SignalState:
    return SignalState(
        BaselineStrategy(kwargs.pop("strategy", STRATEGY)),
        PortfolioConstructor(kwargs.pop("portfolio", PORTFOLIO)),
        account="paper",
        symbols=symbols,
        **kwargs,
    )


def bar(imbalances: dict[str, float], bar_end: int, **kwargs):
    return [vector(s, bar_end, imbalance=x, **kwargs) for s, x in imbalances.items()]


def feed(state: SignalState, vectors) -> list:
    out = []
    for fv in vectors:
        out.extend(state.on_features(fv))
    return out


def signals(out) -> list[Signal]:
    return [r for r in out if isinstance(r, Signal)]


def orders(out) -> list[Order]:
    return [r for r in out if isinstance(r, Order)]


# --- completion ---------------------------------------------------------------------------------


def test_cross_section_is_released_when_every_universe_symbol_has_arrived():
    state = make_state()
    assert state.on_features(vector("C", T0, imbalance=-0.6)) == []
    assert state.on_features(vector("A", T0, imbalance=0.6)) == []
    out = state.on_features(vector("B", T0, imbalance=0.0))
    assert [(type(r).__name__, r.symbol) for r in out] == [
        ("Signal", "A"), ("Signal", "B"), ("Signal", "C"), ("Order", "A"), ("Order", "C"),
    ]
    assert state.pending_bar_times == []


def test_signals_carry_score_weight_versions_and_their_vectors_tick_time():
    state = make_state()
    out = feed(state, [vector(s, T0, imbalance=x, tick_ingest=10 + i) for i, (s, x) in enumerate(BULLISH.items())])
    by_symbol = {s.symbol: s for s in signals(out)}
    a = by_symbol["A"]
    assert a.id == f"sig:baseline:A:{T0}"
    assert (a.account, a.strategy, a.bar_end, a.ts_event) == ("paper", "baseline", T0, T0)
    assert a.strategy_version == BaselineStrategy(STRATEGY).version and a.model_version == ""
    assert a.score > 0 and a.target_weight == 0.5
    assert by_symbol["B"].target_weight == 0.0 and by_symbol["C"].target_weight == -0.5
    assert [by_symbol[s].ts_tick_ingest for s in ABC] == [10, 11, 12]


def test_orders_are_sized_from_the_vector_close_and_stamped_with_the_latest_tick():
    state = make_state()
    vectors = [vector(s, T0, imbalance=x, close=p, tick_ingest=t) for (s, x), p, t in zip(BULLISH.items(), (100.0, 50.0, 20.0), (7, 9, 8))]
    a, c = orders(feed(state, vectors))
    assert (a.symbol, a.side, a.quantity) == ("A", Side.BUY, 50.0)
    assert (c.symbol, c.side, c.quantity) == ("C", Side.SELL, 250.0)
    assert a.id == client_order_id("baseline", "A", Side.BUY, T0, 0)
    assert a.signal_id == f"sig:baseline:A:{T0}" and a.ts_event == T0
    assert a.ts_tick_ingest == c.ts_tick_ingest == 9


def test_cross_section_when_every_symbol_reached_it_then_released_with_the_symbols_that_traded():
    state = make_state()
    assert feed(state, [vector("A", T0, imbalance=0.6), vector("C", T0, imbalance=-0.6)]) == []
    out = state.on_features(vector("B", T1, imbalance=0.1))  # B had no bar at T0 and moved past it
    assert [s.symbol for s in signals(out)] == ["A", "C"]
    assert {s.bar_end for s in signals(out)} == {T0}
    assert state.pending_bar_times == [T1]


def test_cross_section_when_vectors_arrive_in_any_interleaving_then_same_releases():
    tape = [vector("A", T0), vector("B", T0), vector("C", T0), vector("A", T1), vector("B", T1), vector("C", T1),
            vector("A", T2), vector("B", T2), vector("C", T2)]
    per_symbol_order = sorted(tape, key=lambda v: (v.symbol, v.bar_end))  # one symbol after another
    releases = []
    for order in (tape, per_symbol_order):
        state = make_state()
        out = feed(state, order) + state.flush()
        releases.append([(s.bar_end, s.symbol, s.target_weight) for s in signals(out)])
    assert releases[0] == releases[1] and len(releases[0]) == 9


def test_cross_section_when_emit_orders_off_then_one_cross_section_item_per_bar_time():
    state = make_state(emit_orders=False)
    (item,) = feed(state, bar(BULLISH, T0))
    assert isinstance(item, CrossSection) and item.bar_end == T0
    assert [s.symbol for s in item.signals] == ["A", "B", "C"]
    assert item.ts_tick_ingest == max(s.ts_tick_ingest for s in item.signals)


def test_max_wait_bars_holds_an_incomplete_cross_section_for_more_later_bars():
    state = make_state(max_wait_bars=2)
    feed(state, [vector("A", T0), vector("B", T0)])
    assert state.on_features(vector("A", T1)) == []  # one later bar time: keep waiting for C
    assert signals(state.on_features(vector("C", T0)))  # ...and C did arrive: T0 is complete
    assert state.pending_bar_times == [T1]
    feed(state, [vector("B", T1)])
    out = state.on_features(vector("A", T2))
    assert out == []  # T1 has one later bar time; not enough with max_wait_bars=2
    out = state.on_features(vector("A", T3))
    assert {s.bar_end for s in signals(out)} == {T1}


def test_a_complete_later_bar_releases_every_earlier_one_first():
    state = make_state(max_wait_bars=3)
    feed(state, [vector("A", T0), vector("B", T0)])
    out = feed(state, bar({"A": 0.1, "B": 0.2, "C": 0.3}, T1))
    assert [s.bar_end for s in signals(out)] == [T0, T0, T1, T1, T1]


def test_without_a_universe_the_first_bar_waits_for_a_later_bar():
    state = make_state(symbols=None)
    assert feed(state, bar(BULLISH, T0)) == []
    out = feed(state, [vector("A", T1), vector("B", T1), vector("C", T1)])
    assert [s.symbol for s in signals(out)] == ["A", "B", "C"]


def test_without_a_universe_a_bar_completes_once_every_seen_symbol_moved_past_it():
    state = make_state(symbols=None)
    feed(state, bar(BULLISH, T0))
    feed(state, [vector("A", T1), vector("B", T1)])
    assert state.on_features(vector("C", T1)) == []  # T1 complete for A, B, C but maybe not for others
    out = state.on_features(vector("A", T2))
    assert [s.bar_end for s in signals(out)] == [T1, T1, T1]


def test_single_symbol_universe_trades_the_raw_imbalance():
    state = make_state(symbols=("A",))
    out = state.on_features(vector("A", T0, imbalance=0.5))
    (signal,) = signals(out)
    (order,) = orders(out)
    assert signal.target_weight == 1.0
    assert (order.side, order.quantity) == (Side.BUY, 50.0)  # capped at 0.5 of 10k at 100


def test_flush_releases_every_pending_bar_in_time_order():
    state = make_state(max_wait_bars=5)
    assert feed(state, [vector("A", T1), vector("B", T1), vector("A", T2)]) == []
    out = state.flush()
    assert [s.bar_end for s in signals(out)] == [T1, T1, T2]
    assert state.pending_bar_times == [] and state.flush() == []


# --- duplicates, late data, filtering ---------------------------------------------------------


def test_the_same_vector_delivered_twice_while_pending_is_ignored():
    state = make_state()
    feed(state, [vector("A", T0, imbalance=0.6), vector("A", T0, imbalance=0.6)])
    assert state.stats["duplicates"] == 1
    out = feed(state, [vector("B", T0), vector("C", T0, imbalance=-0.6)])
    assert len(signals(out)) == 3


def test_the_same_vector_delivered_again_after_release_is_ignored_not_reordered():
    state = make_state()
    first = feed(state, bar(BULLISH, T0))
    assert orders(first)
    assert feed(state, bar(BULLISH, T0)) == []
    assert state.stats["duplicates"] == 3


def test_a_stream_with_every_vector_twice_gives_the_same_records_as_once():
    stream = bar(BULLISH, T0) + bar({"A": -0.6, "B": 0.0, "C": 0.6}, T1) + bar(BULLISH, T2)
    once = feed(make_state(), stream)
    twice = feed(make_state(), [fv for fv in stream for _ in (0, 1)])
    assert content_hash(once) == content_hash(twice)
    assert len({o.client_order_id for o in orders(twice)}) == len(orders(twice))


def test_a_vector_for_a_released_bar_time_is_late_and_goes_to_the_dlq():
    state = make_state(max_wait_bars=1)
    feed(state, [vector("A", T0), vector("B", T0), vector("A", T1)])  # C silent a bar: T0 goes without it
    (dead,) = state.on_features(vector("C", T0))
    assert isinstance(dead, DeadLetter)
    assert (dead.reason, dead.stage, dead.source_topic, dead.symbol) == ("late", "signals", "features", "C")
    assert dead.id == f"dlq:signals:baseline:C:{T0}" and '"symbol":"C"' in dead.payload
    assert state.stats["late"] == 1


def test_vectors_of_other_feature_sets_intervals_or_symbols_are_ignored():
    state = make_state()
    assert state.on_features(vector("A", T0, feature_set="v2")) == []
    assert state.on_features(vector("A", T0, interval="1m")) == []
    assert state.on_features(vector("Z", T0)) == []
    assert state.stats["ignored"] == 3 and state.pending_bar_times == []


# --- netting against the book -------------------------------------------------------------------


def test_an_unfilled_order_counts_as_open_so_the_next_bar_does_not_resend_it():
    state = make_state()
    assert len(orders(feed(state, bar(BULLISH, T0)))) == 2
    assert state.open_qty() == {"A": 50.0, "C": -50.0}
    assert orders(feed(state, bar(BULLISH, T1))) == []


def test_fills_move_quantity_from_open_to_position():
    state = make_state()
    feed(state, bar(BULLISH, T0))
    coid = client_order_id("baseline", "A", Side.BUY, T0)
    state.on_fill(fill_report(coid, "A", Side.BUY, 50.0, 20.0, "f1"))
    assert state.positions == {"A": 20.0} and state.open_qty()["A"] == 30.0
    state.on_fill(fill_report(coid, "A", Side.BUY, 50.0, 30.0, "f2", cum_qty=50.0))
    assert state.positions == {"A": 50.0} and "A" not in state.open_qty()
    assert coid not in state.working_orders


def test_a_duplicate_fill_is_counted_once():
    state = make_state()
    feed(state, bar(BULLISH, T0))
    coid = client_order_id("baseline", "A", Side.BUY, T0)
    report = fill_report(coid, "A", Side.BUY, 50.0, 20.0, "f1")
    state.on_fill(report)
    state.on_fill(report)
    assert state.positions == {"A": 20.0} and state.open_qty()["A"] == 30.0


def test_a_stale_report_cannot_grow_the_working_quantity_back():
    state = make_state()
    feed(state, bar(BULLISH, T0))
    coid = client_order_id("baseline", "A", Side.BUY, T0)
    state.on_fill(fill_report(coid, "A", Side.BUY, 50.0, 20.0, "f1"))
    state.on_execution_report(state_report(coid, "A", Side.BUY, 50.0, OrderState.ACCEPTED))  # leaves 50
    assert state.open_qty()["A"] == 30.0


def test_a_canceled_remainder_is_released_and_resent_as_a_new_delta_next_bar():
    state = make_state()
    feed(state, bar(BULLISH, T0))
    coid = client_order_id("baseline", "A", Side.BUY, T0)
    state.on_fill(fill_report(coid, "A", Side.BUY, 50.0, 20.0, "f1"))
    state.on_execution_report(state_report(coid, "A", Side.BUY, 50.0, OrderState.CANCELED, cum_qty=20.0))
    assert "A" not in state.open_qty()
    (order,) = [o for o in orders(feed(state, bar(BULLISH, T1))) if o.symbol == "A"]
    assert (order.side, order.quantity) == (Side.BUY, 30.0)
    assert order.client_order_id == client_order_id("baseline", "A", Side.BUY, T1)


def test_a_risk_reject_releases_the_order():
    state = make_state()
    (a, _c) = orders(feed(state, bar(BULLISH, T0)))
    state.on_reject(RiskReject(id=f"{a.id}:rej", ts_event=T0, ts_ingest=1, account="paper", order=a, reasons=["max_gross"], ts_tick_ingest=1))
    assert "A" not in state.open_qty()
    assert [o.symbol for o in orders(feed(state, bar(BULLISH, T1)))] == ["A"]


def test_reports_of_other_strategies_or_accounts_do_not_touch_the_book():
    state = make_state()
    feed(state, bar(BULLISH, T0))
    coid = client_order_id("baseline", "A", Side.BUY, T0)
    state.on_fill(fill_report(coid, "A", Side.BUY, 50.0, 50.0, "f1", strategy="lgbm"))
    state.on_fill(fill_report(coid, "A", Side.BUY, 50.0, 50.0, "f2", account="other"))
    assert state.positions == {} and state.open_qty()["A"] == 50.0


def test_reversed_flow_flips_the_filled_book_with_one_order_per_symbol():
    state = make_state()
    for order in orders(feed(state, bar(BULLISH, T0))):
        state.on_fill(fill_report(order.client_order_id, order.symbol, order.side, order.quantity, order.quantity, f"f-{order.symbol}"))
    assert state.positions == {"A": 50.0, "C": -50.0}
    a, c = orders(feed(state, bar({"A": -0.6, "B": 0.0, "C": 0.6}, T1)))
    assert (a.symbol, a.side, a.quantity) == ("A", Side.SELL, 100.0)
    assert (c.symbol, c.side, c.quantity) == ("C", Side.BUY, 100.0)


def test_booking_orders_as_filled_nets_without_reports_and_keeps_no_working_orders():
    state = make_state(book_orders_as_filled=True)
    feed(state, bar(BULLISH, T0))
    assert state.positions == {"A": 50.0, "C": -50.0} and state.working_orders == {}
    assert orders(feed(state, bar(BULLISH, T1))) == []
    coid = client_order_id("baseline", "A", Side.BUY, T0)
    state.on_fill(fill_report(coid, "A", Side.BUY, 50.0, 50.0, "f1"))  # would double count
    assert state.positions == {"A": 50.0, "C": -50.0}


# --- state contracts ----------------------------------------------------------------------------


def test_state_pickles_mid_stream_and_continues_identically():
    stream = bar(BULLISH, T0) + [vector("A", T1)] + bar({"A": -0.6, "B": 0.1, "C": 0.6}, T2)
    uninterrupted = make_state()
    reference = feed(uninterrupted, stream) + uninterrupted.flush()
    state = make_state()
    head = feed(state, stream[:4])
    assert state.pending_bar_times == [T1]
    resumed = pickle.loads(pickle.dumps(state))
    assert content_hash(head + feed(resumed, stream[4:]) + resumed.flush()) == content_hash(reference)


def test_replays_are_byte_identical():
    stream = [
        fv for k, t in enumerate((T0, T1, T2)) for fv in bar({s: ((3 * i + 5 * k) % 7 - 3) / 5 for i, s in enumerate(EIGHT)}, t)
    ]
    runs = []
    for _ in range(2):
        state = make_state(symbols=EIGHT, strategy=BaselineConfig())
        out = feed(state, stream) + state.flush()
        assert len(signals(out)) == 24 and orders(out)
        runs.append(content_hash(out))
    assert runs[0] == runs[1]


def test_memory_stays_bounded_over_a_long_stream():
    state = make_state(book_orders_as_filled=True)
    for i in range(RELEASED_MEMORY * 3):
        feed(state, bar(BULLISH if i % 2 else {"A": -0.6, "B": 0.0, "C": 0.6}, T0 + i * SECOND))
    assert state.pending_bar_times == []
    assert len(state._released) == RELEASED_MEMORY
    assert state.working_orders == {}


def test_a_strategy_that_breaks_the_gross_contract_fails_loudly():
    class Reckless(Strategy):
        name = "reckless"
        version = "0"

        def score(self, cross_section):
            return {v.symbol: 1.0 for v in cross_section}

        def target_weights(self, scores):
            return {s: 1.0 for s in scores}

    state = SignalState(Reckless(), PortfolioConstructor(), "paper", symbols=("A", "B"))
    state.on_features(vector("A", T0))
    with pytest.raises(ValueError, match="weight contract"):
        state.on_features(vector("B", T0))


def test_max_wait_bars_below_one_is_rejected():
    with pytest.raises(ValueError):
        make_state(max_wait_bars=0)


def test_assembler_when_signals_arrive_across_partitions_out_of_order_and_twice_then_sections_in_order():
    from strategies.signals import CrossSectionAssembler

    state = make_state(emit_orders=False)
    sections = feed(state, bar(BULLISH, T0) + bar(BULLISH, T1) + bar(BULLISH, T2)) + state.flush()
    signals_sent = [s for section in sections for s in section.signals]
    # partition by symbol (as Kafka would), then drain the partitions in an unlucky order, twice
    by_partition = {sym: [s for s in signals_sent if s.symbol == sym] for sym in ("C", "A", "B")}
    delivered = by_partition["C"] + by_partition["A"] + by_partition["B"] + signals_sent[:4]
    assembler = CrossSectionAssembler()
    rebuilt = [c for s in delivered for c in assembler.on_signal(s)]
    assert [c.bar_end for c in rebuilt] == [T0, T1, T2]
    assert [c.signals for c in rebuilt] == [c.signals for c in sections]
    assert assembler.stats["duplicates"] == 4


def test_assembler_when_two_strategies_share_a_cross_section_then_each_symbols_signals_stay_apart():
    from strategies.signals import CrossSectionAssembler

    flow = BaselineStrategy(STRATEGY)
    contrarian = BaselineStrategy(BaselineConfig(top_n=1, w_flow=-1.0, name="contrarian"))
    state = SignalState([flow, contrarian], PortfolioConstructor(PORTFOLIO), "paper", symbols=ABC, emit_orders=False)
    sections = feed(state, bar(BULLISH, T0) + bar(BULLISH, T1)) + state.flush()
    signals_sent = [s for section in sections for s in section.signals]
    assert [(s.strategy, s.symbol, s.target_weight) for s in sections[0].signals] == [
        ("baseline", "A", 0.5), ("baseline", "B", 0.0), ("baseline", "C", -0.5),
        ("contrarian", "A", -0.5), ("contrarian", "B", 0.0), ("contrarian", "C", 0.5)]
    delivered = sorted(signals_sent, key=lambda s: (s.symbol, -s.section_seq)) + signals_sent[:3]  # by partition, twice
    assembler = CrossSectionAssembler()
    rebuilt = [c for s in delivered for c in assembler.on_signal(s)]
    assert [c.signals for c in rebuilt] == [c.signals for c in sections]
    assert assembler.stats["duplicates"] == 3
