"""``tapeflow run --venue alpaca --adopt`` as a user runs it, against the fake Alpaca: the broker's
positions land as adoption records (not fills); --adopt where it cannot work is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashboards.queries import fetch_one
from sinks.warehouse import Warehouse
from tests.alpaca_fake import FAKE_KEY_ID, FAKE_SECRET

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def tapeflow(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The command from this checkout (PYTHONPATH), whatever tapeflow the interpreter has installed."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("APCA_", "TAPEFLOW_"))}
    environment.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, "-m", "tapeflow.cli", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=240)


def test_adopt_when_venue_is_simulated_then_refused_with_the_reason(tmp_path):
    done = tapeflow("run", "--adopt", "--no-dashboard", "--max-ticks", "10", cwd=tmp_path)
    assert done.returncode == 2
    assert "--adopt" in done.stderr and "needs --venue alpaca" in done.stderr
    halting = tapeflow("run", "--no-dashboard", "--max-ticks", "10", cwd=tmp_path, TAPEFLOW_RECONCILE_HALT="1")
    assert halting.returncode == 2 and "TAPEFLOW_RECONCILE_HALT: reconciliation is with Alpaca" in halting.stderr


def test_adopt_when_split_topology_then_refused_with_the_reason(tmp_path):
    done = tapeflow("run", "--venue", "alpaca", "--adopt", "--brokers", "127.0.0.1:1", "--no-dashboard", cwd=tmp_path,
                    APCA_API_KEY_ID=FAKE_KEY_ID, APCA_API_SECRET_KEY=FAKE_SECRET)
    assert done.returncode == 2
    assert "split topology" in done.stderr and "embedded run" in done.stderr


def test_run_when_adopting_then_positions_land_as_adoption_records_not_fills(fake_alpaca, tmp_path):
    fake_alpaca.drift_position("SYN1", 7, 42.5)
    settings = fake_alpaca.settings()
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--venue", "alpaca", "--adopt", "--no-dashboard", "--max-ticks", "3000", "--warehouse", url,
                    "--run-id", "adopt", cwd=tmp_path, APCA_API_KEY_ID=FAKE_KEY_ID, APCA_API_SECRET_KEY=FAKE_SECRET,
                    APCA_TRADING_URL=settings.trading_url, APCA_TRADING_STREAM_URL=settings.trading_stream_url,
                    TAPEFLOW_RECONCILE_INTERVAL_S="0.5", TAPEFLOW_CONTROL_PATH=str(tmp_path / "control.jsonl"))
    assert done.returncode == 0, done.stderr
    assert "adopted from Alpaca: 1 record(s)" in done.stderr
    assert "position SYN1: ledger 0, Alpaca 7" in done.stderr  # what the start found, before adopting
    wh = Warehouse.connect(url, database="tapeflow")
    adopted = wh.query("SELECT strategy, symbol, side, last_qty, last_price, fill_id FROM exec_reports FINAL "
                       "WHERE run_id = 'adopt' AND reason = 'reconcile:adopt_position'").rows
    assert adopted == [("adopted", "SYN1", "buy", 7.0, 42.5, "")]
    assert wh.query("SELECT count() FROM fills WHERE run_id = 'adopt' AND strategy = 'adopted'").scalar() == 0
    figures = fetch_one(wh, "desk_figures", run_id="adopt")  # the dashboard's: the fake fills nothing
    assert (figures["fills"], figures["filled_orders"]) == (0, 0)
    position = wh.query("SELECT quantity, avg_cost FROM positions FINAL WHERE run_id = 'adopt' AND "
                        "strategy = 'adopted' AND symbol = 'SYN1' ORDER BY ts_event LIMIT 1").rows
    assert position == [(7.0, 42.5)]
    alerts = wh.query("SELECT count() FROM control FINAL WHERE run_id = 'adopt' AND kind = 'alert' AND "
                      "name = 'reconciliation_difference'").scalar()
    assert alerts == 0  # adopted: the desk and Alpaca agree
