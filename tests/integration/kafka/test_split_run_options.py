"""``tapeflow run --brokers`` against the real broker: options that shape the split run, and recovery
state that belongs to one run on one cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from sinks.warehouse import Warehouse
from tests.alpaca_fake.fixtures import fake_alpaca  # noqa: F401
from tests.kafka_fixtures import topic_message_count
from topics.admin import create_topics, delete_topics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
TICKS = 20_000


def tapeflow(args, cwd: Path, timeout: float = 600, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tapeflow.cli", *args], cwd=cwd, env=stage_env(cwd, **env),
                          capture_output=True, text=True, timeout=timeout)


def stage_env(cwd: Path, **env) -> dict:
    # the worktree's packages, not an installed copy, in the run and in every stage it starts
    return {**os.environ, "PYTHONPATH": str(ROOT), "TAPEFLOW_WAREHOUSE": f"chdb://{cwd}/wh",
            "TAPEFLOW_EPOCH_INTERVAL_S": "0.5", **env}


def split_run(kafka_topics, run_id: str, *options: str) -> list[str]:
    return ["run", "--brokers", kafka_topics.bootstrap, "--prefix", kafka_topics.prefix, "--rate", "200",
            "--speed", "50", "--max-ticks", str(TICKS), "--run-id", run_id, "--progress-interval", "2", *options]


def count(wh: Warehouse, table: str, run_id: str, where: str = "") -> int:
    return wh.query(f"SELECT count() FROM {table} WHERE run_id = {{r:String}} {where}", {"r": run_id}).scalar()


def test_two_split_runs_in_a_row_from_one_folder_when_run_ids_differ_then_each_lands_its_whole_tape(
        kafka_topics, tmp_path):
    first = tapeflow(split_run(kafka_topics, "first", "--dashboard-port", "0"), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = tapeflow(split_run(kafka_topics, "second", "--no-dashboard"), tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    wh = Warehouse.connect(f"chdb://{tmp_path}/wh")
    for run_id in ("first", "second"):
        assert count(wh, "md_raw", run_id) == TICKS, run_id  # its own tape: not the other run's, not nothing
        assert count(wh, "orders_intent", run_id) > 0, run_id
        assert count(wh, "dlq", run_id) == 0, run_id  # the second run's ticks were not late to the first's state
    assert count(wh, "md_trades", "first") == count(wh, "md_trades", "second")
    runs = tmp_path / "data" / "recovery" / kafka_topics.prefix
    assert {d.name for d in (runs / "first").iterdir() if d.is_dir()} == {"market", "signals", "trading", "sink"}
    assert "dashboard at http://127.0.0.1:" in (tmp_path / "data" / "logs" / "first" / "sink.log").read_text()
    assert "recovery folder of run second" in second.stderr

    lag = tapeflow(["lag", "--brokers", kafka_topics.bootstrap], tmp_path, timeout=120)
    assert lag.returncode == 0, lag.stderr
    assert f"stages of {Path('data/recovery') / kafka_topics.prefix / 'second'}" in lag.stderr  # the latest run
    assert re.search(r"total lag: market 0, signals 0, sink 0, trading 0", lag.stdout), lag.stdout

    # the topics deleted and created again: the first run's offsets point into a tape that is gone
    delete_topics(kafka_topics.bootstrap, [kafka_topics.prefix + "md.raw"])
    create_topics(kafka_topics.bootstrap, prefix=kafka_topics.prefix)
    again = tapeflow(split_run(kafka_topics, "first", "--no-dashboard"), tmp_path, timeout=120)
    assert again.returncode == 2, again.stderr[-3000:]
    assert str(Path("data/recovery") / kafka_topics.prefix / "first") in again.stderr
    assert "deleted and created again" in again.stderr
    assert "new --run-id" in again.stderr and "stages started" not in again.stderr
    stage = tapeflow(["flow", "market", "--brokers", kafka_topics.bootstrap, "--prefix", kafka_topics.prefix,
                      "--recovery-dir", str(runs / "second" / "market")], tmp_path, timeout=120)
    assert stage.returncode == 2 and str(runs / "second" / "market") in stage.stderr, stage.stderr[-3000:]


def test_split_run_when_recorded_against_another_cluster_then_refused_naming_the_folder(kafka_topics, tmp_path):
    run_dir = tmp_path / "data" / "recovery" / kafka_topics.prefix / "moved"
    run_dir.mkdir(parents=True)
    # what a run started against another broker leaves (a new local broker, a reset compose volume)
    (run_dir / "run-start.json").write_text(json.dumps(
        {"origin": {"cluster_id": "AnotherClusterId00000A", "topic_ids": {}}, "start_offsets": {}}))
    done = tapeflow(split_run(kafka_topics, "moved", "--no-dashboard"), tmp_path, timeout=120)
    assert done.returncode == 2
    assert str(Path("data/recovery") / kafka_topics.prefix / "moved") in done.stderr
    assert "cluster AnotherClusterId00000A" in done.stderr and "new --run-id" in done.stderr


def test_split_run_when_a_stage_refuses_its_recovery_folder_then_the_run_fails_naming_the_stage(kafka_topics, tmp_path):
    market = tmp_path / "data" / "recovery" / kafka_topics.prefix / "legacy" / "market"
    market.mkdir(parents=True)
    (market / "part-0.sqlite3").write_bytes(b"")  # a snapshot from before origins were recorded
    done = tapeflow(split_run(kafka_topics, "legacy", "--no-dashboard"), tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "stage market refused to run (exited with code 2)" in done.stderr, done.stderr[-3000:]
    log = (tmp_path / "data" / "logs" / "legacy" / "market.log").read_text()
    assert "records no Kafka cluster" in log and str(Path("data/recovery") / kafka_topics.prefix / "legacy" / "market") in log


def test_split_run_when_no_trading_and_no_raw_then_market_data_only_and_md_raw_not_landed(kafka_topics, tmp_path):
    done = tapeflow(split_run(kafka_topics, "md-only", "--no-trading", "--no-raw", "--no-dashboard"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    started = re.search(r"stages started: (.*?); logs", done.stderr).group(1)
    assert re.fullmatch(r"market \(pid \d+\), sink \(pid \d+\)", started), started
    wh = Warehouse.connect(f"chdb://{tmp_path}/wh")
    assert count(wh, "md_raw", "md-only") == 0
    assert count(wh, "md_trades", "md-only") > 0 and count(wh, "md_bars", "md-only") > 0
    assert count(wh, "signals", "md-only") == 0 and count(wh, "orders_intent", "md-only") == 0
    assert topic_message_count(kafka_topics.bootstrap, kafka_topics.prefix + "signals") == 0


@pytest.fixture
def registry(tmp_path):
    """A registry serving LightGBM v1, with v2 registered and not yet active."""
    from tests.unit.strategies.lgbm_models import registry_with, tiny_booster

    registry = registry_with(tmp_path, tiny_booster(seed=1), tiny_booster(seed=2))
    registry.activate("lightgbm", "v1")
    return registry


def test_split_run_when_lightgbm_then_the_signals_stage_serves_the_registry_and_swaps_on_a_control_command(
        kafka_topics, tmp_path, registry):
    from config.control_channel import make_command
    from schemas import ControlKind
    from topics.serde import encode

    ticks = 40_000
    args = split_run(kafka_topics, "lgbm", "--strategy", "lightgbm", "--registry", str(registry.root),
                     "--no-dashboard", "--speed", "10", "--max-ticks", str(ticks))
    run = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", *args], cwd=tmp_path, env=stage_env(tmp_path),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sent = threading.Event()
    seen: list = []  # the last signal count read, or what stopped the activator

    def activate_v2_mid_run() -> None:
        deadline = time.monotonic() + 300
        try:
            while (count := topic_message_count(kafka_topics.bootstrap, kafka_topics.prefix + "signals")) < 40:
                seen[:] = [count]
                if run.poll() is not None or time.monotonic() > deadline:
                    return
                time.sleep(0.2)
        except Exception as exc:  # said in the assertion below, not lost in a thread
            seen[:] = [exc]
            return
        command = make_command(ControlKind.ACTIVATE_MODEL, name="v2", issued_by="test-operator")
        message = encode("control", command)
        producer = Producer({"bootstrap.servers": kafka_topics.bootstrap})
        producer.produce(kafka_topics.prefix + "control", message.value, message.key, headers=list(message.headers))
        assert producer.flush(30) == 0
        sent.set()

    activator = threading.Thread(target=activate_v2_mid_run, daemon=True)
    activator.start()
    out, err = run.communicate(timeout=900)
    activator.join(10)
    assert run.returncode == 0, err[-3000:]
    assert sent.is_set(), f"the command could not be sent mid-run (40 signals); last seen: {seen}"
    wh = Warehouse.connect(f"chdb://{tmp_path}/wh")
    versions = dict(wh.query("SELECT model_version, count() FROM signals WHERE run_id = 'lgbm' GROUP BY model_version").rows)
    assert set(versions) == {"v1", "v2"} and all(n > 0 for n in versions.values()), versions
    strategies = {r[0] for r in wh.query("SELECT DISTINCT strategy FROM signals WHERE run_id = 'lgbm'").rows}
    assert strategies == {"lightgbm"}, strategies
    swaps = wh.query("SELECT detail FROM control FINAL WHERE run_id = 'lgbm' AND kind = 'activate_model' "
                     "AND issued_by = 'test-operator' AND id LIKE 'ctl:model:%'").rows
    assert any("accepted v2" in r[0] for r in swaps), swaps


def test_split_run_when_venue_alpaca_then_the_trading_stage_routes_orders_to_alpaca_after_reconciling(
        kafka_topics, tmp_path, fake_alpaca):
    settings = fake_alpaca.settings()
    alpaca_env = {"APCA_API_KEY_ID": fake_alpaca.key_id, "APCA_API_SECRET_KEY": fake_alpaca.secret,
                  "APCA_TRADING_URL": settings.trading_url, "APCA_TRADING_STREAM_URL": settings.trading_stream_url,
                  "APCA_DATA_STREAM_URL": settings.data_stream_url}
    done = tapeflow(split_run(kafka_topics, "at-alpaca", "--venue", "alpaca", "--no-dashboard"), tmp_path,
                    **alpaca_env)
    assert done.returncode == 0, done.stderr[-3000:]
    started = re.search(r"stages started: (.*?); logs", done.stderr).group(1)
    assert "trading (pid" in started
    trading_log = (tmp_path / "data" / "logs" / "at-alpaca" / "trading.log").read_text()
    assert "alpaca reconciliation at start:" in trading_log, trading_log[-3000:]
    assert not (tmp_path / "data" / "recovery" / kafka_topics.prefix / "at-alpaca" / "trading").exists()
    posted = fake_alpaca.rest.count("POST", "/v2/orders")
    wh = Warehouse.connect(f"chdb://{tmp_path}/wh")
    assert posted > 0 and count(wh, "orders_approved", "at-alpaca") > 0
    restart = tapeflow(split_run(kafka_topics, "at-alpaca", "--venue", "alpaca", "--no-dashboard"), tmp_path,
                       timeout=120, **alpaca_env)
    assert restart.returncode == 2 and "Alpaca holds its orders" in restart.stderr, restart.stderr[-3000:]
