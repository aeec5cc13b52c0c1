"""``tapeflow run --feed replay`` with a user's own files, as a user runs it (a separate process)."""

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


@pytest.fixture
def real_data() -> Path:
    return REAL_DATA


def tapeflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command from this checkout (PYTHONPATH), whatever tapeflow the interpreter has installed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "tapeflow.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)

FUTURES = "binance-futures-btcusdt-trades-20200222.csv"


def _count(table: str, url: str, run_id: str, cwd, where: str = "") -> int:
    done = tapeflow("query", f"SELECT count() AS n FROM {table} WHERE run_id = '{run_id}' {where}", "--warehouse", url,
                    "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip())["n"]


def test_run_when_user_parquet_with_ns_stamps_then_detected_mapping_printed_and_every_trade_landed(tmp_path, real_data):
    source = pl.read_csv(real_data / FUTURES).head(3_000)
    source.select(
        (pl.col("timestamp") * 1_000).alias("ts"), "symbol", "price", pl.col("amount").alias("size"), "side",
        pl.col("id").alias("trade_id"),
    ).write_parquet(tmp_path / "mytrades.parquet")
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--no-dashboard", "--feed", "replay", "--path", "mytrades.parquet", "--warehouse", url,
                    "--run-id", "mine", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert ("replay mytrades.parquet: kind=trade,ts=ts:ns,price=price,size=size,side=side,trade_id=trade_id,"
            "symbol=symbol [detected from column names, timestamp unit ns from its values]") in done.stderr
    assert _count("md_trades", url, "mine", tmp_path) == 3_000
    assert _count("dlq", url, "mine", tmp_path) == 0


def test_run_when_trades_csv_and_quotes_csv_then_one_run_merges_both_and_trades(tmp_path, real_data):
    source = pl.read_csv(real_data / FUTURES).head(4_000)
    source.select((pl.col("timestamp") // 1_000).alias("time"), pl.col("price").alias("px"),
                  pl.col("amount").alias("qty"), "side").write_csv(tmp_path / "trades.csv")
    source.select((pl.col("timestamp") // 1_000 + 1).alias("time"), (pl.col("price") - 0.5).alias("bid"),
                  (pl.col("price") + 0.5).alias("ask")).write_csv(tmp_path / "quotes.csv")
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--no-dashboard", "--feed", "replay", "--path", "trades.csv@BTCUSDT", "--path",
                    "quotes.csv@BTCUSDT", "--warehouse", url, "--run-id", "both", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "replay trades.csv as BTCUSDT: kind=trade,ts=time:ms,price=px,size=qty,side=side" in done.stderr
    assert "replay quotes.csv as BTCUSDT: kind=quote,ts=time:ms,bid=bid,ask=ask" in done.stderr
    assert "merging 2 files in event time (trade, quote)" in done.stderr
    assert _count("md_trades", url, "both", tmp_path) == 4_000
    assert _count("md_quotes", url, "both", tmp_path) == 4_000
    assert _count("exec_reports", url, "both", tmp_path) > 0  # the desk traded the merged tape


def test_run_when_file_cannot_be_mapped_then_fails_at_once_naming_columns_and_missing_roles(tmp_path):
    (tmp_path / "odd.csv").write_text("when,value,how_much\n1,2,3\n")
    done = tapeflow("run", "--no-dashboard", "--feed", "replay", "--path", "odd.csv", cwd=tmp_path)
    assert done.returncode == 2
    assert "odd.csv" in done.stderr and "['when', 'value', 'how_much']" in done.stderr
    assert "a timestamp column" in done.stderr and "price and size" in done.stderr
    assert not (tmp_path / "data").exists(), "nothing may run"


def test_run_when_columns_given_to_the_synthetic_feed_then_refused(tmp_path):
    done = tapeflow("run", "--no-dashboard", "--columns", "ts=t:ms", "--max-ticks", "10", cwd=tmp_path)
    assert done.returncode == 2 and "--feed replay" in done.stderr


def test_run_when_preset_by_name_then_real_file_replayed_under_another_name(tmp_path, real_data):
    (tmp_path / "fut.csv").write_text((real_data / FUTURES).read_text())
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--no-dashboard", "--no-trading", "--feed", "replay", "--path", "fut.csv", "--preset",
                    "tardis-trades", "--warehouse", url, "--run-id", "p", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "[preset tardis-trades]" in done.stderr
    assert _count("md_trades", url, "p", tmp_path) == 9_999


FX_BARS = "fxcm-gbpusd-m1-bid-2012.csv"


def test_run_when_fx_bars_without_volume_then_bars_and_features_landed_with_no_volume_invented(tmp_path, real_data):
    head = (real_data / FX_BARS).read_text().splitlines()[:400]
    (tmp_path / "gbpusd.csv").write_text("\n".join(head) + "\n")
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--no-dashboard", "--feed", "bars", "--path", "gbpusd.csv@GBPUSD", "--warehouse", url,
                    "--run-id", "fx", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1m bars" in done.stderr and "left empty: volume, vwap, buy_volume, sell_volume, trade_count" in done.stderr
    assert _count("md_bars", url, "fx", tmp_path) == 399
    assert _count("md_bars", url, "fx", tmp_path, "AND volume IS NULL AND vwap IS NULL AND buy_volume IS NULL") == 399
    assert _count("features", url, "fx", tmp_path) == 399 - 34
    assert _count("features", url, "fx", tmp_path, "AND isNaN(volume_z_20) AND isFinite(rsi_14)") == 399 - 34


def test_run_when_btc_bars_with_volume_then_volume_kept(tmp_path, real_data):
    head = (real_data / "btc-perp-20211231-20220201_1m.csv").read_text().splitlines()[:200]
    (tmp_path / "btc_1m.csv").write_text("\n".join(head) + "\n")
    url = f"chdb://{tmp_path}/wh"
    done = tapeflow("run", "--no-dashboard", "--no-trading", "--feed", "bars", "--path", "btc_1m.csv@BTC-PERP",
                    "--warehouse", url, "--run-id", "btc", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _count("md_bars", url, "btc", tmp_path, "AND volume > 0 AND vwap IS NULL") == 199


@pytest.mark.parametrize("option, reason", [
    (["--brokers", "127.0.0.1:1"], "embedded only"),
    (["--max-ticks", "10"], "use --duration"),
    (["--symbols", "X"], "every symbol of its files"),
    (["--columns", "ts=t"], "detected by name"),
])
def test_run_when_bars_with_an_option_that_does_not_apply_then_refused_with_the_reason(tmp_path, real_data, option,
                                                                                         reason):
    done = tapeflow("run", "--no-dashboard", "--feed", "bars", "--path", str(real_data / FX_BARS) + "@GBPUSD", *option,
                    cwd=tmp_path)
    assert done.returncode == 2 and reason in done.stderr, done.stderr


def test_run_when_tick_file_given_to_the_bar_feed_then_refused_naming_the_columns(tmp_path, real_data):
    done = tapeflow("run", "--no-dashboard", "--feed", "bars", "--path", str(real_data / FUTURES), cwd=tmp_path)
    assert done.returncode == 2 and "a tick file?" in done.stderr and "'price'" in done.stderr, done.stderr
