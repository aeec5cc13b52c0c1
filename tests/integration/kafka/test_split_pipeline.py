"""The split topology over a real Kafka broker: each stage its own dataflow between topics."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Producer

from config.control_channel import ControlChannel
from topics.lag import SINK_GROUP_PREFIX, stage_lag
from tests.integration.embedded_runs import run_embedded, table_content
from tests.integration.kafka.split_runs import (
    MARKET,
    MONEY,
    assert_same_tables,
    tape,
    assert_no_duplicate_ids,
    SEPARATE_TRADING,
    UPSTREAM,
    execution_watermark,
    STAGE_ENV,
    publish_tape,
    publish_ticks,
    run_stages,
    sink_to,
    split_config,
    stage_command,
    start_stage,
    stop_stages,
    wait_caught_up,
)
from tests.kafka_fixtures import topic_message_count

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def fused(module_warehouse, tmp_path_factory):
    """The embedded fused run every split run must match, per tape length."""
    runs = {}

    def run(ticks: int) -> str:
        if ticks not in runs:
            control = ControlChannel(tmp_path_factory.mktemp("control") / "c.jsonl")
            feed = tape(ticks)
            from flows.pipeline import TradingConfig, feed_universe

            from trading.desk import DeskConfig

            universe = feed_universe(feed)
            trading = TradingConfig(desk=DeskConfig(universe=universe), universe=universe)
            run_embedded(module_warehouse, feed, f"fused-{ticks}", trading=trading, control=control)
            runs[ticks] = f"fused-{ticks}"
        return runs[ticks]

    return run


def test_split_pipeline_when_replayed_over_kafka_then_same_records_as_the_embedded_run(
        kafka_topics, module_warehouse, fused):
    cfg = split_config(kafka_topics.bootstrap, kafka_topics.prefix, tape())
    assert publish_tape(kafka_topics.bootstrap, kafka_topics.prefix, tape()) == 30_000
    run_stages(cfg, UPSTREAM + ("trading",))
    sink_to(module_warehouse, cfg, "split")
    assert_same_tables(module_warehouse, fused(30_000), "split", MARKET + MONEY)


def test_split_pipeline_when_market_stages_chained_then_same_records_as_the_embedded_run(
        kafka_topics, module_warehouse, fused):
    cfg = split_config(kafka_topics.bootstrap, kafka_topics.prefix, tape())
    publish_tape(kafka_topics.bootstrap, kafka_topics.prefix, tape())
    run_stages(cfg, ("market", "signals", "trading"))
    sink_to(module_warehouse, cfg, "split-chained")
    assert_same_tables(module_warehouse, fused(30_000), "split-chained", MARKET + MONEY)
    bars_in_kafka = topic_message_count(kafka_topics.bootstrap, kafka_topics.prefix + "md.bars")
    assert bars_in_kafka == module_warehouse.query(
        "SELECT count() FROM md_bars WHERE run_id = 'split-chained'").scalar(), "a chained stage still produces every topic"


def test_split_stages_when_run_with_2_workers_over_4_partitions_then_same_results_as_1_worker(
        kafka_topics, module_warehouse, fused):
    cfg = split_config(kafka_topics.bootstrap, kafka_topics.prefix, tape())
    publish_tape(kafka_topics.bootstrap, kafka_topics.prefix, tape())
    run_stages(cfg, UPSTREAM + ("trading",), workers=2)
    sink_to(module_warehouse, cfg, "split-2w")
    assert_same_tables(module_warehouse, fused(30_000), "split-2w", MARKET + MONEY)


def test_md_raw_when_malformed_bytes_published_then_dead_lettered_with_reasons_and_the_rest_flows(
        kafka_topics, module_warehouse):
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    cfg = split_config(bootstrap, prefix, tape(2_000))
    publish_tape(bootstrap, prefix, tape(2_000))
    failures = []
    # compressed, so the broker takes it; tapeflow judges the decompressed value
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": "lz4", "message.max.bytes": 4_000_000})
    report = lambda err, msg: failures.append(err) if err else None  # noqa: E731
    producer.produce(prefix + "md.raw", b"\x00\xffnot json at all", b"SYN0", on_delivery=report)
    producer.produce(prefix + "md.raw", b'{"schema_version": 1, "id": "x", "symbol": 7}', b"SYN1", on_delivery=report)
    producer.produce(prefix + "md.raw", b'{"pad": "' + b"x" * 2_000_000 + b'"}', b"SYN2", on_delivery=report)
    assert producer.flush(30) == 0 and not failures, failures
    run_stages(cfg, ("normalize",))
    sink_to(module_warehouse, cfg, "malformed")
    reasons = dict(module_warehouse.query(
        "SELECT reason, count() FROM dlq WHERE run_id = 'malformed' AND stage = 'normalize' GROUP BY reason").rows)
    assert reasons == {"not_json": 1, "wrong_schema": 1, "oversized": 1}
    trades_quotes = module_warehouse.query(
        "SELECT (SELECT count() FROM md_trades WHERE run_id = 'malformed') + "
        "(SELECT count() FROM md_quotes WHERE run_id = 'malformed')").scalar()
    assert trades_quotes == 2_000


CRASH_TICKS = 80_000  # the crash tests' tape, published in two parts
BEFORE_CRASH = 48_000  # ticks published when a trading process is killed: past the warm-up, so it trades


def test_trading_process_when_killed_mid_replay_and_restarted_then_same_fills_and_pnl_no_duplicates(
        kafka_topics, module_warehouse, fused, tmp_path):
    # The stages read live while the tape is published in two parts, and the trading process is
    # killed once it trades, with the second part not yet published: mid-replay whatever its speed
    # (over a complete tape it went from its first report to the end in a quarter of a second).
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    symbols = tuple(f"SYN{i}" for i in range(8))
    ticks = list(tape(CRASH_TICKS).ticks())
    stages = {stage: start_stage(bootstrap, prefix, stage, tmp_path, symbols) for stage in (*UPSTREAM, "trading")}
    try:
        publish_ticks(bootstrap, prefix, ticks[:BEFORE_CRASH])
        deadline = time.monotonic() + 120
        while topic_message_count(bootstrap, prefix + "exec.reports") < 20:
            assert stages["trading"].poll() is None, (tmp_path / "trading.log").read_text()[-3_000:]
            assert time.monotonic() < deadline, "the trading process produced no execution reports within 120 s"
            time.sleep(0.2)
        os.killpg(stages["trading"].pid, signal.SIGKILL)  # no flush, no goodbye
        stages["trading"].wait(30)
        killed_at = topic_message_count(bootstrap, prefix + "exec.reports")
        publish_ticks(bootstrap, prefix, ticks[BEFORE_CRASH:])
        stages["trading"] = start_stage(bootstrap, prefix, "trading", tmp_path, symbols)
        wait_caught_up(bootstrap, tmp_path, stages)
    finally:
        stop_stages(stages)
    for stage in stages:  # close what live stages keep open: the last bars, the desk's held events
        drained = subprocess.run(stage_command(bootstrap, prefix, stage, tmp_path / stage, symbols) + ["--until-end"],
                                 env=STAGE_ENV, capture_output=True, text=True, timeout=300)
        assert drained.returncode == 0, drained.stderr[-3_000:]
    assert sum(r.lag for r in stage_lag(bootstrap, {"trading": tmp_path / "trading"})) == 0
    from dashboards.lag import consumer_lag  # the dashboard's System page reads the same stores

    # a group per stage, named by its recovery folder (beside any group sink on the broker: other tests')
    rows = [r for r in consumer_lag(bootstrap, root=tmp_path) if not r["group"].startswith(SINK_GROUP_PREFIX)]
    assert {r["topic"] for r in rows} >= {prefix + "signals", prefix + "md.trades"}
    assert {r["group"] for r in rows} == set(stages) and all(r["lag"] == 0 for r in rows)
    assert topic_message_count(bootstrap, prefix + "exec.reports") > killed_at  # the restart did the rest
    sink_to(module_warehouse, split_config(bootstrap, prefix, tape(CRASH_TICKS)), "crashed")
    assert_same_tables(module_warehouse, fused(CRASH_TICKS), "crashed", MONEY)
    assert_no_duplicate_ids(module_warehouse, "crashed")


@pytest.mark.parametrize("trading", [[], ["--separate-trading"], ["--chain", "none"]],
                         ids=["fused", "separate", "unchained"])
def test_run_with_brokers_when_synthetic_then_every_stage_process_runs_and_the_summary_reads_the_warehouse(
        kafka_topics, tmp_path, trading):
    env = {**os.environ, "TAPEFLOW_WAREHOUSE": f"chdb://{tmp_path}/wh", "TAPEFLOW_EPOCH_INTERVAL_S": "0.5"}
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "run", "--brokers", kafka_topics.bootstrap,
         "--prefix", kafka_topics.prefix, "--rate", "200", "--speed", "50", "--max-ticks", "60000",
         "--run-id", "split-cli", "--progress-interval", "2", "--no-dashboard", *trading],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    unchained = "none" in trading
    assert f"stages started: {'normalize' if unchained else 'market'}" in done.stderr and "| lag " in done.stderr
    started = re.search(r"stages started: (.*?); logs", done.stderr).group(1)
    assert ("bars (pid" in started and "features (pid" in started) == unchained, started
    separate = "--separate-trading" in trading
    assert ("risk (pid" in started and "pnl (pid" in started) == separate, started
    assert ("trading (pid" in started) != separate, started
    assert "feed done: sent 60,000 delivered 60,000 failed 0" in done.stderr
    assert re.search(r"md_raw\s+60000", done.stdout), done.stdout
    orders = int(re.search(r"orders ([\d,]+) \(approved", done.stdout).group(1).replace(",", ""))
    assert orders > 0
    assert "dead letters" not in done.stdout  # nothing late, nothing malformed



def assert_same_before(wh, fused_run: str, run_id: str, cutoff_ns: int) -> None:
    """The separate stages never flush the tail of the tape (their watermarks stop short of it), so
    the comparison stops at the execution stage's last watermark: no order of theirs is past it."""
    for table in MONEY:
        a, b = table_content(wh, table, fused_run, cutoff_ns), table_content(wh, table, run_id, cutoff_ns)
        assert a == b, f"{table}: {len(a)} rows in {fused_run}, {len(b)} in {run_id} before {cutoff_ns}"
        if table != "orders_rejected":
            assert a, f"{table} is empty: the comparison would prove nothing"
    assert len(table_content(wh, "orders_intent", run_id)) == len(table_content(wh, "orders_intent", run_id, cutoff_ns))


