"""Plug-in strategies and several strategies per account in the split topology: the same records as
the embedded run, and the stage processes get the run's strategy options."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flows.pipeline import TradingConfig
from strategies.loading import strategy_options
from tapeflow.split_run import SplitRun
from tests.integration.embedded_runs import run_embedded
from tests.integration.kafka.split_runs import (
    MARKET, MONEY, UPSTREAM, assert_same_tables, publish_tape, run_stages, sink_to, split_config, tape,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SPECS = ("examples.mean_reversion:MeanReversion=0.5", "examples.momentum:Momentum=0.5")


def with_plug_ins(trading: TradingConfig) -> TradingConfig:
    return trading.with_strategies(SPECS)


def test_split_pipeline_with_two_plug_in_strategies_when_replayed_then_same_records_as_embedded(
        kafka_topics, module_warehouse):
    cfg = split_config(kafka_topics.bootstrap, kafka_topics.prefix, tape())
    cfg = dataclasses.replace(cfg, trading=with_plug_ins(cfg.trading))
    embedded = with_plug_ins(TradingConfig(desk=cfg.trading.desk.model_copy(update={"silent_after_ns": 30 * 10**9}),
                                           universe=cfg.trading.universe))
    run_embedded(module_warehouse, tape(), "plug-fused", trading=embedded)
    publish_tape(kafka_topics.bootstrap, kafka_topics.prefix, tape())
    run_stages(cfg, UPSTREAM + ("trading",))
    sink_to(module_warehouse, cfg, "plug-split")
    assert_same_tables(module_warehouse, "plug-fused", "plug-split", MARKET + MONEY)
    strategies = module_warehouse.query(
        "SELECT DISTINCT strategy FROM orders_intent FINAL WHERE run_id = 'plug-split' ORDER BY strategy").rows
    assert strategies == [("mean_reversion",), ("momentum",)]


def test_split_run_passes_the_strategy_options_to_every_stage_that_builds_or_sizes_strategies(tmp_path):
    (tmp_path / "mr.toml").write_text("entry_bps = 3.0\n")
    options = strategy_options(SPECS, ["-", tmp_path / "mr.toml"])
    split = SplitRun("127.0.0.1:1", "p.", tmp_path, "r", "chdb:///x", ("A", "B"), ("trade",), tmp_path,
                     separate_trading=True, strategy_options=options)
    for stage in split.stages:
        command = split.stage_command(stage)
        given = [command[i + 1] for i, arg in enumerate(command) if arg == "--strategy"]
        assert given == (list(SPECS) if stage in ("signals", "risk", "pnl") else []), stage
        if stage == "signals":
            assert str((tmp_path / "mr.toml").resolve()) in command


def test_flow_stage_when_the_strategy_spec_is_bad_then_exit_2_before_connecting(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "flow", "signals", "--brokers", "127.0.0.1:1",
         "--strategy", "examples.momentum:Momentum=0.5", "--strategy", "examples.momentum:Gone=0.5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "has no 'Gone'" in done.stderr, done.stderr


def test_run_with_brokers_when_two_plug_in_strategies_then_the_stage_processes_trade_both(kafka_topics, tmp_path):
    env = {**os.environ, "TAPEFLOW_WAREHOUSE": f"chdb://{tmp_path}/wh", "TAPEFLOW_EPOCH_INTERVAL_S": "0.5",
           "PYTHONPATH": str(ROOT)}  # the stage processes inherit it: this checkout's packages and examples/
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "run", "--brokers", kafka_topics.bootstrap,
         "--prefix", kafka_topics.prefix, "--rate", "200", "--speed", "50", "--max-ticks", "60000",
         "--run-id", "split-plug", "--progress-interval", "2", *(a for s in SPECS for a in ("--strategy", s))],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("mean_reversion", "momentum"):  # the P&L-by-strategy rows: half the capital each, and fills
        row = re.search(rf"^{name}\s+500,000.00\s.*\s(\d+)\s*$", done.stdout, re.MULTILINE)
        assert row and int(row.group(1)) > 0, done.stdout
