"""A finite tape over Kafka ends like the embedded run of it (topics/end_of_tape.py): the feed marks
md.raw, every stage flushes at its markers and passes them on, the sink ends once it has them all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from feeds import make_feed
from flows.pipeline import run_flow
from flows.split import build_stage_flow, tape_ends
from sinks.writer import BatchingWriter
from tests.integration.embedded_runs import WALL_CLOCK_COLUMNS, run_embedded
from tests.integration.kafka.split_runs import MONEY, start_stage, stop_stages
from tests.real_data import REAL_DATA
from topics.lag import recovery_offsets
from topics.producer import TopicPublisher, publish_ticks

pytestmark = pytest.mark.integration

FUTURES = REAL_DATA / "binance-futures-btcusdt-trades-20200222.csv"
STAGES = ("market", "signals", "trading")


def futures_tape():
    return make_feed("replay", path=FUTURES)


def split_run_of(kafka_topics, wh, tmp_path, run_id: str) -> None:
    """What ``tapeflow run --brokers`` wires: the stage processes reading live, the feed published
    and marked ended, and the sink (here in this process, into the test's warehouse) run until it
    has every stage's end-of-tape markers."""
    import dataclasses

    from tests.integration.kafka.split_runs import split_config

    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    processes = {stage: start_stage(bootstrap, prefix, stage, tmp_path, ("BTCUSDT",), ("--market-streams", "trade"))
                 for stage in STAGES}
    try:
        publisher = TopicPublisher(bootstrap, prefix=prefix)
        stats = publish_ticks(futures_tape().ticks(), publisher)
        assert stats.delivered == stats.sent > 9_000
        assert publisher.end_tape(run_id, (*STAGES, "sink")) == 4  # md.raw's partitions
        cfg = dataclasses.replace(split_config(bootstrap, prefix, futures_tape()), tape=tape_ends("sink"))
        cfg = dataclasses.replace(cfg, endpoint=dataclasses.replace(cfg.endpoint, tail=True))
        writer = BatchingWriter(wh, run_id)
        run_flow(build_stage_flow("sink", cfg, writer), 0.2)  # returns once the run's tape is complete
        writer.flush()
        assert cfg.tape.complete
        for stage, process in processes.items():  # each ended by itself, at its markers
            assert process.wait(60) == 0, (tmp_path / f"{stage}.log").read_text()[-3_000:]
            assert "end of tape" in (tmp_path / f"{stage}.log").read_text()
    finally:
        stop_stages(processes)


def business_rows(wh, table: str, run_id: str) -> list[tuple]:
    """A run's rows without wall-clock columns (an embedded order's ``order_ts_ingest`` too),
    deduplicated, in id order."""
    columns = [c for c in wh.query(f"SELECT * FROM {table} LIMIT 0").column_names
               if c not in WALL_CLOCK_COLUMNS and not c.endswith(("_ts_ingest", "_ts_tick_ingest"))]
    final = "FINAL" if "Replacing" in wh.tables()[table] else ""
    return list(wh.query(f"SELECT {', '.join(columns)} FROM {table} {final} WHERE run_id = {{r:String}} ORDER BY id",
                         {"r": run_id}).rows)


def test_run_with_brokers_when_binance_futures_file_replayed_then_every_table_equals_the_embedded_run(
        kafka_topics, module_warehouse, tmp_path):
    split_run_of(kafka_topics, module_warehouse, tmp_path, "split-futures")
    run_embedded(module_warehouse, futures_tape(), "embedded-futures", trading=True)
    bars = dict(module_warehouse.query(
        "SELECT interval, count() FROM md_bars FINAL WHERE run_id = 'split-futures' GROUP BY interval").rows)
    assert bars == {"1s": 2_959, "1m": 126}  # the last bar of each interval included
    tables = ("md_trades", "md_bars", "features", "signals", *MONEY)
    if "fills" in module_warehouse.tables():
        tables += ("fills",)
    for table in tables:
        embedded, split = (business_rows(module_warehouse, table, run) for run in ("embedded-futures", "split-futures"))
        assert split == embedded, f"{table}: {len(split)} rows split, {len(embedded)} embedded"
        if table != "orders_rejected":
            assert embedded, f"{table} is empty: the comparison would prove nothing"


# --- each stage: markers on all partitions of its inputs but one do not end it; the last one does


def read_topic(bootstrap: str, topic: str) -> tuple[dict[int, int], list]:
    """Records per partition and the end-of-tape markers of ``topic``, read to its end now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from topics.admin import partition_watermarks
    from topics.end_of_tape import read_marker

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "eot-probe", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 20})
    try:
        ends = {p: high for p, (_, high) in partition_watermarks(consumer, topic).items()}
        partitions = list(ends)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions if ends[p] > 0])
        records, markers, remaining = dict.fromkeys(partitions, 0), [], sum(ends.values())
        while remaining > 0:
            message = consumer.poll(10)
            assert message is not None and not message.error(), f"could not read {topic} to its end"
            remaining -= 1
            marker = read_marker(topic, message.headers(), message.value(), message.offset())
            if marker is None:
                records[message.partition()] += 1
            else:
                markers.append(marker)
        return records, markers
    finally:
        consumer.close()


def mark(bootstrap: str, prefix: str, topic: str, partitions, upstream: str = "upstream") -> None:
    """End-of-tape markers on ``partitions`` of ``topic``, as its upstream stage writes them."""
    from confluent_kafka import Producer

    from topics.end_of_tape import END_OF_TAPE_KEY, EndOfTape

    producer = Producer({"bootstrap.servers": bootstrap})
    count = len(read_topic(bootstrap, prefix + topic)[0])
    for p in partitions:
        marker = EndOfTape("stage-test", upstream, topic, p, count, (topic,), (*STAGES, "sink"))
        producer.produce(prefix + topic, marker.value(), END_OF_TAPE_KEY, partition=p, headers=marker.headers())
    assert producer.flush(30) == 0


# stage -> (its upstream stages, run to the end beforehand; its tape inputs; the output whose
# records the end-of-tape flush adds to, and how many it adds on this tape: 0 for a stage with
# nothing to flush)
STAGE_CASES = {
    "market": ((), ("md.raw",), "md.bars", 2),  # the last 1s and 1m bars
    "normalize": ((), ("md.raw",), "md.trades", 0),
    "bars": (("normalize",), ("md.trades",), "md.bars", 2),
    "features": (("normalize", "bars"), ("md.bars",), "features", 0),
    "signals": (("normalize", "bars", "features"), ("features",), "signals", 0),
    # the desk holds the last cross-section's order until the tape's end
    "trading": (("normalize", "bars", "features", "signals"), ("md.trades", "md.quotes", "signals"),
                "orders.intent", 1),
}


@pytest.mark.parametrize("stage,restart,workers",
                         [(stage, False, 1) for stage in STAGE_CASES] + [("market", True, 1), ("trading", False, 2)],
                         ids=[*STAGE_CASES, "market-killed-after-some-markers", "trading-2-workers"])
def test_stage_when_all_input_partitions_but_one_marked_then_no_flush_and_the_last_marker_flushes_and_passes_on(
        kafka_topics, tmp_path, stage, restart, workers):
    """``restart``: the stage is killed (SIGKILL) once it has read the first markers, and
    restarted: its recovery snapshot still knows them, so the last marker still ends it.
    ``workers``: the partitions (and control) spread over worker threads, which end together."""
    from flows.split import MARKS
    from tests.integration.kafka.split_runs import run_stages, split_config
    from topics.lag import stage_lag

    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    upstream, inputs, flushed_topic, flushed = STAGE_CASES[stage]
    publish_ticks(futures_tape().ticks(), TopicPublisher(bootstrap, prefix=prefix))
    run_stages(split_config(bootstrap, prefix, futures_tape()), upstream)  # complete topics, no markers
    held_back = []  # (topic, partition) of the last marker: the partition holding the tape
    for topic in inputs:
        records, _ = read_topic(bootstrap, prefix + topic)
        marked = [p for p, n in records.items() if n == 0]
        if not held_back and len(marked) < len(records):
            held_back = [(topic, p) for p, n in records.items() if n][:1]
        mark(bootstrap, prefix, topic, [p for p in records if (topic, p) not in held_back])
    extra = ("--market-streams", "trade", "--workers", str(workers))
    process = start_stage(bootstrap, prefix, stage, tmp_path, ("BTCUSDT",), extra)
    try:
        deadline = time.monotonic() + 120
        while not (recovery_offsets(tmp_path / stage) and sum(r.lag for r in stage_lag(
                bootstrap, {stage: tmp_path / stage})) == 0):  # read every message, markers included
            assert process.poll() is None, (tmp_path / f"{stage}.log").read_text()[-3_000:]
            assert time.monotonic() < deadline, "the stage did not read its inputs within 120 s"
            time.sleep(0.2)
        before = {topic: read_topic(bootstrap, prefix + topic) for topic in MARKS[stage]}
        assert not any(markers for _, markers in before.values()), "marked its outputs before its tape ended"
        assert process.poll() is None, "ended before its tape did"
        if restart:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
            process = start_stage(bootstrap, prefix, stage, tmp_path, ("BTCUSDT",), extra)

        mark(bootstrap, prefix, *held_back[0][:1], [held_back[0][1]])
        assert process.wait(120) == 0, (tmp_path / f"{stage}.log").read_text()[-3_000:]
    finally:
        stop_stages({stage: process})
    for topic in MARKS[stage]:
        records, markers = read_topic(bootstrap, prefix + topic)
        assert sorted(m.partition for m in markers) == sorted(records), f"{topic}: one marker per partition"
        assert {(m.stage, m.tape) for m in markers} == {(stage, "stage-test")}
    added = sum(read_topic(bootstrap, prefix + flushed_topic)[0].values()) - sum(before[flushed_topic][0].values())
    assert added == flushed, f"{flushed_topic}: {added} records at the end of the tape, not {flushed}"


def test_tapeflow_run_with_brokers_when_the_file_ends_then_the_run_ends_at_the_landed_end_of_tape_with_the_last_bars(
        kafka_topics, tmp_path):
    from tests.real_data import REPO

    env = {**os.environ, "TAPEFLOW_WAREHOUSE": f"chdb://{tmp_path}/wh", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "run", "--brokers", kafka_topics.bootstrap, "--prefix",
         kafka_topics.prefix, "--feed", "replay", "--path", str(FUTURES), "--run-id", "cli-futures",
         "--no-dashboard", "--progress-interval", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3_000:]
    assert "end of tape landed" in done.stderr, done.stderr[-3_000:]
    assert re.search(r"md_bars\s+3085\b", done.stdout), done.stdout  # 2,959 1s + 126 1m: the last ones too
    logs = tmp_path / "data" / "logs" / "cli-futures"
    for stage in ("market", "signals", "trading"):
        assert "end of tape cli-futures: flushed" in (logs / f"{stage}.log").read_text()
