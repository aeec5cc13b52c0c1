"""The fused embedded pipeline end to end: real Bytewax runs into the real embedded ClickHouse."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from feeds import make_feed
from feeds.replay import ReplayFeed
from tests.integration.embedded_runs import run_embedded, table_content
from tests.real_data import REAL_DATA

BINANCE = REAL_DATA / "binance-btcusdt-trades.parquet"

pytestmark = pytest.mark.integration


def polars_reference_bars(path: Path, every_ns: int) -> pl.DataFrame:
    """Bars computed straight from the file, independently of tapeflow's feed, normalize and bars."""
    trades = (
        pl.read_parquet(path)
        .with_columns(
            ts=pl.col("timestamp").dt.epoch("ns"),
            side=pl.when(pl.col("buyer_maker") == "True").then(pl.lit("sell")).otherwise(pl.lit("buy")),
        )
        .with_row_index("row")
        .sort(["ts", "row"])
        .with_columns(bar_start=(pl.col("ts") // every_ns) * every_ns)
    )
    return (
        trades.group_by("bar_start", maintain_order=True)
        .agg(
            open=pl.col("price").first(),
            high=pl.col("price").max(),
            low=pl.col("price").min(),
            close=pl.col("price").last(),
            volume=pl.col("quantity").sum(),
            vwap=(pl.col("price") * pl.col("quantity")).sum() / pl.col("quantity").sum(),
            trade_count=pl.len(),
            buy_volume=pl.col("quantity").filter(pl.col("side") == "buy").sum(),
            sell_volume=pl.col("quantity").filter(pl.col("side") == "sell").sum(),
        )
        .sort("bar_start")
    )


@pytest.fixture(scope="module")
def binance_run(module_warehouse):
    progress = run_embedded(module_warehouse, ReplayFeed(BINANCE), "binance")
    return module_warehouse, progress


@pytest.mark.parametrize("interval, every_ns", [("1s", 1_000_000_000), ("1m", 60_000_000_000)])
def test_replay_binance_when_landed_then_bars_equal_an_independent_polars_reference(binance_run, interval, every_ns):
    wh, _ = binance_run
    landed = wh.query_df(
        "SELECT toUnixTimestamp64Nano(bar_start) AS bar_start, open, high, low, close, volume, vwap, trade_count, "
        "buy_volume, sell_volume FROM md_bars FINAL WHERE run_id = 'binance' AND interval = {i:String} ORDER BY bar_start",
        {"i": interval},
    )
    reference = polars_reference_bars(BINANCE, every_ns)
    assert landed.height == reference.height > 0
    assert landed["bar_start"].to_list() == reference["bar_start"].to_list()
    for column in ("open", "high", "low", "close", "trade_count"):
        assert landed[column].to_list() == reference[column].to_list(), column
    for column in ("volume", "vwap", "buy_volume", "sell_volume"):
        diff = (landed[column] - reference[column]).abs().max()
        assert diff <= 1e-9, f"{column} differs by {diff}"


def test_replay_binance_when_landed_then_every_tick_is_a_trade_or_a_dead_letter(binance_run):
    wh, progress = binance_run
    trades = wh.query("SELECT count() FROM md_trades WHERE run_id = 'binance'").scalar()
    raw = wh.query("SELECT count() FROM md_raw WHERE run_id = 'binance'").scalar()
    dead = wh.query("SELECT count() FROM dlq WHERE run_id = 'binance' AND stage = 'normalize'").scalar()
    assert progress.ticks == raw == 2001
    assert trades + dead == 2001


def test_replay_binance_when_features_landed_then_one_vector_per_1s_bar_after_warmup(binance_run):
    wh, _ = binance_run
    from market.features import WARMUP_BARS

    bars = wh.query("SELECT count() FROM md_bars FINAL WHERE run_id = 'binance' AND interval = '1s'").scalar()
    vectors = wh.query("SELECT count(), countIf(isNaN(rsi_14)) FROM features FINAL WHERE run_id = 'binance'").rows[0]
    assert vectors[0] == bars - (WARMUP_BARS - 1)
    assert vectors[1] == 0


def test_synthetic_when_run_twice_with_the_same_seed_then_warehouse_contents_identical(module_warehouse):
    for run_id in ("seed7-a", "seed7-b"):
        run_embedded(module_warehouse, make_feed("synthetic", seed=7, ticks_per_second=200), run_id, max_ticks=40_000)
    run_embedded(module_warehouse, make_feed("synthetic", seed=8, ticks_per_second=200), "seed8", max_ticks=40_000)
    for table in ("md_raw", "md_trades", "md_quotes", "md_bars", "features", "dlq"):
        first = table_content(module_warehouse, table, "seed7-a")
        assert first == table_content(module_warehouse, table, "seed7-b"), table
        if table != "dlq":
            assert first, f"{table} is empty: the comparison would prove nothing"
            assert first != table_content(module_warehouse, table, "seed8"), f"{table} ignores the seed"


def test_replay_when_file_has_bad_rows_then_each_lands_in_dlq_with_its_reason(module_warehouse, tmp_path):
    csv = tmp_path / "bad-trades.csv"
    csv.write_text(
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
        "x,BTCUSDT,1582329602111000,1582329602418379,1,buy,9682,0.132\n"
        "x,BTCUSDT,1582329602116000,1582329602418420,2,buy,-5,0.412\n"  # bad price
        "x,BTCUSDT,1582329602150000,1582329602421528,3,sell,9682.5,0\n"  # bad size
        "x,BTCUSDT,1582329602150000,1582329602421536,1,buy,9682.19,0.01\n"  # duplicate trade id
        "x,BTCUSDT,1582329602160000,1582329602421536,4,buy,12000,0.01\n"  # 24% jump: price band
        "x,BTCUSDT,1582329602170000,1582329602421536,5,sell,,0.01\n"  # missing price
        "x,BTCUSDT,1582329603170000,1582329602421536,6,sell,9683,0.5\n"
    )
    run_embedded(module_warehouse, ReplayFeed(csv, mapping="tardis-trades"), "bad-rows")
    reasons = module_warehouse.query(
        "SELECT reason, count() FROM dlq WHERE run_id = 'bad-rows' GROUP BY reason ORDER BY reason"
    ).rows
    assert dict(reasons) == {"bad_price": 1, "bad_size": 1, "duplicate_trade": 1, "price_band": 1, "malformed": 1}
    trades = module_warehouse.query("SELECT count() FROM md_trades WHERE run_id = 'bad-rows'").scalar()
    assert trades == 2
    payload = module_warehouse.query("SELECT payload FROM dlq WHERE run_id = 'bad-rows' AND reason = 'bad_price'").scalar()
    assert "-5" in payload


def test_synthetic_when_stopped_and_resumed_from_recovery_then_same_bars_and_features_as_one_run(module_warehouse, tmp_path):
    def feed():  # a tape of 40,000 ticks: both runs reach its end and flush the last bars
        return make_feed("synthetic", seed=11, ticks_per_second=200, max_ticks=40_000)

    run_embedded(module_warehouse, feed(), "whole")
    recovery = tmp_path / "recovery"
    run_embedded(module_warehouse, feed(), "resumed", max_ticks=17_777, recovery_dir=recovery)
    stopped_bars = module_warehouse.query("SELECT count() FROM md_bars WHERE run_id = 'resumed'").scalar()
    run_embedded(module_warehouse, feed(), "resumed", recovery_dir=recovery)
    for table in ("md_trades", "md_bars", "features"):
        whole = table_content(module_warehouse, table, "whole")
        assert whole and table_content(module_warehouse, table, "resumed") == whole, table
    raw_ids = module_warehouse.query("SELECT count(), uniqExact(id) FROM md_raw WHERE run_id = 'resumed'").rows[0]
    assert raw_ids == (40_000, 40_000)
    whole_bars = module_warehouse.query("SELECT count() FROM md_bars WHERE run_id = 'whole'").scalar()
    assert 0 < stopped_bars < whole_bars  # the stop really was mid-way, and kept its open bars unflushed
