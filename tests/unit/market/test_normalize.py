"""Specs for market.normalize: every rule accepts the good and dead-letters the bad with one reason."""

from __future__ import annotations

import math
import pickle

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import tick_parsers
from market.normalize import (
    REASON_CODES,
    NormalizeConfig,
    NormalizeState,
    RecentTradeIds,
)
from market.tick_parsers import ParsedTrade
from schemas import Aggressor, DeadLetter, Quote, RawTick, Trade

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S  # event time of the first tick in most specs
INGEST = T0 + 50 * MS  # tapeflow sees ticks 50 ms after the venue stamps them


def trade_payload(ts: int = T0, price=100.0, size=10.0, side="buy", trade_id="t1", **overrides) -> dict:
    payload = {"type": "trade", "ts": ts, "price": price, "size": size, "side": side, "trade_id": trade_id}
    payload.update(overrides)
    return payload


def quote_payload(ts: int = T0, bid=99.9, ask=100.1, bid_size=5.0, ask_size=7.0) -> dict:
    return {"type": "quote", "ts": ts, "bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size}


_seq = iter(range(10**9))


def raw_tick(payload: dict, symbol: str = "AAPL", ingest: int | None = None, fmt: str = "tapeflow.v1",
             seq: int | None = None, source: str = "synth") -> RawTick:
    seq = next(_seq) if seq is None else seq
    ts = payload.get("ts")
    return RawTick(
        id=f"{source}:{symbol}:{seq}",
        ts_event=ts if type(ts) is int and 0 <= ts < 2**63 else T0,
        ts_ingest=INGEST if ingest is None else ingest,
        source=source,
        symbol=symbol,
        payload_format=fmt,
        payload=payload,
        seq=seq,
    )


def one(state: NormalizeState, raw: RawTick):
    out = state.on_raw(raw)
    assert len(out) == 1
    return out[0]


def rejected(state: NormalizeState, raw: RawTick, reason: str) -> DeadLetter:
    out = one(state, raw)
    assert isinstance(out, DeadLetter), out
    assert out.reason == reason, (out.reason, out.detail)
    return out


# -- accepted ticks ---------------------------------------------------------------------------


def test_trade_when_valid_then_accepted_with_deterministic_id_and_times():
    raw = raw_tick(trade_payload(trade_id="T-42", side="sell"), seq=7)
    trade = one(NormalizeState(), raw)
    assert isinstance(trade, Trade)
    assert trade.id == "synth:AAPL:t:T-42"
    assert (trade.ts_event, trade.ts_ingest, trade.ts_tick_ingest) == (T0, INGEST, INGEST)
    assert (trade.price, trade.size, trade.aggressor, trade.trade_id) == (100.0, 10.0, Aggressor.SELL, "T-42")
    assert trade.schema_version == 1 and trade.source == "synth" and trade.symbol == "AAPL"
    # Built without validation in the hot path: it must still be exactly what validation would build.
    assert Trade.model_validate(trade.model_dump()) == trade
    assert Trade.from_json(trade.to_json()) == trade


def test_trade_when_price_and_size_are_ints_then_accepted_as_floats():
    trade = one(NormalizeState(), raw_tick(trade_payload(price=100, size=3)))
    assert isinstance(trade, Trade)
    assert type(trade.price) is float and type(trade.size) is float
    assert b'"price":100.0' in trade.to_json()


@pytest.mark.parametrize("side", [None, "absent"])
def test_trade_when_side_missing_then_aggressor_unknown(side):
    payload = trade_payload(side=side)
    if side == "absent":
        del payload["side"]
    trade = one(NormalizeState(), raw_tick(payload))
    assert isinstance(trade, Trade) and trade.aggressor is Aggressor.UNKNOWN


def test_quote_when_valid_then_accepted_with_feed_sequence_id():
    quote = one(NormalizeState(), raw_tick(quote_payload(), seq=1234))
    assert isinstance(quote, Quote)
    assert quote.id == "synth:AAPL:q:1234"
    assert (quote.bid_price, quote.ask_price, quote.bid_size, quote.ask_size) == (99.9, 100.1, 5.0, 7.0)
    assert (quote.ts_event, quote.ts_ingest, quote.ts_tick_ingest) == (T0, INGEST, INGEST)
    assert Quote.model_validate(quote.model_dump()) == quote


def test_quote_when_sizes_are_zero_then_accepted_for_feeds_without_depth():
    quote = one(NormalizeState(), raw_tick(quote_payload(bid_size=0.0, ask_size=0)))
    assert isinstance(quote, Quote) and quote.bid_size == 0.0 and quote.ask_size == 0.0


# -- unknown_format / unknown_symbol ----------------------------------------------------------


def test_raw_tick_when_payload_format_has_no_parser_then_dead_lettered_as_unknown_format():
    dead = rejected(NormalizeState(), raw_tick(trade_payload(), fmt="vendor.x"), "unknown_format")
    assert "vendor.x" in dead.detail


def test_raw_tick_when_parser_registered_for_format_then_normalized(monkeypatch):
    def parse_alpaca_v2(payload):
        return ParsedTrade(payload["t"], float(payload["p"]), float(payload["s"]), Aggressor.UNKNOWN, str(payload["i"]))

    monkeypatch.setitem(tick_parsers.PAYLOAD_PARSERS, "alpaca.v2", parse_alpaca_v2)
    trade = one(NormalizeState(), raw_tick({"t": T0, "p": 101.5, "s": 3, "i": 96921}, fmt="alpaca.v2"))
    assert isinstance(trade, Trade) and trade.trade_id == "96921" and trade.price == 101.5


def test_tick_when_symbol_outside_universe_then_dead_lettered_as_unknown_symbol():
    state = NormalizeState(NormalizeConfig(universe=frozenset({"AAPL", "MSFT"})))
    assert isinstance(one(state, raw_tick(trade_payload(), symbol="MSFT")), Trade)
    dead = rejected(state, raw_tick(trade_payload(ts=T0 + 7), symbol="TSLA"), "unknown_symbol")
    assert "TSLA" in dead.detail
    assert dead.ts_event == T0 + 7  # the payload's event time, read although the rule ran before parsing


# -- malformed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "mentions"),
    [
        ({k: v for k, v in trade_payload().items() if k != "price"}, "price"),
        (trade_payload(price="101.5"), "'101.5'"),
        (trade_payload(price=None), "None"),
        (trade_payload(size=True), "True"),
        (trade_payload(side="long"), "'long'"),
        (trade_payload(trade_id=123), "123"),
        (trade_payload(trade_id=""), "trade_id"),
        ({k: v for k, v in trade_payload().items() if k != "trade_id"}, "trade_id"),
        (trade_payload(ts=1.7e18), "1.7e+18"),
        (trade_payload(ts=-5), "-5"),
        (trade_payload(ts="2024-01-01T00:00:00Z"), "2024-01-01"),
        ({k: v for k, v in trade_payload().items() if k != "type"}, "type"),
        (trade_payload(type="bar"), "'bar'"),
        ({k: v for k, v in quote_payload().items() if k != "ask"}, "ask"),
        ({**quote_payload(), "bid_size": "lots"}, "'lots'"),
    ],
)
def test_tick_when_payload_shape_is_wrong_then_dead_lettered_as_malformed(payload, mentions):
    dead = rejected(NormalizeState(), raw_tick(payload), "malformed")
    assert mentions in dead.detail


