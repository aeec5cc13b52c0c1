"""The ``tapeflow`` command as a user runs it: a separate process with its own embedded warehouse."""

from __future__ import annotations

import json
import os
import re
import time
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TAPEFLOW = [sys.executable, "-m", "tapeflow.cli"]


def tapeflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*TAPEFLOW, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_run_when_synthetic_with_max_ticks_then_progress_summary_and_queryable_rows(tmp_path):
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--no-dashboard", "--max-ticks", "60000", "--warehouse", url, "--run-id", "cli", "--progress-interval", "0.2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"ticks [\d,]+ \([\d,]+/s\) \| trades [\d,]+", done.stderr), done.stderr  # the progress line
    assert "run cli: 60,000 ticks" in done.stdout
    assert "md_trades" in done.stdout

    queried = tapeflow("query", "SELECT count() AS n FROM md_raw WHERE run_id = 'cli'", "--warehouse", url, "--json", cwd=tmp_path)
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout.strip()) == {"n": 60000}


def test_run_when_default_warehouse_then_created_under_data_of_the_working_directory(tmp_path):
    done = tapeflow("run", "--no-dashboard", "--max-ticks", "2000", "--run-id", "local", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "data" / "warehouse").is_dir()


def test_run_when_replay_file_missing_then_clear_error_naming_it(tmp_path):
    done = tapeflow("run", "--no-dashboard", "--feed", "replay", "--path", str(tmp_path / "nope.parquet"), cwd=tmp_path)
    assert done.returncode == 2
    assert "nope.parquet" in done.stderr


@pytest.mark.parametrize("option", [["--chain", "none"], ["--chain", "market"], ["--separate-trading"]])
def test_run_when_a_split_topology_option_given_without_brokers_then_refused_with_the_reason(tmp_path, option):
    done = tapeflow("run", "--no-dashboard", "--max-ticks", "10", *option, cwd=tmp_path)
    assert done.returncode == 2
    assert option[0] in done.stderr and "--brokers" in done.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.sqlite3")), "nothing may run"


def test_run_when_chain_unknown_then_refused_naming_the_chains(tmp_path):
    done = tapeflow("run", "--no-dashboard", "--brokers", "127.0.0.1:1", "--chain", "all", cwd=tmp_path)
    assert done.returncode == 2
    assert "market, none" in done.stderr


def test_query_when_sql_is_wrong_then_error_and_exit_code_2(tmp_path):
    done = tapeflow("query", "SELECT nonsense FROM nowhere", "--warehouse", f"chdb://{tmp_path}/wh", cwd=tmp_path)
    assert done.returncode == 2
    assert "query failed" in done.stderr


def test_control_kill_switch_when_sent_to_a_running_pipeline_then_new_orders_rejected_and_an_alert_paged(tmp_path):
    from tests.unit.sinks.test_alerts import SECRET, Receiver

    receiver = Receiver()  # a local HTTP server standing for Slack's incoming webhook
    url = f"chdb://{tmp_path}/wh"
    # The embedded run's spool: TAPEFLOW_KAFKA_BOOTSTRAP (set for the Kafka tests) would route to Kafka.
    env = {**{k: v for k, v in os.environ.items() if k != "TAPEFLOW_KAFKA_BOOTSTRAP"},
           "TAPEFLOW_CONTROL_PATH": str(tmp_path / "control.jsonl"), "TAPEFLOW_OPERATOR": "alice",
           "TAPEFLOW_ALERT_WEBHOOK_URL": receiver.url}
    # 400 ticks/s of event time, replayed at 5x: the features' warm-up (35 one-second bars) takes ~7 s
    running = subprocess.Popen(
        [*TAPEFLOW, "run", "--no-dashboard", "--rate", "400", "--speed", "5", "--duration", "16", "--warehouse", url, "--run-id", "kill"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # The control source starts reading the spool at its end when the dataflow starts: wait for
        # the first progress line (a loaded machine may take seconds to get there) before sending.
        early = []
        for line in running.stderr:
            early.append(line)
            if line.startswith("["):
                break
        sent = subprocess.run([*TAPEFLOW, "control", "kill-switch", "on"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert "as alice" in sent.stdout
        stdout, stderr = running.communicate(timeout=120)
        stderr = "".join(early) + stderr
    finally:
        running.kill()
    assert running.returncode == 0, stderr
    assert "kill_switch" in stdout  # the summary's rejects by reason

    def query(sql: str):
        done = tapeflow("query", sql, "--warehouse", url, "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    (counts,) = query(
        "SELECT (SELECT count() FROM orders_approved FINAL WHERE run_id = 'kill') AS approved, "
        "(SELECT countIf(has(reasons, 'kill_switch')) FROM orders_rejected FINAL WHERE run_id = 'kill') AS killed"
    )
    assert counts["approved"] == 0 and counts["killed"] > 0
    (command,) = query("SELECT kind, value, issued_by FROM control WHERE run_id = 'kill' AND kind != 'alert'")
    assert command == {"kind": "kill_switch", "value": 1.0, "issued_by": "alice"}
    # the kill switch is also an alert, landed beside it (sinks.alerts)
    (alert,) = query("SELECT name, issued_by, detail FROM control WHERE run_id = 'kill' AND kind = 'alert'")
    assert alert["name"] == "kill_switch" and alert["issued_by"] == "alerts"
    assert alert["detail"].startswith("[critical] kill switch ON for global by alice")
    (posted,) = receiver.wait_for(1)
    receiver.close()
    assert posted["text"].startswith("tapeflow CRITICAL kill_switch (run kill, global): kill switch ON for global by alice")
    # the webhook's token is a secret: in no log line and in no table of the run
    assert SECRET not in stdout + stderr
    for table in ("control", "dlq", "orders_rejected"):
        rows = query(f"SELECT * FROM {table} WHERE run_id = 'kill'")
        assert SECRET not in json.dumps(rows, default=str)


def test_report_when_run_id_given_then_prints_the_runs_trading_summary(tmp_path):
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--no-dashboard", "--max-ticks", "80000", "--warehouse", url, "--run-id", "rep", "--progress-interval", "9", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = tapeflow("report", "--run-id", "rep", "--warehouse", url, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    summary_line = next(line for line in done.stdout.splitlines() if line.startswith("P&L:"))
    assert summary_line in report.stdout  # the same figures, read back from the warehouse
    assert re.search(r"orders [\d,]+ \(approved [\d,]+, rejected [\d,]+\) \| fills [\d,]+", report.stdout)
    latest = tapeflow("report", "--warehouse", url, cwd=tmp_path)
    assert latest.returncode == 0 and summary_line in latest.stdout


def test_control_limit_when_unknown_name_then_error_lists_the_limits(tmp_path):
    done = tapeflow("control", "limit", "max_bananas", "3", cwd=tmp_path)
    assert done.returncode == 2
    assert "max_order_notional" in done.stderr


def test_run_when_alpaca_without_keys_then_refuses_naming_the_missing_variables(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    done = subprocess.run([*TAPEFLOW, "run", "--feed", "alpaca", "--venue", "alpaca", "--symbols", "AAPL",
                           "--no-dashboard"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "APCA_API_KEY_ID" in done.stderr and "APCA_API_SECRET_KEY" in done.stderr
