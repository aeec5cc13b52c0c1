"""Specs for NormalizeState.on_raw_batch: a RawTickBatch gives exactly what its ticks give one at a time."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import normalize_columns
from market.normalize import NormalizeConfig, NormalizeState, RecentTradeIds
from market.normalize_columns import _running_max_per_group
from schemas import Aggressor, DeadLetter, Quote, RawTick, Trade
from schemas.columns import TRADE, RawTickBatch, TickBatch, trade_number


@pytest.fixture(autouse=True, scope="module", params=[0, 10_000], ids=["vectorized", "row-by-row"])
def acceptance_path(request):
    """Every spec here holds on both paths of the stateful rules: the vectorized pass (no batch is
    small) and the row-by-row one of a small batch (every batch here is small)."""
    with patch.object(normalize_columns, "SMALL_BATCH_ROWS", request.param):
        yield request.param


S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
SOURCE = "src"


def tick(seq: int, payload: dict, symbol: str = "AAA", ingest: int | None = None) -> RawTick:
    ingest = payload["ts"] + 50 * MS if ingest is None else ingest
    return RawTick(id=f"{SOURCE}:{seq}", ts_event=payload["ts"], ts_ingest=ingest, source=SOURCE, symbol=symbol,
                   payload=payload, seq=seq)


def trade(ts: int = T0, price: float = 100.0, size: float = 10.0, side: str | None = "buy",
          trade_id: str = "t1") -> dict:
    return {"type": "trade", "ts": ts, "price": price, "size": size, "side": side, "trade_id": trade_id}


def quote(ts: int = T0, bid: float = 99.9, ask: float = 100.1, bid_size: float = 5.0, ask_size: float = 7.0) -> dict:
    return {"type": "quote", "ts": ts, "bid": bid, "ask": ask, "bid_size": bid_size, "ask_size": ask_size}


def ticks_of(*payloads: dict, symbol: str = "AAA") -> list[RawTick]:
    return [tick(seq, p, symbol) for seq, p in enumerate(payloads)]


def one_at_a_time(state: NormalizeState, ticks: list[RawTick]) -> tuple[list, list[DeadLetter]]:
    records = [record for raw in ticks for record in state.on_raw(raw)]
    return [r for r in records if type(r) is not DeadLetter], [r for r in records if type(r) is DeadLetter]


def batch_reasons(state: NormalizeState, ticks: list[RawTick]) -> tuple[TickBatch, list[str], list[DeadLetter]]:
    accepted, dead = state.on_raw_batch(RawTickBatch.from_records(ticks))
    return accepted, [d.reason for d in dead], dead


def state_view(state: NormalizeState) -> dict:
    """Everything a NormalizeState holds, windows as (maxlen, ids oldest first), members checked."""
    for window in state._trade_ids.values():
        assert window._members == set(window._order)
    return {
        "stats": state.stats(),
        "watermark": state._watermark,
        "reference": state._reference_price,
        "windows": {s: (w._order.maxlen, list(w._order)) for s, w in state._trade_ids.items()},
    }


# -- the batch path equals the per-tick path: any tape, any cut ------------------------------------

_near = st.floats(min_value=95.0, max_value=108.0)  # moves within a 10% band, some beyond 2%
_value = st.one_of(  # mostly good, so that state builds up; the rest every kind of bad or extreme
    _near, _near, _near, st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 150.0, 1e308, 1.7e308, 5e-324]),
)
_good_size = st.floats(min_value=0.0, max_value=1e4)
_size = st.one_of(_good_size, _good_size, _good_size, st.sampled_from([0.0, -2.0, math.nan, math.inf]))
_fresh_id = st.text(alphabet="abcdefghijklmnop", min_size=1, max_size=4)
# numbers and texts that look like numbers ("007", "-1") but are not their canonical text
_numeric_id = st.one_of(st.integers(0, 30).map(str), st.sampled_from(["007", "-1", "+3", "9223372036854775808"]))
_trade_ids = st.one_of(st.sampled_from(["1", "2", "3", ""]), _fresh_id, _fresh_id, st.text(max_size=2),
                       _numeric_id, _numeric_id)


@st.composite
def tapes(draw) -> list[RawTick]:
    out = []
    clock = T0
    for seq in range(draw(st.integers(0, 60))):
        clock += draw(st.integers(0, 300 * MS))
        # out of order within and beyond the lateness; now and then far ahead of the ingest time
        ts = max(0, clock + draw(st.sampled_from([0, 0, 0, -100 * MS, -600 * MS, -3 * S, 2 * S])))
        ingest = ts + draw(st.sampled_from([50 * MS, 50 * MS, -5 * S, -5 * S - 1, -6 * S, 0]))
        symbol = draw(st.sampled_from(["AAA", "BBB", "CCC"]))
        if draw(st.booleans()):
            payload = trade(ts, draw(_value), draw(_size), draw(st.sampled_from([None, "buy", "sell", "unknown"])),
                            draw(_trade_ids))
        else:
            bid = draw(_value)
            shape = draw(st.sampled_from(["drawn", "drawn", "locked", "tight"]))
            ask = bid if shape == "locked" else bid + 0.02 if shape == "tight" else draw(_value)
            payload = quote(ts, bid, ask, draw(_size), draw(_size))
        out.append(tick(seq, payload, symbol, max(0, ingest)))
    return out


_configs = st.builds(
    NormalizeConfig,
    universe=st.sampled_from([None, frozenset({"AAA", "BBB"})]),
    price_band_pct=st.sampled_from([None, 2.0, 10.0]),
    max_future_ns=st.sampled_from([0, 5 * S]),
    lateness_ns=st.sampled_from([0, 500 * MS]),
    dedupe_window=st.sampled_from([1, 2, 3, 10_000]),
)


def numbered(batch: RawTickBatch) -> RawTickBatch:
    """``batch`` with its trade ids as ``trade_no`` only (no text), when every one is a trade number."""
    trade = batch.kind == TRADE
    numbers = [trade_number(t) if k else -1 for t, k in zip(batch.trade_id.tolist(), trade.tolist())]
    if None in numbers:
        return batch
    return replace(batch, trade_id=None, trade_no=np.array(numbers, dtype=np.int64))


def cut(ticks: list[RawTick], points: list[int], watermarks: list[int | None],
        numbers: bool = False) -> list[RawTickBatch]:
    """Batches of ``ticks`` cut at ``points`` (an empty piece is an empty batch), with watermarks;
    with ``numbers``, the pieces whose trade ids are all numbers carry them as ``trade_no``."""
    bounds = [0, *sorted(p % (len(ticks) + 1) for p in points), len(ticks)]
    batches = []
    for (lo, hi), watermark in zip(zip(bounds, bounds[1:]), watermarks * len(bounds)):
        if hi > lo:
            batch = RawTickBatch.from_records(ticks[lo:hi])
        else:
            batch = RawTickBatch.from_records([tick(0, trade())]).take(np.zeros(0, dtype=np.int64))
        batches.append(replace(numbered(batch) if numbers else batch, watermark=watermark))
    return batches


@settings(max_examples=400, deadline=None)
@given(
    ticks=tapes(),
    config=_configs,
    points=st.lists(st.integers(0, 100), max_size=6),
    watermarks=st.lists(st.one_of(st.none(), st.integers(0, 2**62)), min_size=1, max_size=3),
    snapshot_after=st.integers(0, 6),
    numbers=st.booleans(),
)
def test_batches_when_any_tape_cut_anywhere_then_same_records_dead_letters_and_state_as_one_at_a_time(
    ticks, config, points, watermarks, snapshot_after, numbers
):
    reference = NormalizeState(config)
    expected_accepted, expected_dead = one_at_a_time(reference, ticks)

    state = NormalizeState(config)
    accepted, dead = [], []
    for i, batch in enumerate(cut(ticks, points, watermarks, numbers)):
        if i == snapshot_after:  # a recovery snapshot between batches continues identically
            state = pickle.loads(pickle.dumps(state))
        out, letters = state.on_raw_batch(batch)
        assert out.watermark == batch.watermark and out.ids is None and out.sources == (SOURCE,)
        assert out.seq.tolist() == sorted(out.seq.tolist())  # input order
        assert np.array_equal(out.ts_tick_ingest, out.ts_ingest)
        accepted += out.to_records()
        dead += letters

    assert accepted == expected_accepted
    assert dead == expected_dead
    assert state_view(state) == state_view(reference)


# -- one spec per reason code through the batch path ---------------------------------------------


def test_batch_when_symbol_outside_universe_then_unknown_symbol():
    state = NormalizeState(NormalizeConfig(universe=frozenset({"AAA"})))
    ticks = [tick(0, trade(trade_id="a")), tick(1, trade(ts=T0 + 7, trade_id="b"), symbol="ZZZ")]
    accepted, reasons, dead = batch_reasons(state, ticks)
    assert reasons == ["unknown_symbol"] and "ZZZ" in dead[0].detail and dead[0].ts_event == T0 + 7
    assert accepted.symbol_names().tolist() == ["AAA"]


def test_batch_when_trade_id_empty_then_malformed():
    accepted, reasons, dead = batch_reasons(NormalizeState(), ticks_of(trade(trade_id=""), trade(trade_id="x")))
    assert reasons == ["malformed"] and "trade_id" in dead[0].detail
    assert accepted.trade_id.tolist() == ["x"]


def test_batch_when_price_or_bid_not_positive_finite_then_bad_price_naming_the_field():
    ticks = ticks_of(trade(price=-1.0, size=-1.0), quote(ask=math.nan), quote(bid=0.0), trade(price=math.inf))
    _, reasons, dead = batch_reasons(NormalizeState(), ticks)
    assert reasons == ["bad_price"] * 4  # price before size: the first failing rule wins
    assert [d.detail.split(" ")[0] for d in dead] == ["price=-1.0", "ask=nan", "bid=0.0", "price=inf"]


def test_batch_when_size_bad_then_bad_size_and_zero_quote_sizes_pass():
    ticks = ticks_of(trade(size=0.0), quote(bid_size=-1.0), quote(ask_size=math.inf), quote(bid_size=0.0, ask_size=0.0))
    accepted, reasons, dead = batch_reasons(NormalizeState(), ticks)
    assert reasons == ["bad_size"] * 3
    assert [d.detail.split(" ")[0] for d in dead] == ["size=0.0", "bid_size=-1.0", "ask_size=inf"]
    assert accepted.seq.tolist() == [3]


def test_batch_when_quote_crossed_or_locked_then_crossed_quote():
    ticks = ticks_of(quote(bid=100.2, ask=100.1), quote(bid=100.0, ask=100.0))
    _, reasons, dead = batch_reasons(NormalizeState(), ticks)
    assert reasons == ["crossed_quote", "crossed_quote"]
    assert dead[0].detail.startswith("crossed") and dead[1].detail.startswith("locked")


def test_batch_when_event_time_beyond_max_future_then_future_timestamp():
    ticks = [tick(0, trade(ts=T0 + 5 * S + 1), ingest=T0), tick(1, quote(ts=T0 + 5 * S), ingest=T0)]
    accepted, reasons, dead = batch_reasons(NormalizeState(), ticks)
    assert reasons == ["future_timestamp"] and str(T0 + 5 * S + 1) in dead[0].detail
    assert accepted.seq.tolist() == [1]  # exactly max_future_ns ahead is accepted


def test_batch_when_behind_watermark_of_an_earlier_row_of_the_batch_then_late_and_watermark_kept():
    ticks = ticks_of(trade(ts=T0 + 2 * S, trade_id="a"), quote(ts=T0 + 2 * S - 500 * MS),
                     trade(ts=T0 + S, trade_id="b"), trade(ts=T0 + 2 * S + 1, trade_id="c"))
    state = NormalizeState()
    accepted, reasons, dead = batch_reasons(state, ticks)
    assert reasons == ["late"] and str(T0 + 2 * S) in dead[0].detail
    assert accepted.seq.tolist() == [0, 1, 3] and state.watermark("AAA") == T0 + 2 * S + 1


def test_batch_when_price_jumps_beyond_band_then_price_band_and_reference_unmoved():
    ticks = ticks_of(trade(price=100.0, trade_id="a"), trade(price=115.0, trade_id="b"),
                     trade(price=120.0, trade_id="c"), quote(bid=104.0, ask=104.2))
    state = NormalizeState()
    accepted, reasons, dead = batch_reasons(state, ticks)
    assert reasons == ["price_band", "price_band"] and "+15.00%" in dead[0].detail
    assert accepted.seq.tolist() == [0, 3] and state._reference_price["AAA"] == pytest.approx(104.1)


def test_batch_when_trade_id_repeats_in_batch_or_window_then_duplicate_trade_per_symbol():
    state = NormalizeState()
    state.on_raw_batch(RawTickBatch.from_records([tick(0, trade(trade_id="X1"))]))
    ticks = [tick(1, trade(trade_id="X1")), tick(2, trade(trade_id="X2")), tick(3, trade(trade_id="X2")),
             tick(4, trade(trade_id="X1"), symbol="BBB")]
    accepted, reasons, dead = batch_reasons(state, ticks)
    assert reasons == ["duplicate_trade", "duplicate_trade"] and "'X1'" in dead[0].detail
    assert accepted.record_ids().tolist() == ["src:AAA:t:X2", "src:BBB:t:X1"]


def test_batch_when_window_small_then_an_evicted_id_is_accepted_again():
    state = NormalizeState(NormalizeConfig(dedupe_window=2))
    ids = ["a", "b", "c", "a", "c"]  # "a" left the window when "c" came; "c" is still in it
    accepted, reasons, _ = batch_reasons(state, ticks_of(*(trade(trade_id=i) for i in ids)))
    assert accepted.trade_id.tolist() == ["a", "b", "c", "a"] and reasons == ["duplicate_trade"]
    assert list(state._trade_ids["AAA"]._order) == ["c", "a"]


# -- the accepted columns and the watermark -------------------------------------------------------


def test_batch_accepted_rows_are_the_records_with_normalize_ids_aggressors_and_tick_ingest():
    ticks = ticks_of(trade(side=None, trade_id="n"), trade(side="sell", trade_id="s"), quote(),
                     trade(side="unknown", trade_id="u"))
    accepted, reasons, _ = batch_reasons(NormalizeState(), ticks)
    assert reasons == []
    records = accepted.to_records()
    assert [type(r) for r in records] == [Trade, Trade, Quote, Trade]
    assert [r.aggressor for r in records if type(r) is Trade] == [Aggressor.UNKNOWN, Aggressor.SELL, Aggressor.UNKNOWN]
    assert [r.id for r in records] == ["src:AAA:t:n", "src:AAA:t:s", "src:AAA:q:2", "src:AAA:t:u"]
    assert all(r.ts_tick_ingest == r.ts_ingest == T0 + 50 * MS for r in records)


def test_batch_when_every_row_rejected_or_none_then_empty_tick_batch_still_carries_the_watermark():
    state = NormalizeState()
    rejected = RawTickBatch.from_records(ticks_of(trade(price=-1.0), quote(bid=2.0, ask=1.0)))
    accepted, dead = state.on_raw_batch(replace(rejected, watermark=T0 + 9))
    assert len(accepted) == 0 and accepted.watermark == T0 + 9 and accepted.to_records() == []
    assert [d.reason for d in dead] == ["bad_price", "crossed_quote"]
    quiet = rejected.take(np.zeros(0, dtype=np.int64))
    accepted, dead = state.on_raw_batch(replace(quiet, watermark=T0 + 10))
    assert (len(accepted), accepted.watermark, dead) == (0, T0 + 10, [])
    assert state.stats()["rejected"] == 2 and state.watermark("AAA") is None


def test_state_when_pickled_after_batches_then_continues_like_the_original():
    config = NormalizeConfig(dedupe_window=5)
    state = NormalizeState(config)
    first = [tick(i, trade(ts=T0 + i * MS, price=100.0 + i * 0.01, trade_id=str(i))) for i in range(8)]
    state.on_raw_batch(RawTickBatch.from_records(first))
    restored = pickle.loads(pickle.dumps(state))
    then = [tick(8, trade(ts=T0 + 8 * MS, trade_id="7")), tick(9, trade(ts=T0 + 9 * MS, trade_id="2")),
            tick(10, trade(ts=T0 - S, trade_id="y")), tick(11, trade(ts=T0 + 9 * MS, price=200.0, trade_id="z"))]
    outcomes = []
    for each in (state, restored):
        accepted, dead = each.on_raw_batch(RawTickBatch.from_records(then))
        outcomes.append((accepted.to_records(), dead, state_view(each)))
    assert outcomes[0] == outcomes[1]
    assert [d.reason for d in outcomes[1][1]] == ["duplicate_trade", "late", "price_band"]  # "2" was evicted


# -- the bulk building blocks ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(window=st.lists(st.sampled_from("abcdefgh"), max_size=6, unique=True), maxlen=st.integers(1, 6),
       ids=st.lists(st.sampled_from("abcdefghij"), max_size=12))
def test_recent_trade_ids_bulk_when_ids_are_new_then_same_window_as_one_at_a_time(window, maxlen, ids):
    bulk, single = RecentTradeIds(maxlen, window), RecentTradeIds(maxlen, window)
    known = bulk.first_known(ids)
    new = ids if known is None else ids[:known]
    assert all(single.add_if_new(i) for i in new)
    if known is not None:  # the first hit is in the window or repeats an earlier id
        assert ids[known] in RecentTradeIds(maxlen, window)._members | set(ids[:known])
    bulk.extend_new(new)
    assert list(bulk._order) == list(single._order) and bulk._members == single._members
    copy = pickle.loads(pickle.dumps(bulk))
    assert list(copy._order) == list(bulk._order) and copy._order.maxlen == maxlen


@given(groups=st.lists(st.lists(st.integers(0, 2**62), min_size=1, max_size=8), min_size=1, max_size=5))
def test_running_max_per_group_when_out_of_order_then_max_so_far_within_each_group(groups):
    ts = np.array([t for g in groups for t in g], dtype=np.int64)
    group = np.array([i for i, g in enumerate(groups) for _ in g])
    first = np.zeros(len(ts), dtype=bool)
    first[np.cumsum([0] + [len(g) for g in groups[:-1]])] = True
    expected = [max(g[: j + 1]) for g in groups for j in range(len(g))]
    assert _running_max_per_group(ts, group, first).tolist() == expected


# -- trade ids as numbers ------------------------------------------------------------------------


def test_window_when_ids_are_numbers_then_holds_ints_and_a_numbered_batch_finds_the_text_duplicates():
    state = NormalizeState()
    state.on_raw(tick(0, trade(trade_id="5")))
    state.on_raw(tick(1, trade(trade_id="05")))  # not the canonical text of 5: another trade
    assert list(state._trade_ids["AAA"]._order) == [5, "05"]
    batch = numbered(RawTickBatch.from_records([tick(2, trade(trade_id="5")), tick(3, trade(trade_id="6"))]))
    assert batch.__dict__["trade_id"] is None and batch.trade_no.tolist() == [5, 6]
    accepted, dead = state.on_raw_batch(batch)
    assert [d.reason for d in dead] == ["duplicate_trade"] and "'5'" in dead[0].detail
    assert accepted.trade_no.tolist() == [6] and accepted.__dict__["trade_id"] is None  # no text made
    assert accepted.record_ids().tolist() == ["src:AAA:t:6"] and accepted.trade_id.tolist() == ["6"]


@pytest.mark.parametrize("ids", [[1, 2, 3], [1, "x", 3], ["a", "b"], ["a\x00b", "c"], [], [2**63 - 1, 0]])
def test_window_snapshot_when_ints_texts_or_a_mix_then_restores_the_same_window(ids):
    window = RecentTradeIds(3, ids)
    copy = pickle.loads(pickle.dumps(window))
    assert list(copy._order) == list(window._order) and copy._members == window._members
    assert copy._order.maxlen == 3


def test_state_when_restored_from_a_snapshot_of_text_windows_then_numeric_ids_become_keys():
    state = NormalizeState()
    state.on_raw_batch(RawTickBatch.from_records(ticks_of(trade(trade_id="7"), trade(trade_id="x"))))
    old = state.__getstate__()
    del old["window_keys"]  # as written before the windows held keys: texts only
    old["trade_ids"] = {"AAA": RecentTradeIds(10_000, ["7", "x"])}
    restored = NormalizeState.__new__(NormalizeState)
    restored.__setstate__(old)
    assert list(restored._trade_ids["AAA"]._order) == [7, "x"]
    assert [r.reason for r in restored.on_raw(tick(5, trade(trade_id="7")))] == ["duplicate_trade"]
