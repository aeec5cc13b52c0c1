"""Several files as one tape: event-time order, stable ties, batches equal to ticks, one file = itself."""

from __future__ import annotations

import polars as pl
import pytest

from feeds.replay import ColumnMapping, ReplayFeed
from feeds.replay_merge import MergedReplayFeed
from schemas.columns import RawTickBatch

FUTURES = "binance-futures-btcusdt-trades-20200222.csv"
EURUSD = "eurusd-quotes-20200101.csv"
SPOT = "binance-btcusdt-trades.parquet"


def _content(ticks) -> list[dict]:
    return [t.model_dump(exclude={"ts_ingest"}) for t in ticks]


def _flattened(items) -> list:
    return [r for item in items for r in (item.to_records() if type(item) is RawTickBatch else [item])]


@pytest.mark.parametrize("name", [SPOT, EURUSD, FUTURES])
def test_merge_when_one_file_then_its_own_replay_tick_for_tick(real_data, name):
    alone, merged = ReplayFeed(real_data / name), MergedReplayFeed([ReplayFeed(real_data / name)])
    assert merged.source == alone.source
    assert _content(merged.ticks()) == _content(alone.ticks())
    assert _content(_flattened(merged.batches(max_rows=700))) == _content(_flattened(alone.batches(max_rows=700)))


def _trades_and_quotes(tmp_path):
    """A trades file and a quotes file of one symbol, with a trade and a quote at the same stamp."""
    (tmp_path / "trades.csv").write_text("ts,price,size,side,trade_id\n100,10.0,1.0,buy,a\n300,11.0,2.0,sell,b\n"
                                         "400,oops,1.0,buy,c\n")
    (tmp_path / "quotes.csv").write_text("ts,bid,ask,bid_size,ask_size\n100,9.5,10.5,3,4\n200,9.6,10.6,3,4\n")
    trades = ReplayFeed(tmp_path / "trades.csv", ColumnMapping(kind="trade", timestamp="ts", price="price", size="size",
                                                               side="side", trade_id="trade_id"), symbol="X")
    quotes = ReplayFeed(tmp_path / "quotes.csv", ColumnMapping(kind="quote", timestamp="ts", bid="bid", ask="ask",
                                                               bid_size="bid_size", ask_size="ask_size"), symbol="X")
    return trades, quotes


def test_merge_when_trades_and_quotes_then_event_time_order_ties_by_file_order_and_bad_rows_kept(tmp_path):
    trades, quotes = _trades_and_quotes(tmp_path)
    merged = MergedReplayFeed([quotes, trades])
    ticks = list(merged.ticks())
    assert [(t.seq, t.ts_event, t.payload["type"]) for t in ticks] == [
        (0, 100, "quote"), (1, 100, "trade"), (2, 200, "quote"), (3, 300, "trade"), (4, 400, "trade")]
    assert ticks[4].payload["price"] == "oops"  # raw, for normalize to dead-letter
    assert ticks[0].payload == {"type": "quote", "ts": 100, "bid": 9.5, "ask": 10.5, "bid_size": 3.0, "ask_size": 4.0}
    assert merged.source == "replay:quotes+trades" and merged.market_streams == ("trade", "quote")
    assert [t.id for t in ticks] == [f"replay:quotes+trades:{i}" for i in range(5)]
    assert [t.payload["type"] for t in MergedReplayFeed([trades, quotes]).ticks()][:2] == ["trade", "quote"]


@pytest.mark.parametrize("start", [0, 1, 3])
def test_merge_batches_when_flattened_then_the_ticks_from_any_start(tmp_path, start):
    trades, quotes = _trades_and_quotes(tmp_path)
    merged = MergedReplayFeed([trades, quotes])
    items = list(merged.batches(start, max_rows=2))
    assert _content(_flattened(items)) == _content(merged.ticks(start))
    batches = [i for i in items if type(i) is RawTickBatch and len(i)]
    assert any(len(set(b.kind.tolist())) == 2 for b in batches) or start > 0  # kinds share a batch
    watermarks = [i.watermark for i in items if type(i) is RawTickBatch]
    assert watermarks == sorted(watermarks)


def test_merge_when_real_trades_and_quotes_then_every_row_once_in_event_time(real_data):
    merged = MergedReplayFeed([ReplayFeed(real_data / FUTURES), ReplayFeed(real_data / EURUSD)])
    ticks = list(merged.ticks())
    assert len(ticks) == 9_999 + 9_500 == len(merged)
    assert all(a.ts_event <= b.ts_event for a, b in zip(ticks, ticks[1:]))
    by_symbol = pl.DataFrame({"symbol": [t.symbol for t in ticks]})["symbol"].value_counts().sort("symbol").rows()
    assert by_symbol == [("BTCUSDT", 9_999), ("EURUSD", 9_500)]
    assert _content(_flattened(merged.batches(max_rows=8_000))) == _content(ticks)


def test_merge_when_no_files_then_error():
    with pytest.raises(ValueError, match="at least one file"):
        MergedReplayFeed([])
