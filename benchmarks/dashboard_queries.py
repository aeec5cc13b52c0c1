"""Time every dashboard query on an hour of synthetic trading at 1,000 ticks/s (3.6M ticks).

    .venv/bin/python benchmarks/dashboard_queries.py                       # build (once) then time
    .venv/bin/python benchmarks/dashboard_queries.py --path /tmp/bench-wh --repeats 50

The warehouse is built by the embedded pipeline, unpaced, into its own chDB path (kept between
runs: delete it or pass --rebuild to build again). Prints p50 and p99 per query against the
dashboard's 100 ms target; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboards.queries import QUERIES, fetch  # noqa: E402
from sinks.warehouse import Warehouse  # noqa: E402

TARGET_MS = 100.0
RUN_ID = "bench-1h"


def build(wh: Warehouse, ticks: int, rate: int) -> None:
    from feeds import make_feed
    from flows.pipeline import MarketDataConfig, TradingConfig, build_embedded_flow, feed_universe, run_flow
    from flows.source import FeedLimits
    from sinks.writer import BatchingWriter
    from config.control_channel import ControlChannel
    from tapeflow.progress import RunProgress
    from config.settings import Settings

    settings = Settings()
    feed = make_feed("synthetic", seed=11, ticks_per_second=rate, max_ticks=ticks)
    writer = BatchingWriter(wh, RUN_ID)
    progress = RunProgress(10.0)
    control = ControlChannel(Path(wh.url.removeprefix("chdb://")).parent / "bench-control.jsonl")
    flow = build_embedded_flow(
        MarketDataConfig.from_settings(settings), feed, writer, progress, FeedLimits(max_ticks=ticks),
        trading=TradingConfig.from_settings(settings, feed_universe(feed)), control=control,
    )
    print(f"building {RUN_ID}: {ticks:,} ticks at {rate:,}/s of event time ({ticks / rate / 60:.0f} min of tape)",
          flush=True)
    progress.start()
    try:
        run_flow(flow, settings.epoch_interval_s)
    finally:
        progress.stop()
    writer.flush()


def params_for(wh: Warehouse) -> dict:
    symbol = wh.query("SELECT any(symbol) FROM md_bars WHERE run_id = {r:String}", {"r": RUN_ID}).scalar()
    last_ms = wh.query("SELECT toUnixTimestamp64Milli(max(ts_event)) FROM pnl WHERE run_id = {r:String}",
                       {"r": RUN_ID}).scalar()
    return {
        "run_id": RUN_ID, "symbol": symbol, "strategy": "", "state": "", "limit": 300, "account": "paper",
        # what a live page asks: the equity curve since 1 s ago, fills and signals of the last 5 minutes
        "since_ms": int(last_ms) - 300_000,
    }


def time_queries(wh: Warehouse, repeats: int) -> list[tuple[str, str, float, float, int]]:
    params = params_for(wh)
    results = []
    for name, query in QUERIES.items():
        bound = {p: params[p] for p in query.params}
        if name == "equity_curve":
            bound["since_ms"] = params["since_ms"] + 299_000
        fetch(wh, name, **bound)  # warm: the first call also loads marks and caches
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            rows = fetch(wh, name, **bound).height
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        results.append((name, query.page, statistics.median(samples), p99, rows))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="/tmp/tapeflow-bench-dashboard", help="chDB data path for the warehouse")
    parser.add_argument("--ticks", type=int, default=3_600_000)
    parser.add_argument("--rate", type=int, default=1_000, help="ticks per second of event time")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    wh = Warehouse.connect(f"chdb://{Path(args.path).resolve()}", database="tapeflow")
    if args.rebuild:
        wh.command("DROP DATABASE IF EXISTS tapeflow")
    wh.apply_ddl()
    have = wh.query("SELECT count() FROM md_raw WHERE run_id = {r:String}", {"r": RUN_ID}).scalar()
    if have < args.ticks:
        started = time.monotonic()
        build(wh, args.ticks, args.rate)
        print(f"built in {time.monotonic() - started:,.0f} s", flush=True)
    counts = {t: wh.query(f"SELECT count() FROM {t} WHERE run_id = {{r:String}}", {"r": RUN_ID}).scalar()
              for t in ("md_raw", "md_trades", "md_bars", "signals", "orders_intent", "exec_reports", "positions", "pnl")}
    print("rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))

    results = time_queries(wh, args.repeats)
    print(f"\n{'query':<20} {'page':<8} {'p50 ms':>8} {'p99 ms':>8} {'rows':>7}  vs {TARGET_MS:.0f} ms")
    for name, page, p50, p99, rows in results:
        verdict = "ok" if p99 <= TARGET_MS else "OVER"
        print(f"{name:<20} {page:<8} {p50:8.1f} {p99:8.1f} {rows:7,}  {verdict}")
    by_page: dict[str, float] = {}
    for _, page, p50, _, _ in results:
        by_page[page] = by_page.get(page, 0.0) + p50
    print("\nsum of p50 per page (one refresh of that page; 'desk' figures also feed every header): "
          + ", ".join(f"{page} {ms:.0f} ms" for page, ms in by_page.items()))


if __name__ == "__main__":
    main()
