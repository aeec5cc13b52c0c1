"""A broker restart in the middle of a run: every stage waits for the broker and the run ends with
the same results as an uninterrupted one.

The test runs a broker of its own (the session's serves other tests) and the stages as live
``tapeflow flow STAGE`` processes, all at once, while it publishes the tape to md.raw. Once the
trading process has sent orders, it stops the broker (a controlled shutdown) with part of the tape
still unpublished, keeps publishing into the producer's queue, and starts the broker again on the
same data folder and port a few seconds later. When every stage has caught up it stops them; a
``--until-end`` pass over the same recovery directories then closes what a live stage keeps open (the
last bars, the desk's held events), exactly as after any live run. The warehouse must then hold what
the uninterrupted embedded run holds (the split pipeline's parity with it is tested on its own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from trading.desk import DeskConfig
from flows.pipeline import TradingConfig, feed_universe
from tapeflow.broker import LocalBroker
from config.control_channel import ControlChannel
from tests.integration.embedded_runs import run_embedded
from tests.integration.kafka.split_runs import (
    MARKET,
    MONEY,
    assert_same_tables,
    tape,
    assert_no_duplicate_ids,
    STAGE_ENV,
    sink_to,
    split_config,
    stage_command,
    start_stage,
    stop_stages,
    wait_caught_up,
)
from tests.kafka_fixtures import _no_kafka, local_broker_possible, topic_message_count
from topics.admin import create_topics
from topics.serde import encode

pytestmark = pytest.mark.integration

TICKS = 60_000
BEFORE_OUTAGE = 36_000  # ticks on the broker when it stops: past the features' warm-up, so orders flow
DURING_OUTAGE = 8_000  # ticks the feed hands its producer while the broker is down
OUTAGE_S = 5.0
STAGES = ("normalize", "bars", "features", "signals", "trading")
OUTPUTS = ("md.trades", "md.bars", "features", "signals", "orders.intent", "exec.reports")  # one or two a stage
PREFIX = "restart."
SYMBOLS = tuple(f"SYN{i}" for i in range(8))


@pytest.fixture
def own_broker(tmp_path) -> LocalBroker:
    possible, why_not = local_broker_possible()
    if not possible:
        _no_kafka(f"a broker restart needs a broker of the test's own: {why_not}")
    broker = LocalBroker(tmp_path / "kafka", tied_to_parent=True,
                         say=lambda message: print(f"[restart broker] {message}", file=sys.stderr, flush=True))
    broker.start(timeout_s=90)
    try:
        yield broker
    finally:
        broker.stop()


def test_tied_broker_when_restarted_from_a_thread_that_ends_then_it_keeps_running(own_broker):
    # PR_SET_PDEATHSIG follows the thread that forked the broker: restarted from a helper thread (as a
    # test bouncing it beside a running dataflow would), it used to get SIGTERM when that thread ended
    own_broker.stop()
    restarter = threading.Thread(target=own_broker.start, kwargs={"timeout_s": 90})
    restarter.start()
    restarter.join()
    pid = own_broker.status(check_ready=False).pid
    time.sleep(3)  # a SIGTERM'd broker is gone well within this (a controlled shutdown takes ~1 s)
    status = own_broker.status()
    assert status.running and status.ready and status.pid == pid, own_broker.log_tail()


@pytest.fixture
def stages(tmp_path) -> dict[str, subprocess.Popen]:
    """The live stage processes by name; a failed test leaves none behind (one waiting on a broker
    that is gone may not answer SIGTERM)."""
    processes: dict[str, subprocess.Popen] = {}
    try:
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def logs(root: Path, stages) -> str:
    return "\n".join(f"--- {s}\n" + (root / f"{s}.log").read_text(errors="replace")[-2_000:] for s in stages)


def publish(producer: Producer, ticks, failures: list) -> int:
    report = lambda err, msg: failures.append(err) if err else None  # noqa: E731
    count = 0
    for tick in ticks:
        message = encode("md.raw", tick)
        producer.produce(PREFIX + "md.raw", message.value, message.key, headers=list(message.headers),
                         on_delivery=report)
        count += 1
        if count % 2_000 == 0:
            producer.poll(0)
            time.sleep(0.05)  # a paced feed: the stages read live, not a finished topic
    return count


def test_broker_when_restarted_mid_run_then_stages_resume_and_results_equal_the_uninterrupted_run(
        own_broker, stages, module_warehouse, tmp_path):
    fused_run = "fused-restart"  # the uninterrupted run, configured as the parity test's
    universe = feed_universe(tape(TICKS))
    run_embedded(module_warehouse, tape(TICKS), fused_run,
                 trading=TradingConfig(desk=DeskConfig(universe=universe), universe=universe),
                 control=ControlChannel(tmp_path / "control.jsonl"))

    bootstrap = own_broker.bootstrap
    create_topics(bootstrap, prefix=PREFIX)
    stages.update({stage: start_stage(bootstrap, PREFIX, stage, tmp_path, SYMBOLS) for stage in STAGES})
    ticks = list(tape(TICKS).ticks())
    failures: list = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "compression.type": "lz4", "reconnect.backoff.max.ms": 1000})
    publish(producer, ticks[:BEFORE_OUTAGE], failures)
    assert producer.flush(30) == 0 and not failures, failures

    deadline = time.monotonic() + 120  # mid-run: orders flow, part of the tape is not even published
    while topic_message_count(bootstrap, PREFIX + "orders.intent") == 0:
        assert all(p.poll() is None for p in stages.values()), logs(tmp_path, STAGES)
        assert time.monotonic() < deadline, "no orders within 120 s\n" + logs(tmp_path, STAGES)
        time.sleep(0.2)
    before = {topic: topic_message_count(bootstrap, PREFIX + topic) for topic in OUTPUTS}
    own_broker.stop()
    down = time.monotonic()
    publish(producer, ticks[BEFORE_OUTAGE:BEFORE_OUTAGE + DURING_OUTAGE], failures)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
    gave_up = [stage for stage, p in stages.items() if p.poll() is not None]
    assert not gave_up, "a stage ended while the broker was away\n" + logs(tmp_path, gave_up)
    assert own_broker.start(timeout_s=90).bootstrap == bootstrap  # same data folder, same port
    publish(producer, ticks[BEFORE_OUTAGE + DURING_OUTAGE:], failures)
    assert producer.flush(60) == 0 and not failures, failures
    assert topic_message_count(bootstrap, PREFIX + "md.raw") == TICKS  # nothing lost, nothing twice

    wait_caught_up(bootstrap, tmp_path, stages, timeout_s=120)
    after = {topic: topic_message_count(bootstrap, PREFIX + topic) for topic in OUTPUTS}
    assert all(after[t] > before[t] for t in OUTPUTS), f"a stage wrote nothing after the outage: {before} -> {after}"
    stop_stages(stages)
    assert {stage: p.returncode for stage, p in stages.items()} == dict.fromkeys(STAGES, 0)

    for stage in STAGES:  # close what live stages keep open: the last bars, the desk's held events
        drained = subprocess.run(stage_command(bootstrap, PREFIX, stage, tmp_path / stage, SYMBOLS) + ["--until-end"],
                                 env=STAGE_ENV, capture_output=True, text=True, timeout=120)
        assert drained.returncode == 0, drained.stderr[-3_000:]
    cfg = split_config(bootstrap, PREFIX, tape(TICKS))
    sink_to(module_warehouse, cfg, "restarted")

    assert_same_tables(module_warehouse, fused_run, "restarted", MARKET + MONEY)
    assert_no_duplicate_ids(module_warehouse, "restarted")
    # the outage is no data: no consumer error was dead-lettered as a record
    assert module_warehouse.query("SELECT count() FROM dlq WHERE run_id = 'restarted'").scalar() == 0
