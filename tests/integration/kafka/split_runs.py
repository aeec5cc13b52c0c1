"""Driving the split topology in tests: publish a tape to md.raw, run stages against a broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from feeds import make_feed
from trading.desk import DeskConfig
from topics.kafka_records import KafkaEndpoint
from market.normalize import NormalizeConfig
from flows.pipeline import TradingConfig, feed_universe, run_flow
from flows.split import SplitConfig, build_stage_flow
from sinks.writer import BatchingWriter
from tapeflow.broker import die_with_parent
from tests.integration.embedded_runs import table_content
from topics.admin import partition_watermarks
from topics.serde import encode

UPSTREAM = ("normalize", "bars", "features", "signals")
MARKET = ("md_trades", "md_quotes", "md_bars", "features", "signals")
MONEY = ("orders_intent", "orders_approved", "orders_rejected", "exec_reports", "positions", "pnl")


def tape(ticks: int = 30_000):
    return make_feed("synthetic", seed=5, ticks_per_second=400, max_ticks=ticks)


def assert_same_tables(wh, run_a: str, run_b: str, tables) -> None:
    for table in tables:
        a, b = table_content(wh, table, run_a), table_content(wh, table, run_b)
        assert a == b, f"{table}: {len(a)} rows in {run_a}, {len(b)} in {run_b}"
        if table != "orders_rejected":
            assert a, f"{table} is empty: the comparison would prove nothing"


def publish_tape(bootstrap: str, prefix: str, feed) -> int:
    return publish_ticks(bootstrap, prefix, feed.ticks())


def publish_ticks(bootstrap: str, prefix: str, ticks) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "compression.type": "lz4"})
    count = 0
    for tick in ticks:
        message = encode("md.raw", tick)
        producer.produce(prefix + "md.raw", message.value, message.key, headers=list(message.headers))
        count += 1
        if count % 5_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0, "md.raw messages not delivered"
    return count


def split_config(bootstrap: str, prefix: str, feed) -> SplitConfig:
    """What ``tapeflow flow STAGE --until-end --symbols ...`` configures: replay complete topics."""
    from flows.pipeline import feed_calendar
    from venues.sim_config import SimVenueConfig

    universe = feed_universe(feed)
    # the feed's calendar, as `tapeflow run --brokers` hands it to the stages (a crypto file: 24/7)
    desk = DeskConfig(universe=universe, silent_after_ns=10**18, venue=SimVenueConfig(calendar=feed_calendar(feed)))
    trading = TradingConfig(desk=desk, universe=universe, max_wait_bars=10**9)
    return SplitConfig(endpoint=KafkaEndpoint((bootstrap,), prefix, tail=False), normalize=NormalizeConfig(),
                       trading=trading)


def run_stages(cfg: SplitConfig, stages, workers: int = 1) -> None:
    for stage in stages:
        run_flow(build_stage_flow(stage, cfg), 0.5, workers=workers)


def sink_to(wh, cfg: SplitConfig, run_id: str) -> None:
    writer = BatchingWriter(wh, run_id)
    run_flow(build_stage_flow("sink", cfg, writer), 0.5)
    writer.flush()


SEPARATE_TRADING = ("risk", "execution", "pnl")


def stage_command(bootstrap: str, prefix: str, stage: str, recovery: Path, symbols) -> list[str]:
    """``tapeflow flow STAGE`` reading live (the separate trading stages feed each other), with no
    symbol ever "silent": complete topics are drained at different paces per partition."""
    from tapeflow.cli_flows import STAGE_OPTIONS  # a stage refuses an option it does not use

    command = [sys.executable, "-m", "tapeflow.cli", "flow", stage, "--brokers", bootstrap, "--prefix", prefix,
               "--recovery-dir", str(recovery)]
    if stage in STAGE_OPTIONS["symbols"]:
        command += ["--symbols", ",".join(symbols)]
    if stage in STAGE_OPTIONS["silent_after_s"]:
        command += ["--silent-after-s", "1e9"]
    return command


# 24/7: the tapes these tests replay by hand are a Saturday's crypto file and synthetic sessions well
# inside NYSE hours (the same results under either calendar); `tapeflow run --brokers` would hand the
# stages the feed's calendar itself (SplitRun.stage_env)
STAGE_ENV = {**os.environ, "TAPEFLOW_EPOCH_INTERVAL_S": "0.2", "TAPEFLOW_CALENDAR": "24/7"}


def for_stage(stage: str, extra: tuple[str, ...]) -> list[str]:
    """``extra`` (``--option value`` pairs) without the options ``stage`` does not use: a stage
    refuses those (tapeflow/cli_flows.py STAGE_OPTIONS), and a test gives the same extras to several."""
    from tapeflow.cli_flows import STAGE_OPTIONS

    kept, args = [], list(extra)
    while args:
        option = args.pop(0)
        value = args.pop(0) if args and not args[0].startswith("--") else None
        users = STAGE_OPTIONS.get(option.lstrip("-").replace("-", "_"))
        if users is None or stage in users:
            kept += [option] + ([value] if value is not None else [])
    return kept


def start_stage(bootstrap: str, prefix: str, stage: str, root: Path, symbols, extra: tuple[str, ...] = ()
                ) -> subprocess.Popen:
    log = open(root / f"{stage}.log", "ab")
    return subprocess.Popen(stage_command(bootstrap, prefix, stage, root / stage, symbols) + for_stage(stage, extra),
                            env=STAGE_ENV,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=die_with_parent)  # no stage outlives a killed test run


def wait_caught_up(bootstrap: str, root: Path, processes: dict[str, subprocess.Popen], timeout_s: float = 300) -> None:
    """Until every stage has read every message of its topics and stayed so for two seconds."""
    from topics.lag import recovery_offsets, stage_lag

    deadline, since = time.monotonic() + timeout_s, None
    while True:
        for stage, process in processes.items():
            assert process.poll() is None, f"{stage} ended: {(root / f'{stage}.log').read_text()[-3000:]}"
        dirs = {stage: root / stage for stage in processes}
        ready = all(d.exists() and recovery_offsets(d) for d in dirs.values())  # each has snapshotted once
        lag = sum(r.lag for r in stage_lag(bootstrap, dirs)) if ready else 1
        since = (since or time.monotonic()) if lag == 0 else None
        if since is not None and time.monotonic() - since >= 2.0:
            return
        assert time.monotonic() < deadline, f"not caught up after {timeout_s} s (lag {lag}); logs in {root}"
        time.sleep(0.25)


def stop_stages(processes: dict[str, subprocess.Popen]) -> None:
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes.values():
        process.wait(30)


def execution_watermark(bootstrap: str, topic: str) -> int:
    """The newest watermark the execution stage has put on ``exec.reports``."""
    from topics.serde import WATERMARK_SCHEMA, schema_header

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermark-probe", "enable.auto.commit": False})
    try:
        ends = {p: high for p, (_, high) in partition_watermarks(consumer, topic).items()}
        partitions = list(ends)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions if ends[p] > 0])
        newest, remaining = -1, sum(ends.values())
        while remaining > 0:
            message = consumer.poll(10)
            assert message is not None and not message.error(), "could not read exec.reports to its end"
            remaining -= 1
            if schema_header(message.headers()) == WATERMARK_SCHEMA:
                newest = max(newest, orjson.loads(message.value())["ts_event"])
        return newest
    finally:
        consumer.close()


def assert_no_duplicate_ids(wh, run_id: str) -> None:
    """No fill booked twice, no order sent twice, after whatever crashed and was redelivered."""
    for table, key in (("fills", "fill_id"), ("orders_intent", "client_order_id")):
        rows, unique = wh.query(
            f"SELECT count(), uniqExact({key}) FROM {table} {'FINAL' if table != 'fills' else ''} "
            "WHERE run_id = {r:String}", {"r": run_id}).rows[0]
        assert rows == unique > 0, table
