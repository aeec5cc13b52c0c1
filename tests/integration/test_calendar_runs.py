"""The run's trading calendar, end to end (a separate process, as a user runs it): a replayed crypto
file from a Saturday trades under the default 24/7 calendar, and the same file held to NYSE hours
(``TAPEFLOW_CALENDAR=XNYS``) sends no order, each refused with ``market_closed``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.real_data import REAL_DATA, REPO

pytestmark = pytest.mark.integration

FUTURES = "binance-futures-btcusdt-trades-20200222.csv"  # 2020-02-22 is a Saturday


def tapeflow(*args: str, cwd: Path, calendar: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("TAPEFLOW_CALENDAR", None)
    if calendar is not None:
        env["TAPEFLOW_CALENDAR"] = calendar
    return subprocess.run([sys.executable, "-m", "tapeflow.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def count(sql: str, url: str, cwd: Path) -> int:
    done = tapeflow("query", sql, "--warehouse", url, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip())["n"]


@pytest.fixture(scope="module")
def saturday_trades(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saturday")
    source = pl.read_csv(REAL_DATA / FUTURES).head(4_000)
    source.select((pl.col("timestamp") // 1_000).alias("time"), pl.col("price").alias("px"),
                  pl.col("amount").alias("qty"), "side").write_csv(folder / "trades.csv")
    return folder


@pytest.mark.parametrize("calendar", [None, "XNYS"])
def test_replay_of_a_saturday_when_calendar_then_trades_only_when_24_7(saturday_trades, calendar):
    url = f"chdb://{saturday_trades}/wh-{calendar or 'default'}"
    done = tapeflow("run", "--no-dashboard", "--feed", "replay", "--path", "trades.csv@BTCUSDT", "--warehouse", url,
                    "--run-id", "sat", cwd=saturday_trades, calendar=calendar)
    assert done.returncode == 0, done.stderr
    approved = count("SELECT count() AS n FROM orders_approved WHERE run_id = 'sat'", url, saturday_trades)
    closed = count("SELECT count() AS n FROM orders_rejected WHERE run_id = 'sat' AND has(reasons, 'market_closed')",
                   url, saturday_trades)
    if calendar is None:  # a replayed file: 24/7
        assert approved > 0 and closed == 0
    else:
        assert approved == 0 and closed > 0
