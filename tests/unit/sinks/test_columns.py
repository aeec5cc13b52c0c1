"""Tick batches land in the warehouse exactly as their records would (sinks.columns vs sinks.rows)."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.columns import QUOTE, SIDE_NONE, TRADE, RawTickBatch, TickBatch
from sinks.columns import raw_table, tick_tables
from sinks.rows import ARROW_TS, layout
from tests.unit.sinks.records import T0, one_of_each, trade

any_float = st.floats(allow_nan=True, allow_infinity=True)
# ids and names with what JSON must escape, what CSV-ish code trips on, and non-ASCII
awkward_text = st.text(alphabet=st.sampled_from(['"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", ":", "/", "a",
                                                 "Z", "0", " ", "é", "\u2028", "😀"]), max_size=8)
names = st.lists(st.one_of(st.sampled_from(["AAPL", "MSFT", "BTC/USD", "C:D"]), awkward_text.filter(bool)),
                 min_size=1, max_size=4, unique=True)
ns = st.integers(0, 2**63 - 1)


def assert_same_table(got: pa.Table, expected: pa.Table) -> None:
    """Column for column and type for type; floats compared bit for bit (NaN equals itself)."""
    assert got.schema == expected.schema
    for name in expected.column_names:
        a, b = got.column(name).combine_chunks(), expected.column(name).combine_chunks()
        if pa.types.is_floating(b.type):
            assert a.null_count == b.null_count == 0, name
            assert np.array_equal(a.to_numpy().view(np.int64), b.to_numpy().view(np.int64)), name
        else:
            assert a.equals(b), (name, a.to_pylist(), b.to_pylist())


def expected_tables(records: list, run_id: str) -> dict[str, pa.Table]:
    out = {}
    for table in ("md_trades", "md_quotes"):
        model = layout(table).model
        mine = [r for r in records if type(r) is model]
        if mine:
            out[table] = layout(table).to_arrow(mine, run_id)
    return out


@st.composite
def tick_batches(draw) -> TickBatch:
    n = draw(st.integers(0, 25))
    symbols, sources = tuple(draw(names)), tuple(draw(names))
    kind = np.array(draw(st.lists(st.sampled_from([TRADE, QUOTE]), min_size=n, max_size=n)), np.int8)
    trade_id = np.empty(n, dtype=object)
    trade_id[:] = [draw(awkward_text.filter(bool)) if k == TRADE else None for k in kind]

    def ints(strategy, dtype):
        return np.array(draw(st.lists(strategy, min_size=n, max_size=n)), dtype)

    def floats():
        return np.array(draw(st.lists(any_float, min_size=n, max_size=n)), np.float64)

    batch = TickBatch(
        symbols=symbols, symbol=ints(st.integers(0, len(symbols) - 1), np.int32),
        sources=sources, source=ints(st.integers(0, len(sources) - 1), np.int32),
        kind=kind, seq=ints(st.integers(-1, 2**40), np.int64), ts_event=ints(ns, np.int64),
        ts_ingest=ints(ns, np.int64), ts_tick_ingest=ints(ns, np.int64), price=floats(), size=floats(),
        aggressor=np.where(kind == TRADE, ints(st.integers(0, 2), np.int8), 0).astype(np.int8), trade_id=trade_id,
        bid=floats(), ask=floats(), bid_size=floats(), ask_size=floats(),
    )
    if draw(st.booleans()):  # trade ids as numbers only (schemas.columns.TRADE_NUMBERS)
        numbers = np.where(kind == TRADE, ints(st.integers(0, 2**63 - 1), np.int64), -1)
        batch = TickBatch(**{**batch.__dict__, "trade_id": None, "trade_no": numbers})
    if draw(st.booleans()):  # a batch made from records carries its ids
        ids = np.empty(n, dtype=object)
        ids[:] = draw(st.lists(awkward_text.filter(bool), min_size=n, max_size=n))
        batch = TickBatch(**{**batch.__dict__, "ids": ids})
    return batch


@st.composite
def raw_batches(draw) -> RawTickBatch:
    n = draw(st.integers(0, 25))
    symbols = tuple(draw(names))
    kind = np.array(draw(st.lists(st.sampled_from([TRADE, QUOTE]), min_size=n, max_size=n)), np.int8)
    trade = kind == TRADE

    def floats(on):  # the kind that does not have a column holds NaN there
        values = np.array(draw(st.lists(any_float, min_size=n, max_size=n)), np.float64)
        return np.where(on, values, np.nan)

    trade_id = np.empty(n, dtype=object)
    trade_id[:] = [draw(awkward_text) if t else None for t in trade]  # a raw trade id may be empty
    sides = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)), np.int8)
    start = draw(st.integers(0, 2**50))
    trade_no = None
    if draw(st.booleans()):  # trade ids as numbers only (schemas.columns.TRADE_NUMBERS)
        numbers = np.array(draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n)), np.int64)
        trade_id, trade_no = None, np.where(trade, numbers, -1)
    return RawTickBatch(
        source=draw(names)[0], symbols=symbols,
        symbol=np.array(draw(st.lists(st.integers(0, len(symbols) - 1), min_size=n, max_size=n)), np.int32),
        kind=kind, seq=np.arange(start, start + n, dtype=np.int64),
        ts_event=np.array(draw(st.lists(ns, min_size=n, max_size=n)), np.int64),
        ts_ingest=np.array(draw(st.lists(ns, min_size=n, max_size=n)), np.int64),
        price=floats(trade), size=floats(trade), side=np.where(trade, sides, SIDE_NONE).astype(np.int8),
        trade_id=trade_id, bid=floats(~trade), ask=floats(~trade), bid_size=floats(~trade), ask_size=floats(~trade),
        trade_no=trade_no,
    )


@settings(max_examples=300, deadline=None)
@given(tick_batches(), awkward_text.filter(bool))
def test_tick_tables_equal_the_layouts_arrow_of_the_batch_records(batch, run_id):
    got = tick_tables(batch, run_id)
    expected = expected_tables(batch.to_records(), run_id)
    assert set(got) == set(expected)  # a kind with no row gives no table
    for table in expected:
        assert_same_table(got[table], expected[table])


@settings(max_examples=300, deadline=None)
@given(raw_batches(), awkward_text.filter(bool))
def test_raw_table_equals_the_layouts_arrow_of_the_batch_records(batch, run_id):
    assert_same_table(raw_table(batch, run_id), layout("md_raw").to_arrow(batch.to_records(), run_id))


def test_tick_tables_of_records_keep_their_ids_and_times_are_utc_ns_timestamps():
    records = [trade(0), one_of_each()["md_quotes"], trade(1, symbol="MSFT")]
    tables = tick_tables(TickBatch.from_records(records), "run-1")

    assert tables["md_trades"].column("id").to_pylist() == ["AAPL:t0", "MSFT:t1"]
    assert tables["md_quotes"].column("id").to_pylist() == ["q-1"]
    for table in tables.values():
        for name in ("ts_event", "ts_ingest", "ts_tick_ingest"):
            assert table.schema.field(name).type == ARROW_TS == pa.timestamp("ns", tz="UTC")
    assert tables["md_trades"].column("ts_event").cast(pa.int64()).to_pylist() == [T0, T0 + 1]


def test_tick_tables_of_an_empty_batch_is_empty():
    assert tick_tables(TickBatch.empty(), "run-1") == {}


@pytest.mark.parametrize("value, text", [
    (100.0, b"100.0"), (1e-7, b"1e-7"), (-0.0, b"-0.0"), (1e16, b"1e+16"), (0.00001, b"0.00001"),
    (float("nan"), b"null"), (float("inf"), b"null"), (float("-inf"), b"null"), (5e-324, b"5e-324"),
])
def test_raw_payload_writes_floats_as_orjson_does(value, text):
    batch = raw_batches_of_one_trade(price=value)
    payload = raw_table(batch, "r").column("payload").to_pylist()[0]
    assert orjson.dumps(value) == text
    assert payload == (b'{"type":"trade","ts":%d,"price":%s,"size":1.0,"side":null,"trade_id":"a\\"b\\\\c"}'
                       % (T0, text))


def raw_batches_of_one_trade(price: float) -> RawTickBatch:
    return RawTickBatch(
        source="feed", symbols=("AAPL",), symbol=np.zeros(1, np.int32), kind=np.array([TRADE], np.int8),
        seq=np.array([7]), ts_event=np.array([T0]), ts_ingest=np.array([T0 + 1]), price=np.array([price]),
        size=np.array([1.0]), side=np.array([SIDE_NONE], np.int8), trade_id=np.array(['a"b\\c'], dtype=object),
        bid=np.array([np.nan]), ask=np.array([np.nan]), bid_size=np.array([np.nan]), ask_size=np.array([np.nan]),
    )
