"""Running the fused embedded pipeline inside a test, against the session's warehouse."""

from __future__ import annotations

from pathlib import Path

from flows.pipeline import (MarketDataConfig, TradingConfig, build_embedded_flow, feed_calendar, feed_market_streams,
                            feed_universe, run_flow)
from flows.source import Feed, FeedLimits
from sinks.warehouse import Warehouse
from sinks.writer import BatchingWriter
from config.control_channel import ControlChannel
from tapeflow.progress import RunProgress
from config.settings import Settings

WALL_CLOCK_COLUMNS = ("ts_ingest", "ts_tick_ingest", "ts_written", "run_id")


def run_embedded(
    wh: Warehouse,
    feed: Feed,
    run_id: str,
    *,
    max_ticks: int | None = None,
    recovery_dir: Path | None = None,
    symbols: tuple[str, ...] | None = None,
    trading: bool | TradingConfig = False,
    control: ControlChannel | None = None,
    **settings,
) -> RunProgress:
    """``trading``: False for the market-data half only, True for the default desk, or a config."""
    resolved = Settings(**settings)
    config = MarketDataConfig.from_settings(resolved, symbols)
    if trading is True:
        trading = TradingConfig.from_settings(resolved, feed_universe(feed), feed_market_streams(feed),
                                              feed_calendar(feed))  # as `tapeflow run` does
    writer = BatchingWriter(wh, run_id)
    progress = RunProgress()
    limits = FeedLimits(max_ticks=max_ticks)
    flow = build_embedded_flow(
        config, feed, writer, progress, limits, resumable=recovery_dir is not None,
        trading=trading or None, control=control,
    )
    run_flow(flow, epoch_interval_s=0.2, recovery_dir=recovery_dir)
    writer.flush()
    return progress


def table_content(wh: Warehouse, table: str, run_id: str, before_ns: int | None = None) -> list[tuple]:
    """Every row of a run without wall-clock columns, deduplicated, in id order (with ``before_ns``,
    the rows whose event time is before it)."""
    columns = [c for c in wh.query(f"SELECT * FROM {table} LIMIT 0").column_names if c not in WALL_CLOCK_COLUMNS]
    final = "FINAL" if "Replacing" in wh.tables()[table] else ""
    listed = ", ".join(columns)
    before = "" if before_ns is None else f" AND toUnixTimestamp64Nano(ts_event) < {int(before_ns)}"
    return list(wh.query(f"SELECT {listed} FROM {table} {final} WHERE run_id = {{r:String}}{before} ORDER BY id",
                         {"r": run_id}).rows)
