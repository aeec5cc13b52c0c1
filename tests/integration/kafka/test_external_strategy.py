"""An external strategy end to end over the real broker: ``tapeflow run --brokers --strategy
external:quix_example`` starts no signals stage, the example Quix Streams app (its own process) reads
features and publishes its signals, the trading stage trades them, and the finite tape ends only
after the app's end-of-tape markers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sinks.warehouse import Warehouse

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
NAME = "quix_example"
SYMBOLS = "AAA,BBB,CCC"


def test_run_with_an_external_quix_strategy_when_a_finite_tape_ends_then_its_signals_are_traded_and_the_run_ends(
        kafka_topics, tmp_path):
    env = {**os.environ, "TAPEFLOW_WAREHOUSE": f"chdb://{tmp_path}/wh", "TAPEFLOW_EPOCH_INTERVAL_S": "0.5",
           "PYTHONPATH": str(ROOT)}  # this checkout's packages, in the run, its stages and the app
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    started = time.monotonic()
    run = subprocess.Popen(
        [sys.executable, "-m", "tapeflow.cli", "run", "--brokers", bootstrap, "--prefix", prefix,
         "--symbols", SYMBOLS, "--rate", "100", "--speed", "100", "--max-ticks", "30000", "--run-id", "external",
         "--no-dashboard", "--progress-interval", "5", "--strategy", f"external:{NAME}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        app = subprocess.run(  # the topics exist (the fixture made them): the app may start at once
            [sys.executable, "-m", "examples.quix_strategy", "--brokers", bootstrap, "--prefix", prefix,
             "--symbols", SYMBOLS, "--name", NAME, "--max-wait-bars", "1000000"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert app.returncode == 0, app.stderr[-3000:]
        assert "end of tape" in app.stdout, app.stdout
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    assert run.returncode == 0, err[-3000:]
    assert "no signals stage" in err and "end of tape landed" in err, err[-3000:]
    elapsed = time.monotonic() - started

    wh = Warehouse.connect(f"chdb://{tmp_path}/wh")

    def rows(sql: str) -> list[tuple]:
        return wh.query(sql.replace("RUN", "run_id = 'external'")).rows

    signals = rows("SELECT strategy, id, symbol, toUnixTimestamp64Nano(bar_end) FROM signals FINAL WHERE RUN")
    assert signals and {s[0] for s in signals} == {NAME}, "the app's signals, and no built-in stage's"
    assert all(s[1] == f"sig:{NAME}:{s[2]}:{s[3]}" for s in signals), "ids derived from the inputs"
    orders = rows("SELECT strategy, signal_id FROM orders_intent FINAL WHERE RUN")
    assert orders and {o[0] for o in orders} == {NAME}
    assert {o[1] for o in orders} <= {s[1] for s in signals}, "every order cites one of the app's signals"
    [(fills, fill_strategies)] = rows("SELECT count(), groupUniqArray(strategy) FROM fills WHERE RUN")
    assert fills > 0 and fill_strategies == [NAME], "the desk filled the external strategy's orders"
    assert not rows("SELECT id FROM dlq FINAL WHERE RUN AND reason = 'unknown_strategy'")
    print(f"external strategy run: {len(signals)} signals, {len(orders)} orders, {fills} fills, "
          f"{elapsed:.1f} s")