def test_malformed_tick_when_ts_unreadable_then_dead_letter_uses_raw_event_time():
    raw = raw_tick({"type": "trade", "price": 1.0})
    dead = rejected(NormalizeState(), raw, "malformed")
    assert dead.ts_event == raw.ts_event


def test_malformed_tick_when_ts_readable_then_dead_letter_uses_payload_event_time():
    dead = rejected(NormalizeState(), raw_tick(trade_payload(ts=T0 + 99, price=None)), "malformed")
    assert dead.ts_event == T0 + 99


# -- bad_price / bad_size ---------------------------------------------------------------------


@pytest.mark.parametrize("price", [0.0, -1.5, math.nan, math.inf, -math.inf, 0])
def test_trade_when_price_not_positive_finite_then_dead_lettered_as_bad_price(price):
    dead = rejected(NormalizeState(), raw_tick(trade_payload(price=price)), "bad_price")
    assert f"price={float(price)!r}" in dead.detail


@pytest.mark.parametrize(("field", "value"), [("bid", 0.0), ("bid", math.nan), ("ask", -2.0), ("ask", math.inf)])
def test_quote_when_bid_or_ask_not_positive_finite_then_dead_lettered_as_bad_price(field, value):
    payload = {**quote_payload(), field: value}
    dead = rejected(NormalizeState(), raw_tick(payload), "bad_price")
    assert f"{field}={value!r}" in dead.detail


