"""ReplayFeed.batches(): regular rows as RawTickBatches, irregular rows as the RawTicks of ticks()."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feeds.batching import HEARTBEAT_NS
from feeds.pacing import Pacer
from feeds.replay import ColumnMapping, ReplayFeed
from schemas import RawTick
from schemas.columns import RawTickBatch, columnar_payload

REAL_FILES = ("binance-btcusdt-trades.parquet", "binance-futures-btcusdt-trades-20200222.csv", "eurusd-quotes-20200101.csv")
TRADES = ColumnMapping(kind="trade", timestamp="ts", timestamp_unit="ms", price="px", size="qty", side="side", symbol="sym")
QUOTES = ColumnMapping(kind="quote", timestamp="ts", timestamp_unit="ms", bid="b", ask="a", bid_size="bs", ask_size="as",
                       fixed_symbol="Q")


def _value(v):
    return "NaN" if type(v) is float and math.isnan(v) else v  # NaN != NaN, yet the same payload


def shape(tick: RawTick) -> tuple:
    """Every field but the wall-clock ts_ingest, payload values with their types and key order."""
    return (tick.schema_version, tick.id, tick.seq, tick.ts_event, tick.source, tick.symbol, tick.payload_format,
            [(k, type(v), _value(v)) for k, v in tick.payload.items()])


def flatten(items: list[RawTickBatch | RawTick]) -> list[RawTick]:
    return [t for item in items for t in (item.to_records() if type(item) is RawTickBatch else [item])]


def check_items(items: list[RawTickBatch | RawTick], feed: ReplayFeed, start: int = 0) -> None:
    """Flattened like ticks(start); batches hold columnar rows only, records only the others."""
    assert [shape(t) for t in flatten(items)] == [shape(t) for t in feed.ticks(start)]
    for item in items:
        if type(item) is RawTickBatch:
            assert all(columnar_payload(t) for t in item.to_records())
        else:
            assert not columnar_payload(item)
    for a, b in itertools.pairwise(items):  # two batches meet only at a max_rows cut or after a heartbeat
        if type(a) is RawTickBatch and type(b) is RawTickBatch and len(a) and len(b):
            assert int(b.seq[0]) == int(a.seq[-1]) + 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", REAL_FILES)
def test_replay_batches_when_real_file_then_flattened_equal_ticks_from_any_start(real_data, name):
    feed = ReplayFeed(real_data / name)
    n = len(feed)
    for start, max_rows in ((0, 2_000), (1, 2_000), (n // 2, 333), (n - 1, 2_000), (n, 2_000), (0, 1)):
        items = list(feed.batches(start, max_rows=max_rows))
        check_items(items, feed, start)
        assert all(type(i) is RawTickBatch and 0 < len(i) <= max_rows for i in items)


@pytest.mark.parametrize("name", REAL_FILES)
def test_replay_batches_when_unpaced_then_watermark_is_last_event_time_and_holds(real_data, name):
    items = list(ReplayFeed(real_data / name).batches(0, max_rows=500))
    ts = np.concatenate([b.ts_event for b in items])
    row = 0
    for batch in items:
        row += len(batch)
        assert batch.watermark == int(batch.ts_event[-1])
        assert np.all(ts[row:] >= batch.watermark)


def test_replay_batches_when_tied_stamps_then_watermark_admits_the_tie(tmp_path):
    path = _write(tmp_path / "t.csv", "ts,px,qty,side,sym\n1,1,1,buy,X\n2,2,1,buy,X\n2,3,1,sell,X\n3,4,1,buy,X\n")
    items = list(ReplayFeed(path, mapping=TRADES).batches(0, max_rows=2))
    assert [len(b) for b in items] == [2, 2]
    assert items[0].watermark == 2_000_000 == items[1].ts_event[0]  # the next row carries the same stamp


def test_replay_batches_when_values_missing_or_unparseable_then_records_between_batches(tmp_path):
    path = _write(
        tmp_path / "t.csv",
        "ts,px,qty,side,sym\n-5,13,2,buy,X\n1000,10.5,1,BUY,X\n1500,10,1,sell,X\n2000,n/a,1,sell,X\n,11,1,buy,X\n"
        "2500,11,1,buy,Y\n3000,12,,sideways,X\n3100,12,1,sideways,X\n3200,13,2,,\nlater,13,2,,\n",
    )
    feed = ReplayFeed(path, mapping=TRADES)
    items = list(feed.batches())
    check_items(items, feed)
    kinds = [("B", i.seq.tolist()) if type(i) is RawTickBatch else ("R", i.seq) for i in items]
    assert kinds == [("R", 0), ("B", [1, 2]), ("R", 3), ("R", 4), ("B", [5]), ("R", 6), ("R", 7), ("B", [8]), ("R", 9)]
    assert items[0].payload["ts"] == -5_000_000  # before 1970: not a column value, normalize names it
    assert items[1].watermark == 1_500_000_000 and items[4].watermark == 2_500_000_000
    assert items[7].symbols == ("X", "Y", "UNKNOWN") and items[7].symbol_names().tolist() == ["UNKNOWN"]
    assert items[7].to_records()[0].payload["side"] == "unknown"
    assert items[-1].payload["ts"] == "later" and items[-1].ts_event == 3_200_000_000  # borrowed stamp
    for start in range(len(feed) + 1):
        check_items(list(feed.batches(start, max_rows=1)), feed, start)
        check_items(list(feed.batches(start, max_rows=2)), feed, start)


def test_replay_batches_when_a_handover_ends_on_a_record_then_an_empty_batch_carries_its_watermark(tmp_path):
    path = _write(tmp_path / "t.csv", "ts,px,qty,side,sym\n1000,1,1,buy,X\n2000,n/a,1,buy,X\n")
    feed = ReplayFeed(path, mapping=TRADES)
    first, record, mark = feed.batches()
    assert (len(first), first.watermark) == (1, 1_000_000_000)
    assert record.seq == 1 and record.payload["price"] == "n/a"
    assert (type(mark), len(mark), mark.watermark) == (RawTickBatch, 0, 2_000_000_000)


def test_replay_batches_when_parquet_nan_and_nulls_then_nan_stays_in_a_batch(tmp_path):
    path = tmp_path / "bm.parquet"
    pl.DataFrame({
        "t": [1, 2, 3, 4, 5], "p": [1.0, float("nan"), 3.0, None, 5.0], "q": [1, 1, 1, 1, 2],
        "maker": [True, False, None, True, False], "id": ["a", "b", "c", "d", None],
    }).write_parquet(path)
    mapping = ColumnMapping(kind="trade", timestamp="t", timestamp_unit="s", price="p", size="q", buyer_maker="maker",
                            trade_id="id", fixed_symbol="ABC")
    feed = ReplayFeed(path, mapping=mapping)
    items = list(feed.batches())
    check_items(items, feed)
    assert [(type(i).__name__, len(i.seq) if type(i) is RawTickBatch else i.seq) for i in items] == [
        ("RawTickBatch", 3), ("RawTick", 3), ("RawTick", 4), ("RawTickBatch", 0)]  # null price; null trade id
    assert math.isnan(items[0].price[1]) and items[0].size.dtype == np.float64  # int sizes read as floats
    assert [t.payload["side"] for t in flatten(items)] == ["sell", "buy", "unknown", "sell", "buy"]


def test_replay_batches_when_quotes_with_gaps_then_records_and_batches(tmp_path):
    path = _write(tmp_path / "q.csv", "ts,b,a,bs,as\n1,1.0,1.1,5,6\n2,,1.2,5,6\n3,1.0,1.3,x,6\n4,1.0,1.4,5,6\n")
    feed = ReplayFeed(path, mapping=QUOTES)
    items = list(feed.batches())
    check_items(items, feed)
    assert [type(i).__name__ for i in items] == ["RawTickBatch", "RawTick", "RawTick", "RawTickBatch"]
    assert items[0].trade_id.tolist() == [None] and np.isnan(items[0].price).all()
    assert items[2].payload["bid_size"] == "x"


def test_replay_batches_when_paced_then_due_rows_heartbeats_and_reached_watermark(tmp_path, fake_clock):
    rows = "".join(f"{ms},1,1,buy,X\n" for ms in (0, 0, 1, 2, 30, 31, 31, 95, 400))
    path = _write(tmp_path / "t.csv", "ts,px,qty,side,sym\n" + rows)
    feed = ReplayFeed(path, mapping=TRADES, speed=1.0,
                      pacer_factory=lambda s: Pacer(s, clock=fake_clock.clock, sleep=fake_clock.sleep))
    wall0 = fake_clock.now_ns
    run = [(fake_clock.now_ns - wall0, item) for item in feed.batches()]
    check_items([item for _, item in run], feed)
    with_rows = [(wall, b.seq.tolist()) for wall, b in run if len(b)]
    assert with_rows == [(0, [0, 1]), (1_000_000, [2]), (2_000_000, [3]), (30_000_000, [4]), (31_000_000, [5, 6]),
                         (95_000_000, [7]), (400_000_000, [8])]
    for wall, batch in run[:-1]:
        assert batch.watermark == wall + 1  # the reached event time (ms stamps from 0) + 1
    heartbeats = [wall for wall, b in run if not len(b)]
    assert heartbeats[:3] == [12_000_000, 22_000_000, 41_000_000]  # 10 ms after the last handover
    assert all(b - a <= HEARTBEAT_NS for a, b in itertools.pairwise([w for w, _ in run]))
    assert run[-1][1].watermark == 400_000_000  # end of the file: its last stamp
