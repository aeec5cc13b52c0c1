"""The split pipeline over a real Kafka broker: end-to-end throughput, tick-to-order latency when
paced, and the raw ceiling of the same broker (a confluent-kafka consume -> produce passthrough of
the same messages with no processing), so throughput reads as a ratio to it.

    python benchmarks/kafka_pipeline.py [--brokers HOST:PORT] [--ticks N] [--rate 5000 --duration 240]
                                        [--separate-trading] [--chain market|none]

Without --brokers it starts a local broker (tapeflow.broker) in a temp folder. Targets (issue 4):
throughput >= 0.3 x the passthrough ceiling; tick-to-order p99 <= 50 ms at 5,000 ticks/s.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer  # noqa: E402

from config.settings import Settings  # noqa: E402
from feeds import make_feed  # noqa: E402
from topics.admin import create_topics  # noqa: E402
from topics.producer import TopicPublisher, publish_ticks  # noqa: E402


def passthrough_ceiling(bootstrap: str, prefix: str, count: int) -> float:
    """Messages/s of a bare consume -> produce copy of md.raw into md.trades (no decoding)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ceiling-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4",
                         "enable.idempotence": True})
    consumer.subscribe([prefix + "md.raw"])
    copied, started = 0, None
    while copied < count:
        for msg in consumer.consume(5_000, timeout=1.0):
            if msg.error():
                continue
            started = started or time.perf_counter()
            while True:
                try:
                    producer.produce(prefix + "md.trades", msg.value(), msg.key(), headers=msg.headers())
                    break
                except BufferError:
                    producer.poll(0.01)
            copied += 1
        producer.poll(0)
    producer.flush()
    consumer.close()
    return copied / (time.perf_counter() - started)