@pytest.mark.parametrize("size", [0.0, -3.0, math.nan, math.inf])
def test_trade_when_size_not_positive_finite_then_dead_lettered_as_bad_size(size):
    dead = rejected(NormalizeState(), raw_tick(trade_payload(size=size)), "bad_size")
    assert f"size={size!r}" in dead.detail


@pytest.mark.parametrize(("field", "value"), [("bid_size", -1.0), ("ask_size", math.nan), ("ask_size", math.inf)])
def test_quote_when_size_negative_or_nan_then_dead_lettered_as_bad_size(field, value):
    payload = {**quote_payload(), field: value}
    dead = rejected(NormalizeState(), raw_tick(payload), "bad_size")
    assert f"{field}={value!r}" in dead.detail


def test_trade_when_price_and_size_both_bad_then_first_rule_bad_price_wins():
    rejected(NormalizeState(), raw_tick(trade_payload(price=-1.0, size=-1.0)), "bad_price")


# -- crossed_quote ----------------------------------------------------------------------------


def test_quote_when_bid_above_ask_then_dead_lettered_as_crossed_quote():
    dead = rejected(NormalizeState(), raw_tick(quote_payload(bid=100.2, ask=100.1)), "crossed_quote")
    assert "100.2" in dead.detail and "100.1" in dead.detail and "crossed" in dead.detail


def test_quote_when_bid_equals_ask_then_dead_lettered_as_crossed_quote():
    dead = rejected(NormalizeState(), raw_tick(quote_payload(bid=100.0, ask=100.0)), "crossed_quote")
    assert "locked" in dead.detail and "100.0" in dead.detail


# -- price_band -------------------------------------------------------------------------------


def test_trade_when_price_jumps_beyond_band_then_dead_lettered_as_price_band():
    state = NormalizeState()
    assert isinstance(one(state, raw_tick(trade_payload(price=100.0, trade_id="a"))), Trade)
    dead = rejected(state, raw_tick(trade_payload(price=111.0, trade_id="b")), "price_band")
    assert "111.0" in dead.detail and "100.0" in dead.detail and "+11.00%" in dead.detail
    rejected(state, raw_tick(trade_payload(price=89.0, trade_id="c")), "price_band")


def test_trade_when_price_moves_within_band_then_accepted_and_becomes_reference():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(price=100.0, trade_id="a")))
    assert isinstance(one(state, raw_tick(trade_payload(price=109.0, trade_id="b"))), Trade)
    # 118 is 18% from the first price but 8.3% from the last good one
    assert isinstance(one(state, raw_tick(trade_payload(price=118.0, trade_id="c"))), Trade)


def test_price_band_when_price_rejected_then_reference_does_not_move():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(price=100.0, trade_id="a")))
    rejected(state, raw_tick(trade_payload(price=115.0, trade_id="b")), "price_band")
    # vs 115 this would be in band; vs the unmoved reference 100 it is not
    rejected(state, raw_tick(trade_payload(price=120.0, trade_id="c")), "price_band")
    assert isinstance(one(state, raw_tick(trade_payload(price=105.0, trade_id="d"))), Trade)


def test_quote_when_mid_jumps_beyond_band_then_dead_lettered_as_price_band():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(price=100.0)))
    dead = rejected(state, raw_tick(quote_payload(bid=120.0, ask=120.2)), "price_band")
    assert "mid=120.1" in dead.detail
    assert isinstance(one(state, raw_tick(quote_payload(bid=104.0, ask=104.2))), Quote)


