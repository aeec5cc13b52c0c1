"""Column batches of ticks convert to and from their records losslessly (DESIGN §2)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Aggressor, Quote, RawTick, Trade
from schemas.columns import (
    QUOTE,
    TRADE,
    RawTickBatch,
    TickBatch,
    columnar_payload,
    concat_tick_batches,
    trade_key,
    trade_number,
)

T0 = 1_704_205_800_000_000_000
finite = st.floats(min_value=0.01, max_value=1e9, allow_nan=False, allow_infinity=False)
anything = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def raw_ticks(draw, source="src"):
    n = draw(st.integers(1, 40))
    out = []
    ts = T0
    for seq in range(n):
        ts += draw(st.integers(0, 10**9))
        symbol = draw(st.sampled_from(["AAA", "BBB", "C:D"]))
        if draw(st.booleans()):
            payload = {"type": "trade", "ts": ts, "price": draw(anything), "size": draw(anything),
                       "side": draw(st.sampled_from([None, "buy", "sell", "unknown"])),
                       "trade_id": draw(st.text(min_size=0, max_size=6))}
        else:
            payload = {"type": "quote", "ts": ts, "bid": draw(anything), "ask": draw(anything),
                       "bid_size": draw(anything), "ask_size": draw(anything)}
        out.append(RawTick.model_construct(id=f"{source}:{seq}", ts_event=ts, ts_ingest=ts + 5, source=source,
                                           symbol=symbol, payload_format="tapeflow.v1", payload=payload, seq=seq))
    return out


def same_raw(a: RawTick, b: RawTick) -> bool:
    # NaN != NaN: compare the JSON text, which is what the wire and the warehouse see
    return a.model_dump_json() == b.model_dump_json() or (
        {k: v for k, v in a.__dict__.items() if k != "payload"} == {k: v for k, v in b.__dict__.items() if k != "payload"}
        and all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                for x, y in zip(a.payload.values(), b.payload.values()))
        and list(a.payload) == list(b.payload))


@settings(max_examples=150, deadline=None)
@given(raw_ticks())
def test_raw_batch_round_trips_its_records(ticks):
    batch = RawTickBatch.from_records(ticks)
    back = batch.to_records()
    assert len(back) == len(ticks)
    assert all(same_raw(a, b) for a, b in zip(back, ticks))
    assert [type(a) for a in back] == [RawTick] * len(ticks)


def test_raw_batch_refuses_what_its_columns_cannot_hold():
    good = RawTick(id="s:0", ts_event=T0, ts_ingest=T0, source="s", symbol="A", seq=0,
                   payload={"type": "trade", "ts": T0, "price": 1.0, "size": 1.0, "side": "buy", "trade_id": "1"})
    assert columnar_payload(good)
    for payload in (
        {**good.payload, "price": "1.0"},  # text where a number belongs
        {**good.payload, "side": "BUY"},
        {**good.payload, "extra": 1},
        {**good.payload, "ts": T0 + 1},  # payload time is not the tick's
        {"type": "bar"},
    ):
        odd = good.model_copy(update={"payload": payload})
        assert not columnar_payload(odd)
        with pytest.raises(ValueError, match="s:0"):
            RawTickBatch.from_records([odd])
    with pytest.raises(ValueError, match="one source"):
        RawTickBatch.from_records([good, good.model_copy(update={"source": "t", "id": "t:0"})])


@st.composite
def market_records(draw):
    n = draw(st.integers(0, 30))
    out = []
    for i in range(n):
        ts = T0 + i * 1000
        symbol = draw(st.sampled_from(["AAA", "BBB"]))
        source = draw(st.sampled_from(["s1", "s2"]))
        if draw(st.booleans()):
            out.append(Trade(id=f"t{i}", ts_event=ts, ts_ingest=ts + 1, symbol=symbol, price=draw(finite),
                             size=draw(finite), aggressor=draw(st.sampled_from(list(Aggressor))),
                             trade_id=str(i), source=source, ts_tick_ingest=ts + 2))
        else:
            bid = draw(finite)
            out.append(Quote(id=f"q{i}", ts_event=ts, ts_ingest=ts + 1, symbol=symbol, bid_price=bid,
                             bid_size=draw(finite), ask_price=bid + draw(finite), ask_size=0.0, source=source,
                             ts_tick_ingest=ts + 2))
    return out


@settings(max_examples=150, deadline=None)
@given(market_records(), st.integers(0, 30))
def test_tick_batch_round_trips_and_splits_anywhere(records, cut):
    batch = TickBatch.from_records(records)
    assert batch.to_records() == records
    cut = min(cut, len(records))
    head, tail = batch.take(np.arange(cut)), batch.take(np.arange(cut, len(records)))
    assert concat_tick_batches([head, tail]).to_records() == records
    assert concat_tick_batches([TickBatch.from_records(records[:cut]), TickBatch.from_records(records[cut:])]).to_records() == records


def test_tick_batch_derives_normalize_ids_when_it_has_none():
    batch = TickBatch(
        symbols=("AAA",), symbol=np.array([0, 0], np.int32), sources=("feed",), source=np.array([0, 0], np.int32),
        kind=np.array([TRADE, QUOTE], np.int8), seq=np.array([7, 8]), ts_event=np.array([T0, T0]),
        ts_ingest=np.array([T0, T0]), ts_tick_ingest=np.array([T0, T0]), price=np.array([1.0, np.nan]),
        size=np.array([2.0, np.nan]), aggressor=np.array([1, 0], np.int8), trade_id=np.array(["x9", None], object),
        bid=np.array([np.nan, 1.0]), ask=np.array([np.nan, 1.5]), bid_size=np.array([np.nan, 0.0]),
        ask_size=np.array([np.nan, 3.0]),
    )
    assert batch.record_ids().tolist() == ["feed:AAA:t:x9", "feed:AAA:q:8"]
    trade, quote = batch.to_records()
    assert trade.aggressor is Aggressor.BUY and quote.mid == 1.25


def test_tick_batch_refuses_other_records():
    with pytest.raises(TypeError, match="RawTick"):
        TickBatch.from_records([RawTick(id="s:0", ts_event=T0, ts_ingest=T0, source="s", symbol="A", seq=0, payload={})])


# -- trade ids as numbers (TRADE_NUMBERS) ----------------------------------------------------------


@pytest.mark.parametrize("text, number", [
    ("0", 0), ("42", 42), (str(2**63 - 1), 2**63 - 1), (str(2**63), None), ("042", None), ("00", None),
    ("-1", None), ("+1", None), (" 1", None), ("1e3", None), ("", None), ("٣", None), ("x", None), (None, None),
])
def test_trade_number_when_canonical_decimal_int64_then_the_number_else_none(text, number):
    assert trade_number(text) == number
    if text is not None:
        assert trade_key(text) == (text if number is None else number)


def numbered_batch() -> TickBatch:
    return TickBatch(
        symbols=("AAA",), symbol=np.zeros(3, np.int32), sources=("feed",), source=np.zeros(3, np.int32),
        kind=np.array([TRADE, QUOTE, TRADE], np.int8), seq=np.array([7, 8, 9]), ts_event=np.full(3, T0),
        ts_ingest=np.full(3, T0), ts_tick_ingest=np.full(3, T0), price=np.array([1.0, np.nan, 1.0]),
        size=np.array([2.0, np.nan, 2.0]), aggressor=np.array([1, 0, 2], np.int8), trade_id=None,
        bid=np.array([np.nan, 1.0, np.nan]), ask=np.array([np.nan, 1.5, np.nan]),
        bid_size=np.array([np.nan, 0.0, np.nan]), ask_size=np.array([np.nan, 3.0, np.nan]),
        trade_no=np.array([0, -1, 2**63 - 1], np.int64),
    )


def test_tick_batch_when_trade_numbers_only_then_text_made_on_first_read_and_numbers_kept_through_take_and_concat():
    batch = numbered_batch()
    head, tail = batch.take(np.arange(2)), batch.take(np.arange(2, 3))
    both = concat_tick_batches([head, tail])
    assert all(b.__dict__["trade_id"] is None for b in (head, tail, both))  # nothing made the text yet
    assert both.trade_no.tolist() == [0, -1, 2**63 - 1]
    assert both.record_ids().tolist() == ["feed:AAA:t:0", "feed:AAA:q:8", f"feed:AAA:t:{2**63 - 1}"]
    assert [r.trade_id for r in both.to_records() if type(r) is Trade] == ["0", str(2**63 - 1)]
    assert batch.trade_id.tolist() == ["0", None, str(2**63 - 1)] and batch.trade_id is batch.trade_id
    mixed = concat_tick_batches([head, TickBatch.from_records(tail.to_records())])  # numbers and texts
    assert mixed.trade_no is None and mixed.trade_id.tolist() == ["0", None, str(2**63 - 1)]
    assert [r.model_dump() for r in pickle.loads(pickle.dumps(head)).to_records()] == [r.model_dump() for r in head.to_records()]


def test_batches_refuse_neither_trade_id_nor_trade_no():
    with pytest.raises(ValueError, match="trade_id or trade_no"):
        TickBatch(**{**vars(numbered_batch()), "trade_no": None})
