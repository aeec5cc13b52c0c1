"""Stop, unwind and re-arm as an operator does it: `tapeflow control` against a running `tapeflow run`."""

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

pytestmark = pytest.mark.integration

TAPEFLOW = [sys.executable, "-m", "tapeflow.cli"]
REPO = Path(__file__).resolve().parents[2]


def environment(tmp_path: Path) -> dict[str, str]:
    # PYTHONPATH: the subprocesses run this checkout's packages, whatever the venv has installed
    return {**os.environ, "TAPEFLOW_CONTROL_PATH": str(tmp_path / "control.jsonl"), "TAPEFLOW_OPERATOR": "alice",
            "PYTHONPATH": str(REPO)}


def control(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*TAPEFLOW, "control", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_kill_switch_on_with_flatten_when_sent_to_a_running_pipeline_then_every_position_ends_flat(tmp_path):
    url, env = f"chdb://{tmp_path}/wh", environment(tmp_path)
    running = subprocess.Popen(
        [*TAPEFLOW, "run", "--no-dashboard", "--rate", "400", "--speed", "5", "--duration", "24", "--warehouse", url,
         "--run-id", "flat", "--progress-interval", "0.2"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # stderr belongs to the watcher alone: a second reader would take lines from it and close it under it
    filled = threading.Event()
    err_lines: list[str] = []

    def watch() -> None:  # the progress line counts exec reports: wait for trading before unwinding
        for line in running.stderr:
            err_lines.append(line)
            found = re.search(r"exec reports ([\d,]+)", line)
            if found and int(found.group(1).replace(",", "")) >= 20:
                filled.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert filled.wait(120), "".join(err_lines[-20:])
        sent = control("kill-switch", "on", "--flatten", env=env, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        assert "sent kill_switch" in sent.stdout and "sent flatten" in sent.stdout and "as alice" in sent.stdout
        running.wait(timeout=180)
    finally:
        running.kill()
    watcher.join(10)
    assert running.returncode == 0, "".join(err_lines[-20:])

    def query(sql: str) -> list[dict]:
        done = subprocess.run([*TAPEFLOW, "query", sql, "--warehouse", url, "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    positions = query("SELECT strategy, symbol, argMax(quantity, (ts_event, id)) AS qty FROM positions FINAL "
                      "WHERE run_id = 'flat' GROUP BY strategy, symbol")
    assert positions and all(p["qty"] == 0.0 for p in positions), positions
    closes = query("SELECT count() AS n FROM orders_approved FINAL WHERE run_id = 'flat' AND action = 'new' "
                   "AND position(client_order_id, '-u') > 0")
    assert closes[0]["n"] > 0
    audit = query("SELECT kind, name, issued_by FROM control WHERE run_id = 'flat' ORDER BY ts_ingest")
    assert {"kind": "flatten", "name": "", "issued_by": "alice"} in audit
    assert {"kind": "alert", "name": "flatten_closing", "issued_by": "risk"} in audit


def test_resume_when_no_reason_then_refused_before_anything_is_sent(tmp_path):
    env = environment(tmp_path)
    done = control("resume", "--reason", "  ", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "--reason" in done.stderr
    assert not (tmp_path / "control.jsonl").exists()
    missing = control("resume", env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "--reason" in missing.stderr


def test_resume_when_sent_then_the_reason_is_in_the_spool_and_the_cli_says_when_risk_refuses(tmp_path):
    env = environment(tmp_path)
    done = control("resume", "--reason", "breaker reviewed", "--account", "paper", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "resume_refused" in done.stdout
    [line] = (tmp_path / "control.jsonl").read_text().splitlines()
    command = json.loads(line)
    assert (command["kind"], command["detail"], command["target"], command["issued_by"]) == (
        "resume", "breaker reviewed", "paper", "alice")


def test_kill_switch_off_with_flatten_then_refused_with_the_reason(tmp_path):
    env = environment(tmp_path)
    done = control("kill-switch", "off", "--flatten", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "--flatten goes with `kill-switch on`" in done.stderr
    assert not (tmp_path / "control.jsonl").exists()
