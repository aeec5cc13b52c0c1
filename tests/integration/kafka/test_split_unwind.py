"""Stop and unwind a split run (`tapeflow run --brokers`): kill switch and flatten produced to the
run's control topic reach the trading stage (or the separate risk stage, whose orders the
execution stage fills), and every position ends flat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer

from config.control_channel import make_command
from schemas import ControlKind
from tests.kafka_fixtures import topic_message_count
from topics.serde import encode

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def positions_published(bootstrap: str, topic: str) -> int:
    try:
        return topic_message_count(bootstrap, topic)
    except KafkaException:  # a fresh topic's leader still being elected: ask again
        return 0


def produce_control(bootstrap: str, prefix: str, *commands) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for command in commands:
        message = encode("control", command)
        producer.produce(prefix + "control", message.value, message.key, headers=list(message.headers))
    assert producer.flush(30) == 0, "control commands not delivered"


@pytest.mark.parametrize("trading", [[], ["--separate-trading"]], ids=["trading-stage", "risk-execution-pnl"])
def test_split_run_when_killed_and_flattened_through_the_control_topic_then_every_position_ends_flat(
        kafka_topics, tmp_path, trading):
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    env = {**os.environ, "TAPEFLOW_WAREHOUSE": f"chdb://{tmp_path}/wh", "TAPEFLOW_EPOCH_INTERVAL_S": "0.5",
           "PYTHONPATH": str(REPO)}
    # 200 ticks/s of event time at 5x: ~7 s of warm-up, then ~30 s of trading on the wall clock
    running = subprocess.Popen(
        [sys.executable, "-m", "tapeflow.cli", "run", "--brokers", bootstrap, "--prefix", prefix, "--rate", "200",
         "--speed", "5", "--max-ticks", "40000", "--run-id", "split-flat", "--progress-interval", "2", *trading],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while positions_published(bootstrap, prefix + "positions") < 10:
            assert running.poll() is None and time.monotonic() < deadline, "no positions before the run ended"
            time.sleep(0.2)
        produce_control(bootstrap, prefix, make_command(ControlKind.KILL_SWITCH, value=1.0, issued_by="ops"),
                        make_command(ControlKind.FLATTEN, issued_by="ops"))
        stdout, stderr = running.communicate(timeout=600)
    finally:
        running.kill()
    assert running.returncode == 0, stderr[-3000:]

    def query(sql: str) -> list[dict]:
        done = subprocess.run([sys.executable, "-m", "tapeflow.cli", "query", sql, "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    closes = query("SELECT count() AS n FROM orders_approved FINAL WHERE run_id = 'split-flat' AND action = 'new' "
                   "AND position(client_order_id, '-u') > 0")
    assert closes[0]["n"] > 0, stderr[-3000:]
    positions = query("SELECT strategy, symbol, argMax(quantity, (ts_event, id)) AS qty FROM positions FINAL "
                      "WHERE run_id = 'split-flat' GROUP BY strategy, symbol")
    assert positions and all(p["qty"] == 0.0 for p in positions), positions
    # the operator's commands page once each; a stage_lag alert may come too on a loaded machine
    alerts = query("SELECT name FROM control WHERE run_id = 'split-flat' AND kind = 'alert' AND name != 'stage_lag' "
                   "ORDER BY name")
    assert [a["name"] for a in alerts] == ["flatten", "flatten_closing", "kill_switch"]
    assert "dead letters" not in stdout  # no order came later than the execution stage's watermark