def test_price_band_when_configured_tighter_or_disabled_then_applied_accordingly():
    tight = NormalizeState(NormalizeConfig(price_band_pct=2.0))
    one(tight, raw_tick(trade_payload(price=100.0, trade_id="a")))
    rejected(tight, raw_tick(trade_payload(price=103.0, trade_id="b")), "price_band")

    off = NormalizeState(NormalizeConfig(price_band_pct=None))
    one(off, raw_tick(trade_payload(price=100.0, trade_id="a")))
    assert isinstance(one(off, raw_tick(trade_payload(price=500.0, trade_id="b"))), Trade)


def test_price_band_when_symbols_differ_then_each_has_its_own_reference():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(price=100.0), symbol="AAPL"))
    assert isinstance(one(state, raw_tick(trade_payload(price=400.0), symbol="MSFT")), Trade)


# -- duplicate_trade --------------------------------------------------------------------------


def test_trade_when_id_already_accepted_for_symbol_then_dead_lettered_as_duplicate_trade():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(trade_id="X1")))
    dead = rejected(state, raw_tick(trade_payload(trade_id="X1")), "duplicate_trade")
    assert "'X1'" in dead.detail
    # the same venue id on another symbol is a different trade
    assert isinstance(one(state, raw_tick(trade_payload(trade_id="X1"), symbol="MSFT")), Trade)


def test_duplicate_window_when_id_older_than_bound_then_forgotten():
    state = NormalizeState(NormalizeConfig(dedupe_window=3))
    for trade_id in ("a", "b", "c"):
        one(state, raw_tick(trade_payload(trade_id=trade_id)))
    rejected(state, raw_tick(trade_payload(trade_id="a")), "duplicate_trade")
    one(state, raw_tick(trade_payload(trade_id="d")))  # evicts "a"
    assert isinstance(one(state, raw_tick(trade_payload(trade_id="a"))), Trade)
    rejected(state, raw_tick(trade_payload(trade_id="d")), "duplicate_trade")


def test_duplicate_window_when_trade_rejected_then_its_id_is_not_remembered():
    state = NormalizeState()
    rejected(state, raw_tick(trade_payload(trade_id="Z", price=-1.0)), "bad_price")
    assert isinstance(one(state, raw_tick(trade_payload(trade_id="Z"))), Trade)


def test_recent_trade_ids_when_full_then_memory_stays_bounded():
    recent = RecentTradeIds(maxlen=100)
    for i in range(1_000):
        assert recent.add_if_new(str(i))
    assert len(recent) == 100 and len(recent._members) == 100
    assert "999" in recent and "899" not in recent


def test_recent_trade_ids_when_pickled_then_the_same_window_even_with_odd_ids():
    for ids in (["a", "b", "c"], ["a\x00b", "c"], [""], []):
        recent = RecentTradeIds(maxlen=2)
        for trade_id in ids:
            recent.add_if_new(trade_id)
        copy = pickle.loads(pickle.dumps(recent))
        assert list(copy._order) == list(recent._order) and copy._members == recent._members
        assert copy._order.maxlen == 2


# -- future_timestamp -------------------------------------------------------------------------


def test_tick_when_event_time_beyond_max_future_then_dead_lettered_as_future_timestamp():
    state = NormalizeState()
    ts = INGEST + 5 * S + 1
    dead = rejected(state, raw_tick(trade_payload(ts=ts)), "future_timestamp")
    assert str(ts) in dead.detail and str(INGEST) in dead.detail
    rejected(state, raw_tick(quote_payload(ts=ts)), "future_timestamp")


def test_tick_when_event_time_exactly_max_future_then_accepted():
    assert isinstance(one(NormalizeState(), raw_tick(trade_payload(ts=INGEST + 5 * S))), Trade)


def test_future_timestamp_when_configured_then_applied():
    state = NormalizeState(NormalizeConfig(max_future_ns=0))
    rejected(state, raw_tick(trade_payload(ts=INGEST + 1)), "future_timestamp")


# -- late ---------------------------------------------------------------------------------------


