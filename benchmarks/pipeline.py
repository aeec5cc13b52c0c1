"""Throughput, memory and latency of the fused embedded pipeline on one Bytewax worker.

    python benchmarks/pipeline.py [--ticks N | --duration S] [--no-raw] [--trading] [--rate R]

- market-data half (default): synthetic feed at full speed through normalize, bars and features
  into the embedded warehouse. Target: >= 500,000 ticks/s with ``--no-raw``; peak RSS <= 1 GiB and
  flat over 10 minutes (``--duration 600`` prints the peak RSS of every minute).
- ``--trading``: the whole pipeline, signals, desk (risk, simulated venue, ledger) included, md.raw
  landed. Target: >= 150,000 ticks/s.
- ``--rate R``: pace the feed at R ticks/s of wall clock (event time follows) and print, from the
  warehouse, tick -> order, tick -> fill and bar end -> order latency. Targets at 10,000 ticks/s:
  bar end -> order p99 <= 20 ms, tick -> fill p50 <= the venue's 50 ms latency + 20 ms, tick -> order
  p99 <= 5 ms. The first ~35 s are the features' warm-up. Also printed: bar end -> order from the
  bar's end on the feed's schedule, which counts a stall of the whole dataflow (the others start
  their clock at a tick's ``ts_ingest``, taken after such a stall).

Prints ticks/s (wall clock over the whole run, final flush included) and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feeds import make_feed  # noqa: E402
from flows.pipeline import MarketDataConfig, TradingConfig, build_embedded_flow, feed_market_streams, feed_universe, run_flow  # noqa: E402
from flows.source import FeedLimits  # noqa: E402
from sinks.warehouse import Warehouse  # noqa: E402
from sinks.writer import BatchingWriter  # noqa: E402
from config.control_channel import ControlChannel  # noqa: E402
from tapeflow.progress import RunProgress  # noqa: E402
from tapeflow.report import trading_summary  # noqa: E402
from config.settings import Settings  # noqa: E402


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=None, help="wall seconds instead of a tick count")
    parser.add_argument("--no-raw", action="store_true", help="do not land md.raw")
    parser.add_argument("--trading", action="store_true", help="the whole pipeline, trading half included")
    parser.add_argument("--rate", type=float, default=None, help="pace at N ticks/s and report latency")
    parser.add_argument("--warehouse", default=None, help="default: a fresh chdb path in a temp dir")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (its warehouse) for a look afterwards; by default it is removed "
                             "(a million-tick run lands about a gigabyte)")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="tapeflow-bench-")
    try:
        bench(args, workdir)
    finally:
        if args.keep:
            print(f"kept             {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def bench(args: argparse.Namespace, workdir: str) -> None:
    url = args.warehouse or f"chdb://{workdir}/warehouse"
    settings = Settings(warehouse=url, store_raw=not args.no_raw)
    wh = Warehouse.connect(settings.warehouse, database="bench")
    wh.apply_ddl()
    # no recovery: nothing replays, so no landed-tick window (as `tapeflow run` without --recovery-dir)
    writer = BatchingWriter(wh, "bench", max_rows=settings.sink_max_rows, max_age_s=settings.sink_max_age_s,
                            replays=False)
    limits = FeedLimits(max_ticks=None if args.duration else args.ticks, duration_s=args.duration)
    feed = make_feed("synthetic", seed=7, rate=args.rate)
    trading = TradingConfig.from_settings(settings, feed_universe(feed), feed_market_streams(feed)) if args.trading or args.rate else None
    progress = RunProgress(interval_s=5.0)
    peak_sampled = [0.0]
    rss_by_minute: dict[int, float] = {}  # peak RSS within each wall-clock minute: flat or growing?
    done = threading.Event()
    sampling_since = time.monotonic()

    def sample_rss() -> None:
        while not done.wait(1.0):
            rss = current_rss_mib()
            peak_sampled[0] = max(peak_sampled[0], rss)
            minute = int((time.monotonic() - sampling_since) // 60)
            rss_by_minute[minute] = max(rss_by_minute.get(minute, 0.0), rss)

    threading.Thread(target=sample_rss, daemon=True).start()
    flow = build_embedded_flow(MarketDataConfig.from_settings(settings), feed, writer, progress, limits,
                               trading=trading, control=ControlChannel(Path(workdir) / "control.jsonl"))
    progress.start()
    started = time.perf_counter()
    cpu_started, dataflow_cpu_started = time.process_time(), time.thread_time()
    run_flow(flow, settings.epoch_interval_s)
    elapsed = time.perf_counter() - started
    # CPU seconds as well as the wall clock: on a shared machine the wall clock measures the load
    # of others too; the dataflow thread's CPU time bounds the rate when a core is free for it.
    dataflow_cpu = time.thread_time() - dataflow_cpu_started
    process_cpu = time.process_time() - cpu_started
    progress.stop()
    done.set()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bars = wh.query("SELECT count() FROM md_bars WHERE run_id = 'bench'").scalar()
    vectors = wh.query("SELECT count() FROM features WHERE run_id = 'bench'").scalar()
    print(f"pipeline         {'full (trading)' if trading else 'market data'}; md.raw landed: {not args.no_raw}")
    print(f"ticks            {progress.ticks:,}")
    print(f"elapsed          {elapsed:.2f} s")
    target = "150,000" if trading else "500,000 (without md.raw)"
    print(f"throughput       {progress.ticks / elapsed:,.0f} ticks/s (target >= {target})")
    print(f"CPU              dataflow thread {dataflow_cpu:.2f} s ({progress.ticks / dataflow_cpu:,.0f} ticks per CPU-s); "
          f"whole process {process_cpu:.2f} s ({progress.ticks / process_cpu:,.0f} ticks per CPU-s)")
    print(f"CPU by thread    {cpu_by_thread_name()} s")
    print(f"bars / features  {bars:,} / {vectors:,}")
    print(f"peak RSS         {peak_mib:,.0f} MiB (target <= 1024)")
    if len(rss_by_minute) >= 2:
        minutes = sorted(rss_by_minute)
        print("RSS by minute    " + " ".join(f"{rss_by_minute[m]:,.0f}" for m in minutes) + " MiB"
              f" (last minute - second minute: {rss_by_minute[minutes[-1]] - rss_by_minute[minutes[min(1, len(minutes) - 1)]]:+,.0f} MiB)")
    if trading:
        summary = trading_summary(wh, "bench")
        o, f = summary.tick_to_order_us, summary.tick_to_fill_us
        print(f"orders / fills   {summary.orders:,} / {summary.fills:,}" + rejected_by_reason(wh, "bench"))
        print(f"tick->order      p50 {o[0] / 1000:.2f} ms  p99 {o[1] / 1000:.2f} ms  max {o[2] / 1000:.2f} ms"
              + ("  (target p99 <= 5 ms at 10,000 ticks/s)" if args.rate else "  (unpaced: includes queueing)"))
        print(f"tick->fill       p50 {f[0] / 1000:.2f} ms  p99 {f[1] / 1000:.2f} ms  max {f[2] / 1000:.2f} ms"
              + ("  (target p50 <= venue latency 50 ms + 20 ms)" if args.rate else ""))
        if args.rate:
            on_tape, flushed, flushed_max = tick_to_order_on_the_tape_ms(wh, "bench")
            print(f"  on the tape    p50 {on_tape[0]:.2f} ms  p99 {on_tape[1]:.2f} ms  max {on_tape[2]:.2f} ms  "
                  f"(n {on_tape[3]:,}; without the {flushed} orders of the bar the end of the run closed: "
                  f"max {flushed_max:.2f} ms)")
            b = bar_end_to_order_ms(wh, "bench")
            print(f"bar end->order   p50 {b[0]:.2f} ms  p99 {b[1]:.2f} ms  max {b[2]:.2f} ms  (n {b[3]:,}; target p99 <= 20 ms)")
            s = bar_end_on_schedule_to_order_ms(wh, "bench", feed.speed)
            print(f"  on schedule    p50 {s[0]:.2f} ms  p99 {s[1]:.2f} ms  max {s[2]:.2f} ms  (n {s[3]:,}; from the bar's "
                  "end on the feed's schedule: a stall of the dataflow before that tick was handed over counts too)")


def cpu_by_thread_name(top: int = 6) -> str:
    """The process's CPU seconds so far by thread name (ClickHouse's own threads included), largest first."""
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    by_name: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields_ = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        by_name[name] = by_name.get(name, 0.0) + (int(fields_[11]) + int(fields_[12])) / ticks_per_s
    ranked = sorted(by_name.items(), key=lambda item: -item[1])[:top]
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in ranked)


def rejected_by_reason(wh, run_id: str) -> str:
    """``"; rejected N (reason n, ...)"``: orders that risk refused, by reason (a long run trips
    limits, and then its orders stop reaching the venue: the fills stop growing for that reason)."""
    rows = wh.query("SELECT reason, count() FROM (SELECT arrayJoin(reasons) AS reason FROM orders_rejected FINAL "
                    "WHERE run_id = {r:String}) GROUP BY reason ORDER BY count() DESC", {"r": run_id}).rows
    if not rows:
        return "; rejected 0"
    total = wh.query("SELECT count() FROM orders_rejected FINAL WHERE run_id = {r:String}", {"r": run_id}).scalar()
    return f"; rejected {total:,} (" + ", ".join(f"{reason} {n:,}" for reason, n in rows) + ")"


def tick_to_order_on_the_tape_ms(wh, run_id: str) -> tuple[tuple[float, float, float, int], int, float]:
    """Tick -> order for the orders of cross-sections the tape completed, how many orders came from
    the end of the run instead, and their largest tick -> order: a run cut short mid-bar closes its
    open bar when it stops (on the feed's end-of-tape batch, ``flows/source.py``), so those orders
    follow the run's end, not the market. They are the orders whose bar end is after the last tick."""
    ((last_tick,),) = wh.query("SELECT max(ts_event) FROM md_trades WHERE run_id = {r:String}", {"r": run_id}).rows
    ((p50, p99, top, n, flushed, flushed_max),) = wh.query(
        "SELECT quantileExactIf(0.5)(d, on_tape), quantileExactIf(0.99)(d, on_tape), maxIf(d, on_tape), "
        "countIf(on_tape), countIf(NOT on_tape), maxIf(d, NOT on_tape) FROM (SELECT ts_event <= {last:DateTime64(9, 'UTC')} AS on_tape, "
        "(toUnixTimestamp64Nano(ts_ingest) - toUnixTimestamp64Nano(ts_tick_ingest)) / 1e6 AS d "
        "FROM orders_intent FINAL WHERE run_id = {r:String})",
        {"r": run_id, "last": last_tick}).rows
    return (float(p50 or 0), float(p99 or 0), float(top or 0), int(n)), int(flushed), float(flushed_max or 0)


def bar_end_to_order_ms(wh, run_id: str) -> tuple[float, float, float, int]:
    """From a bar's end on the wall clock to each order sent at that bar end.

    A bar's end on the wall clock is when the feed handed over the first tick (trade or quote, any
    symbol) at or after the bar's end time: the moment the tape showed the bar was over. A paced feed
    hands ticks over on its event-time schedule in bursts of at most ~1 ms, so this is within about a
    millisecond of the schedule's own time for the bar end, and it needs no clock shared with the feed.
    An order's ``ts_event`` is its bar end; its ``ts_ingest`` is when the desk created it."""
    (row,) = wh.query(
        "WITH ticks AS (SELECT 1 AS k, ts_event, ts_ingest FROM md_trades WHERE run_id = {run:String} "
        "               UNION ALL SELECT 1 AS k, ts_event, ts_ingest FROM md_quotes WHERE run_id = {run:String}), "
        "bars AS (SELECT DISTINCT 1 AS k, ts_event AS bar_end FROM orders_intent WHERE run_id = {run:String}), "
        "passed AS (SELECT b.bar_end AS bar_end, t.ts_ingest AS wall_end "
        "           FROM bars AS b ASOF JOIN ticks AS t ON b.k = t.k AND t.ts_event >= b.bar_end) "
        "SELECT quantileExact(0.5)(d), quantileExact(0.99)(d), max(d), count() FROM ("
        " SELECT (toUnixTimestamp64Nano(o.ts_ingest) - toUnixTimestamp64Nano(p.wall_end)) / 1e6 AS d"
        " FROM (SELECT * FROM orders_intent FINAL WHERE run_id = {run:String}) AS o"
        " INNER JOIN passed AS p ON o.ts_event = p.bar_end)",
        parameters={"run": run_id},
    ).rows
    return float(row[0] or 0), float(row[1] or 0), float(row[2] or 0), int(row[3] or 0)


def bar_end_on_schedule_to_order_ms(wh, run_id: str, speed: float) -> tuple[float, float, float, int]:
    """From a bar's end on the paced feed's schedule to each order sent at that bar end, for the
    orders of cross-sections the tape completed.

    :func:`bar_end_to_order_ms` starts the clock when the feed handed over the next tick, so a
    pause of the whole dataflow (the feed is read on the dataflow thread) delays that tick's
    ``ts_ingest`` as much as the order and does not show. Here the clock starts when the schedule
    made the bar's end due: ``anchor + (bar_end - first ts_event) / speed`` (``feeds/pacing.py``), the
    anchor being the smallest ``ts_ingest - (ts_event - first ts_event) / speed`` over the ticks
    (no tick is handed over before it is due, and the first goes out at once)."""
    ns = "toUnixTimestamp64Nano"
    (row,) = wh.query(
        f"WITH ticks AS (SELECT {ns}(ts_event) AS e, {ns}(ts_ingest) AS i FROM md_trades WHERE run_id = {{r:String}} "
        f"               UNION ALL SELECT {ns}(ts_event), {ns}(ts_ingest) FROM md_quotes WHERE run_id = {{r:String}}), "
        "first AS (SELECT min(e) AS e0, max(e) AS last FROM ticks), "
        "anchor AS (SELECT min(i - (e - (SELECT e0 FROM first)) / {speed:Float64}) AS a FROM ticks) "
        f"SELECT quantileExact(0.5)(d), quantileExact(0.99)(d), max(d), count() FROM ("
        f" SELECT ({ns}(ts_ingest) - ((SELECT a FROM anchor) + ({ns}(ts_event) - (SELECT e0 FROM first)) / {{speed:Float64}})) / 1e6 AS d"
        f" FROM orders_intent FINAL WHERE run_id = {{r:String}} AND {ns}(ts_event) <= (SELECT last FROM first))",
        {"r": run_id, "speed": speed},
    ).rows
    return float(row[0] or 0), float(row[1] or 0), float(row[2] or 0), int(row[3] or 0)


if __name__ == "__main__":
    main()
