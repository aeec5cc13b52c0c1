"""A finite tape over Kafka ends like the embedded run of it (topics/end_of_tape.py): the feed marks
md.raw, every stage flushes at its markers and passes them on, the sink ends once it has them all."""

from __future__ import annotations

import pytest

from feeds import make_feed
from flows.pipeline import run_flow
from flows.split import build_stage_flow, tape_ends
from sinks.writer import BatchingWriter
from tests.integration.embedded_runs import WALL_CLOCK_COLUMNS, run_embedded
from tests.integration.kafka.split_runs import MONEY, start_stage, stop_stages
from tests.real_data import REAL_DATA
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