def test_tick_when_older_than_watermark_minus_lateness_then_dead_lettered_as_late():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(ts=T0 + 2 * S, trade_id="a")))
    ts = T0 + 2 * S - 500 * MS - 1
    dead = rejected(state, raw_tick(trade_payload(ts=ts, trade_id="b")), "late")
    assert str(ts) in dead.detail and str(T0 + 2 * S) in dead.detail
    rejected(state, raw_tick(quote_payload(ts=ts)), "late")


def test_tick_when_out_of_order_within_lateness_then_accepted_without_moving_watermark():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(ts=T0 + 2 * S, trade_id="a")))
    accepted = one(state, raw_tick(trade_payload(ts=T0 + 2 * S - 500 * MS, trade_id="b")))
    assert isinstance(accepted, Trade)
    assert state.watermark("AAPL") == T0 + 2 * S


def test_watermark_when_quotes_arrive_then_they_advance_it_for_trades_too():
    state = NormalizeState()
    one(state, raw_tick(quote_payload(ts=T0 + 10 * S), ingest=T0 + 10 * S))
    assert state.watermark("AAPL") == T0 + 10 * S
    rejected(state, raw_tick(trade_payload(ts=T0 + 9 * S), ingest=T0 + 10 * S), "late")


def test_watermark_when_tick_rejected_then_not_advanced():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(ts=T0)))
    rejected(state, raw_tick(trade_payload(ts=T0 + S, price=-1.0)), "bad_price")
    assert state.watermark("AAPL") == T0
    assert state.watermark("MSFT") is None


def test_watermark_when_symbols_differ_then_tracked_per_symbol():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(ts=T0 + 10 * S), symbol="AAPL", ingest=T0 + 10 * S))
    assert isinstance(one(state, raw_tick(trade_payload(ts=T0), symbol="MSFT")), Trade)


# -- dead-letter envelope, stats, snapshots -----------------------------------------------------


def test_dead_letter_when_built_then_carries_raw_tick_json_and_envelope():
    raw = raw_tick(trade_payload(price=-1.0, ts=T0 + 3), seq=77)
    dead = rejected(NormalizeState(), raw, "bad_price")
    assert dead.id == f"dlq:normalize:{raw.id}"
    assert (dead.source_topic, dead.stage, dead.symbol) == ("md.raw", "normalize", "AAPL")
    assert (dead.ts_event, dead.ts_ingest) == (T0 + 3, raw.ts_ingest)
    assert RawTick.from_json(dead.payload) == raw
    assert DeadLetter.model_validate(dead.model_dump()) == dead


@pytest.mark.parametrize("junk", [object(), 2**70])
def test_dead_letter_when_payload_not_json_serializable_then_still_one_dead_letter_with_json_text(junk):
    raw = raw_tick(trade_payload(price=junk) if isinstance(junk, object) and not isinstance(junk, int)
                   else trade_payload(ts=junk))
    dead = rejected(NormalizeState(), raw, "malformed")
    text = orjson.loads(dead.payload)
    assert repr(junk) in str(text)


def test_stats_when_ticks_processed_then_counts_accepted_and_rejected_by_reason():
    state = NormalizeState()
    one(state, raw_tick(trade_payload(trade_id="a")))
    one(state, raw_tick(quote_payload()))
    one(state, raw_tick(trade_payload(trade_id="a")))
    one(state, raw_tick(trade_payload(price=0.0, trade_id="b")))
    one(state, raw_tick(trade_payload(price=0.0, trade_id="c")))
    assert state.stats() == {
        "accepted": 2,
        "trades": 1,
        "quotes": 1,
        "rejected": 3,
        "rejected_by_reason": {"bad_price": 2, "duplicate_trade": 1},
    }


