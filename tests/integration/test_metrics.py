"""Prometheus metrics scraped from a running pipeline, and JSON logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from tapeflow.dashboard_server import free_port

pytestmark = pytest.mark.integration


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def test_a_running_pipeline_serves_its_metrics_and_logs_json(tmp_path):
    port = free_port()
    env = {**os.environ, "TAPEFLOW_METRICS_PORT": str(port), "TAPEFLOW_LOG_FORMAT": "json",
           "TAPEFLOW_CONTROL_PATH": str(tmp_path / "control.jsonl")}
    run = subprocess.Popen([sys.executable, "-m", "tapeflow.cli", "run", "--no-dashboard", "--rate", "400", "--speed",
                            "5", "--duration", "40", "--warehouse", f"chdb://{tmp_path}/wh", "--run-id", "metrics"],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
            if samples.get('tapeflow_orders_total{strategy="baseline"}', 0) > 0:
                break
            time.sleep(1.0)
    finally:
        run.terminate()
        _, stderr = run.communicate(timeout=120)
    assert samples.get('tapeflow_orders_total{strategy="baseline"}', 0) > 0, (samples, stderr[-2000:])
    assert samples['tapeflow_records_total{table="md_trades"}'] > 0
    assert samples["tapeflow_tick_to_order_seconds_count"] == samples['tapeflow_orders_total{strategy="baseline"}']
    assert any(key.startswith('tapeflow_warehouse_insert_seconds_count{table="md_trades"}') for key in samples)
    assert samples.get('tapeflow_kill_switch{target="global"}') is None  # nothing switched it
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(entry["logger"] == "tapeflow.metrics" and f":{port}/metrics" in entry["message"] for entry in logs)
    assert all({"ts", "level", "logger", "message"} <= entry.keys() for entry in logs)


def test_a_lag_alert_setting_without_the_split_topology_is_refused(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tapeflow.cli", "run", "--no-dashboard", "--max-ticks", "10"],
                          cwd=tmp_path, env={**os.environ, "TAPEFLOW_ALERT_LAG_GROWING_S": "5"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "TAPEFLOW_ALERT_LAG_GROWING_S" in done.stderr and "--brokers" in done.stderr
