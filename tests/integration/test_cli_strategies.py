"""`tapeflow run --strategy ...` as a user runs it: a plug-in from their own directory, several
strategies with their capital, and a bad spec refused before anything runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def tapeflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's packages, whatever is installed
    return subprocess.run([sys.executable, "-m", "tapeflow.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_run_when_two_plug_ins_with_capital_then_both_trade_and_the_summary_shows_pnl_by_strategy(tmp_path):
    shutil.copy(ROOT / "examples" / "momentum.py", tmp_path / "my_momentum.py")  # the user's own copy
    (tmp_path / "mr.toml").write_text("entry_bps = 4.0\n")
    done = tapeflow("run", "--no-dashboard", "--max-ticks", "300000", "--warehouse", f"chdb://{tmp_path}/wh",
                    "--run-id", "plug", "--strategy", "examples.mean_reversion:MeanReversion=0.4",
                    "--strategy", "my_momentum:Momentum=0.6", "--strategy-config", "mr.toml",
                    "--strategy-config", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name, capital in (("mean_reversion", "400,000.00"), ("momentum", "600,000.00")):  # the P&L-by-strategy rows
        row = re.search(rf"^{name}\s+{capital}\s.*\s(\d+)\s*$", done.stdout, re.MULTILINE)
        assert row and int(row.group(1)) > 0, done.stdout  # its capital, and it filled


@pytest.mark.parametrize("topology", [[], ["--brokers", "127.0.0.1:1"]])
@pytest.mark.parametrize("options, message", [
    (["--strategy", "nowhere.rules:Rule"], "no module 'nowhere'"),
    (["--strategy", "examples.momentum:Momentum", "--strategy-config", "bad.toml"], "top: Extra inputs are not permitted"),
    (["--strategy", "baseline=0.7", "--strategy", "examples.momentum:Momentum=0.7"], "sum to 1.4"),
])
def test_run_when_a_strategy_spec_is_bad_then_exit_2_with_the_reason_before_anything_runs(tmp_path, topology,
                                                                                            options, message):
    (tmp_path / "bad.toml").write_text("top = 3\n")
    done = tapeflow("run", "--no-dashboard", "--max-ticks", "1000", *topology, *options, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "data").exists(), "nothing may run"


def test_run_when_a_strategy_given_with_no_trading_then_refused_rather_than_ignored(tmp_path):
    done = tapeflow("run", "--no-dashboard", "--no-trading", "--strategy", "examples.momentum:Momentum", cwd=tmp_path)
    assert done.returncode == 2 and "--strategy chooses how to trade, and --no-trading runs no signals or orders" in done.stderr, done.stderr
