"""Running the fused embedded pipeline inside a test, against the session's warehouse."""

from __future__ import annotations

from pathlib import Path

from flows.pipeline import MarketDataConfig, build_embedded_flow, run_flow
from flows.source import Feed, FeedLimits
from sinks.warehouse import Warehouse
from sinks.writer import BatchingWriter
from tapeflow.progress import RunProgress
from tapeflow.settings import Settings

WALL_CLOCK_COLUMNS = ("ts_ingest", "ts_tick_ingest", "ts_written", "run_id")


def run_embedded(
    wh: Warehouse,
    feed: Feed,
    run_id: str,
    *,
    max_ticks: int | None = None,
    recovery_dir: Path | None = None,
    symbols: tuple[str, ...] | None = None,
    **settings,
) -> RunProgress:
    config = MarketDataConfig.from_settings(Settings(**settings), symbols)
    writer = BatchingWriter(wh, run_id)
    progress = RunProgress()
    limits = FeedLimits(max_ticks=max_ticks)
    flow = build_embedded_flow(config, feed, writer, progress, limits, resumable=recovery_dir is not None)
    run_flow(flow, epoch_interval_s=0.2, recovery_dir=recovery_dir)
    writer.flush()
    return progress


def table_content(wh: Warehouse, table: str, run_id: str) -> list[tuple]:
    """Every row of a run without wall-clock columns, deduplicated, in id order."""
    columns = [c for c in wh.query(f"SELECT * FROM {table} LIMIT 0").column_names if c not in WALL_CLOCK_COLUMNS]
    final = "FINAL" if "Replacing" in wh.tables()[table] else ""
    listed = ", ".join(columns)
    return list(wh.query(f"SELECT {listed} FROM {table} {final} WHERE run_id = {{r:String}} ORDER BY id", {"r": run_id}).rows)