def test_separate_risk_execution_pnl_processes_when_replayed_then_same_orders_fills_positions_pnl_as_fused(
        kafka_topics, module_warehouse, fused, tmp_path):
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    cfg = split_config(bootstrap, prefix, tape())
    publish_tape(bootstrap, prefix, tape())
    run_stages(cfg, UPSTREAM)
    symbols = cfg.trading.desk.universe
    processes = {stage: start_stage(bootstrap, prefix, stage, tmp_path, symbols) for stage in SEPARATE_TRADING}
    try:
        wait_caught_up(bootstrap, tmp_path, processes)
    finally:
        stop_stages(processes)
    cutoff = execution_watermark(bootstrap, prefix + "exec.reports")
    sink_to(module_warehouse, cfg, "separate")
    assert cutoff > 0
    assert_same_before(module_warehouse, fused(30_000), "separate", cutoff)


def test_execution_and_pnl_processes_when_killed_mid_replay_and_restarted_then_same_fills_and_pnl_no_duplicates(
        kafka_topics, module_warehouse, fused, tmp_path):
    # As for the fused trading process: the stages read live while the tape is published in two parts,
    # and execution and pnl are killed once they report, with the second part not yet published. Over a
    # tape published whole in advance, a slow machine let execution report its last fill before the kill.
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    symbols = tuple(f"SYN{i}" for i in range(8))
    ticks = list(tape(CRASH_TICKS).ticks())
    stages = {stage: start_stage(bootstrap, prefix, stage, tmp_path, symbols) for stage in (*UPSTREAM, *SEPARATE_TRADING)}
    try:
        publish_ticks(bootstrap, prefix, ticks[:BEFORE_CRASH])
        deadline = time.monotonic() + 120
        while topic_message_count(bootstrap, prefix + "exec.reports") < 20 or topic_message_count(bootstrap, prefix + "pnl") < 20:
            for stage in SEPARATE_TRADING:
                assert stages[stage].poll() is None, (tmp_path / f"{stage}.log").read_text()[-3_000:]
            assert time.monotonic() < deadline, "execution and pnl produced no reports and P&L within 120 s"
            time.sleep(0.2)
        for stage in ("execution", "pnl"):
            os.killpg(stages[stage].pid, signal.SIGKILL)  # no flush, no goodbye
            stages[stage].wait(30)
        killed_at = topic_message_count(bootstrap, prefix + "exec.reports")
        publish_ticks(bootstrap, prefix, ticks[BEFORE_CRASH:])
        time.sleep(1.0)  # risk keeps going alone meanwhile, up to what execution had promised
        for stage in ("execution", "pnl"):
            stages[stage] = start_stage(bootstrap, prefix, stage, tmp_path, symbols)
        wait_caught_up(bootstrap, tmp_path, stages)
    finally:
        stop_stages(stages)
    assert topic_message_count(bootstrap, prefix + "exec.reports") > killed_at  # the restart did the rest
    cfg = split_config(bootstrap, prefix, tape(CRASH_TICKS))
    cutoff = execution_watermark(bootstrap, prefix + "exec.reports")
    sink_to(module_warehouse, cfg, "separate-crashed")
    assert_same_before(module_warehouse, fused(CRASH_TICKS), "separate-crashed", cutoff)
    assert_no_duplicate_ids(module_warehouse, "separate-crashed")