def run_split(bootstrap: str, workdir: Path, args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tapeflow.cli", "run", "--brokers", bootstrap, *args],
                          cwd=workdir, capture_output=True, text=True,
                          env={"TAPEFLOW_WAREHOUSE": f"chdb://{workdir}/wh", "PATH": "/usr/bin:/bin",
                               "HOME": str(Path.home()),
                               # this checkout's packages, not whichever tapeflow the interpreter has installed
                               "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if done.returncode != 0:
        raise SystemExit(f"tapeflow run --brokers failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


def steady_state(bootstrap: str, workdir: Path, ticks: int, separate: bool, chain: str) -> tuple[float, float]:
    """Ticks/s of the stage processes once they are up: the tape is in md.raw before they start,
    the clock runs from the first offset normalize commits to the moment no stage lags any more.
    Returns (ticks/s, start-up seconds)."""
    from flows.pipeline import feed_calendar, feed_market_streams, feed_universe
    from tapeflow.split_run import SplitRun, _stop_stages

    prefix = f"s{uuid.uuid4().hex[:6]}."
    create_topics(bootstrap, prefix=prefix)
    feed = make_feed("synthetic", seed=7, max_ticks=ticks)
    publish_ticks(feed.ticks(), TopicPublisher(bootstrap, prefix=prefix), max_ticks=ticks)
    split = SplitRun(bootstrap, prefix, workdir / "recovery" / prefix, "steady", f"chdb://{workdir}/wh-steady",
                     feed_universe(feed), feed_market_streams(feed), workdir / "logs" / prefix, 3_600.0, separate, chain,
                     calendar=feed_calendar(feed))
    launched = time.perf_counter()
    # no split.begin(): the tape is already in md.raw, and the stages must read it from the start
    processes = {stage: split.start_stage(stage) for stage in split.stages}
    first = None
    try:
        while True:
            time.sleep(0.25)
            dead = [s for s, p in processes.items() if p.poll() is not None]
            if dead:
                raise SystemExit(f"stage ended: {dead}; logs in {split.log_dir}")
            lag = split.lag()
            if first is None and lag.get(split.stages[0], ticks) < ticks:  # md.raw's reader has begun
                first = time.perf_counter()
            if first is not None and len(lag) == len(processes) and not any(lag.values()):
                return ticks / (time.perf_counter() - first), first - launched
    finally:
        _stop_stages(split.stages, processes)


HOPS_SQL = """
WITH b AS (SELECT bar_end, max({ns}(ts_ingest)) bi FROM md_bars WHERE run_id = {{run_id:String}} AND interval = '{interval}' GROUP BY bar_end),
     f AS (SELECT bar_end, max({ns}(ts_ingest)) fi FROM features WHERE run_id = {{run_id:String}} GROUP BY bar_end),
     s AS (SELECT bar_end, max({ns}(ts_ingest)) si, max({ns}(ts_tick_ingest)) ti FROM signals WHERE run_id = {{run_id:String}} GROUP BY bar_end),
     o AS (SELECT {ns}(ts_tick_ingest) ti, min({ns}(ts_ingest)) oi FROM orders_intent WHERE run_id = {{run_id:String}} GROUP BY ti)
SELECT count(), quantiles(0.5, 0.99)((bi - ti) / 1e6), quantiles(0.5, 0.99)((fi - bi) / 1e6),
       quantiles(0.5, 0.99)((si - fi) / 1e6), quantiles(0.5, 0.99)((oi - si) / 1e6)
FROM s JOIN f USING bar_end JOIN b USING bar_end JOIN o USING ti
"""


# One row per cross-section that sent orders: its tick -> order and whether a tick closed its bars.
# Over Kafka a symbol's bar closes once that symbol trades at its end + the lateness window; a bar
# end later than that on the symbol whose tape ends first was closed by the tape's end instead (the
# end-of-tape markers flush the open bars, topics/end_of_tape.py): those orders waited for the run
# to end, not for the market, as benchmarks/pipeline.py says of the embedded run's last bar.
SECTION_LATENCY_SQL = """
WITH (SELECT min(last) FROM (SELECT max(toUnixTimestamp64Nano(ts_event)) last FROM md_trades
                             WHERE run_id = {run_id:String} GROUP BY symbol)) AS tape_closed_until
SELECT (toUnixTimestamp64Nano(min(ts_ingest)) - toUnixTimestamp64Nano(ts_tick_ingest)) / 1e6 AS ms,
       max(toUnixTimestamp64Nano(ts_event)) + {lateness_ns:Int64} <= tape_closed_until AS on_tape
FROM orders_intent WHERE run_id = {run_id:String} GROUP BY ts_tick_ingest ORDER BY ms
"""


def hop_latencies(warehouse: str, run_id: str, lateness_ns: int, interval: str = "1s") -> None:
    """Where tick-to-order time goes, per cross-section that sent orders: from the tick that closed
    the last bar to that bar (feed -> md.raw -> normalize -> md.trades -> bars), then each stage's
    record after the one it came from (ts_ingest is when a stage made its record)."""
    from sinks.warehouse import Warehouse

    with Warehouse.connect(warehouse) as wh:
        sql = HOPS_SQL.format(ns="toUnixTimestamp64Nano", interval=interval)
        count, *hops = wh.query(sql, {"run_id": run_id}).rows[0]
    names = ("tick->bar", "bar->features", "features->signal", "signal->order")
    print(f"  per hop ({count} cross-sections with orders): " + "  ".join(
        f"{name} p50 {q[0]:.1f} p99 {q[1]:.1f} ms" for name, q in zip(names, hops)))
    with Warehouse.connect(warehouse) as wh:
        # One latency per cross-section (its orders share the closing tick): with a few dozen of
        # them p99 is close to the worst one, so the spread is printed whole.
        sections = wh.query(SECTION_LATENCY_SQL, {"run_id": run_id, "lateness_ns": lateness_ns}).rows
    _print_sections("tick->order per cross-section", [ms for ms, _ in sections])
    on_tape = [ms for ms, closed_by_tick in sections if closed_by_tick]
    if len(on_tape) < len(sections):
        _print_sections("  on the tape", on_tape)
        print(f"  the tape's end closed {len(sections) - len(on_tape)}: "
              + ", ".join(f"{ms:.1f}" for ms, closed_by_tick in sections if not closed_by_tick) + " ms")


def _print_sections(label: str, ordered: list[float]) -> None:
    if ordered:
        q50, q90, q99 = (_nearest_rank(ordered, q) for q in (0.5, 0.9, 0.99))
        print(f"  {label} (n={len(ordered)}): p50 {q50:.1f}  p90 {q90:.1f}  "
              f"p99 {q99:.1f}  max {ordered[-1]:.1f} ms; over 50 ms: {sum(x > 50 for x in ordered)}")


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a running process (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's ended children and all they waited for (the stages)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _nearest_rank(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default=None)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=5_000)
    parser.add_argument("--duration", type=float, default=240,
                        help="Paced run: the first 35 s are feature warm-up; then about one cross-section in three "
                             "sends orders, each a latency sample.")
    parser.add_argument("--separate-trading", action="store_true", help="risk, execution, pnl as three processes.")
    parser.add_argument("--chain", default="market", choices=("market", "none"),
                        help="market (default): normalize, bars, features in one process; none: one process each.")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp dir (broker, recovery folders, warehouses) for a look afterwards; by "
                             "default it is removed (a run leaves about half a gigabyte)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tapeflow-kafka-bench-"))
    broker = None
    bootstrap = args.brokers
    if bootstrap is None:
        from tapeflow.broker import LocalBroker

        broker = LocalBroker(workdir / "kafka")
        bootstrap = broker.start().bootstrap
    try:
        ceiling_prefix = f"c{uuid.uuid4().hex[:6]}."
        create_topics(bootstrap, prefix=ceiling_prefix)
        publish_ticks(make_feed("synthetic", seed=7).ticks(), TopicPublisher(bootstrap, prefix=ceiling_prefix),
                      max_ticks=args.ticks)
        ceiling = passthrough_ceiling(bootstrap, ceiling_prefix, args.ticks)
        print(f"passthrough ceiling   {ceiling:,.0f} msgs/s (consume -> produce, no processing)")

        trading = (["--separate-trading"] if args.separate_trading else []) + ["--chain", args.chain]
        print(f"stages                chain {args.chain}{', separate trading' if args.separate_trading else ''}")
        steady, start_up = steady_state(bootstrap, workdir, args.ticks, args.separate_trading, args.chain)
        print(f"split pipeline        {steady:,.0f} ticks/s once the stages are up (tape already in md.raw; "
              f"start-up {start_up:.1f} s not counted)")
        print(f"ratio to ceiling      {steady / ceiling:.2f} (target >= 0.3)")

        elapsed, _ = run_split(bootstrap, workdir, ["--prefix", f"t{uuid.uuid4().hex[:6]}.", "--max-ticks",
                                                    str(args.ticks), "--no-raw", "--run-id", "throughput", *trading])
        throughput = args.ticks / elapsed
        print(f"split pipeline        {throughput:,.0f} ticks/s end to end ({args.ticks:,} ticks in {elapsed:.1f} s, "
              f"stage start-up and catch-up included)")
        print(f"ratio to ceiling      {throughput / ceiling:.2f} with start-up")

        broker_pid = broker.status(check_ready=False).pid if broker is not None else None
        broker_cpu, stages_cpu = _cpu_seconds(broker_pid), _children_cpu_seconds()
        paced_from = datetime.now(timezone.utc)
        paced_s, summary = run_split(bootstrap, workdir, ["--prefix", f"l{uuid.uuid4().hex[:6]}.", "--rate",
                                                          str(args.rate), "--duration", str(args.duration),
                                                          "--run-id", "latency", *trading])
        # Where the two cores went while paced: every hop waits for a core, so this is the contention
        # the tick -> order tail comes from (the stages: feed, chained market, signals, trading, sink).
        stages_cpu, broker_cpu = _children_cpu_seconds() - stages_cpu, _cpu_seconds(broker_pid) - broker_cpu
        print(f"CPU while paced        {paced_s:.0f} s: stage processes {stages_cpu:.0f} s ({stages_cpu / paced_s:.0%} "
              f"of a core)" + (f", broker {broker_cpu:.0f} s ({broker_cpu / paced_s:.0%})" if broker_pid else ""))
        if broker is not None:  # a pause at the broker holds up every hop at once
            pauses = sorted(broker.pauses_ms(paced_from, datetime.now(timezone.utc)))
            if pauses:
                print(f"broker pauses paced   {len(pauses)} safepoints: p99 {_nearest_rank(pauses, 0.99):.2f} ms, "
                      f"max {pauses[-1]:.2f} ms, {sum(pauses) / paced_s / 10:.2f}% of the time; "
                      f"over 10 ms: {sum(p > 10 for p in pauses)}")
        latency = re.search(r"latency tick->order p50 ([\d,]+) us\s+p99 ([\d,]+) us", summary)
        if latency:
            p50, p99 = (int(x.replace(",", "")) / 1000 for x in latency.groups())
            print(f"tick->order at {args.rate:,.0f}/s  p50 {p50:.1f} ms  p99 {p99:.1f} ms (target p99 <= 50 ms)")
            # run_split gives the stages a fixed environment: the lateness is the settings' default
            hop_latencies(f"chdb://{workdir}/wh", "latency", Settings.model_fields["lateness_ms"].default * 1_000_000)
        else:
            print("tick->order: no orders in the paced run (raise --duration past the 35 s feature warm-up)")
    finally:
        if broker is not None:
            broker.stop()
        if args.keep:
            print(f"kept                  {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