def test_state_when_pickled_and_restored_then_continues_with_same_watermark_references_and_ids():
    state = NormalizeState(NormalizeConfig(dedupe_window=50))
    for i in range(60):
        one(state, raw_tick(trade_payload(ts=T0 + i * MS, trade_id=str(i), price=100.0 + i * 0.01)))
    restored = pickle.loads(pickle.dumps(state))
    assert restored.watermark("AAPL") == state.watermark("AAPL")
    assert restored.stats() == state.stats()
    rejected(restored, raw_tick(trade_payload(ts=T0 + 60 * MS, trade_id="59")), "duplicate_trade")
    assert isinstance(one(restored, raw_tick(trade_payload(ts=T0 + 60 * MS, trade_id="5"))), Trade)  # evicted
    rejected(restored, raw_tick(trade_payload(ts=T0 + 60 * MS, trade_id="x", price=200.0)), "price_band")
    rejected(restored, raw_tick(trade_payload(ts=T0 - S, trade_id="y")), "late")


def test_state_when_one_instance_per_symbol_then_same_output_as_one_for_all():
    ticks = []
    for i in range(40):
        symbol = ("AAPL", "MSFT")[i % 2]
        price = 100.0 if i != 17 else 150.0
        ts = T0 + i * 100 * MS - (1_200 * MS if i == 25 else 0)
        ticks.append(raw_tick(trade_payload(ts=ts, price=price, trade_id=str(i // 4)), symbol=symbol, seq=i))
    shared = NormalizeState()
    shared_out = [one(shared, raw) for raw in ticks]
    per_symbol: dict[str, NormalizeState] = {}
    keyed_out = [one(per_symbol.setdefault(raw.symbol, NormalizeState()), raw) for raw in ticks]
    assert shared_out == keyed_out
    assert {r.reason for r in shared_out if isinstance(r, DeadLetter)} == {"price_band", "late", "duplicate_trade"}


# -- one in, one out ----------------------------------------------------------------------------

_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)
_price = st.one_of(st.floats(min_value=90.0, max_value=112.0), _junk)
_ts = st.one_of(st.integers(min_value=T0 - 2 * S, max_value=INGEST + 7 * S), _junk)


@st.composite
def _payloads(draw):
    kind = draw(st.sampled_from(["trade", "quote", "bar", None]))
    if kind == "quote":
        payload = {"type": "quote", "ts": draw(_ts), "bid": draw(_price), "ask": draw(_price),
                   "bid_size": draw(_price), "ask_size": draw(_price)}
    else:
        payload = {"type": kind, "ts": draw(_ts), "price": draw(_price), "size": draw(_price),
                   "side": draw(st.one_of(st.sampled_from(["buy", "sell", "unknown"]), _junk)),
                   "trade_id": draw(st.one_of(st.sampled_from(["1", "2", "3"]), _junk))}
    for key in draw(st.lists(st.sampled_from(sorted(payload)), max_size=2)):
        payload.pop(key, None)
    return payload


_raw_ticks = st.builds(
    raw_tick,
    payload=_payloads(),
    symbol=st.sampled_from(["AAPL", "MSFT", "ZZZ"]),
    ingest=st.integers(min_value=INGEST - S, max_value=INGEST + S),
    fmt=st.sampled_from(["tapeflow.v1", "tapeflow.v1", "tapeflow.v1", "alpaca.v2"]),
)


@settings(max_examples=300, deadline=None)
@given(ticks=st.lists(_raw_ticks, max_size=40), universe=st.sampled_from([None, frozenset({"AAPL", "MSFT"})]))
def test_normalize_when_any_tick_sequence_then_exactly_one_valid_output_per_input(ticks, universe):
    state = NormalizeState(NormalizeConfig(universe=universe))
    outputs = [state.on_raw(raw) for raw in ticks]
    assert all(len(out) == 1 for out in outputs)
    for raw, (record,) in zip(ticks, outputs):
        if isinstance(record, DeadLetter):
            assert record.reason in REASON_CODES and record.reason != "internal_error", record.detail
            assert record.id == f"dlq:normalize:{raw.id}"
            assert orjson.loads(record.payload)  # the raw tick survives as JSON text
        else:
            assert isinstance(record, (Trade, Quote)) and record.symbol == raw.symbol
        # every record, however constructed, is one the schema itself would accept
        assert type(record).model_validate(record.model_dump()) == record
    stats = state.stats()
    assert stats["accepted"] + stats["rejected"] == len(ticks)
