"""A user's trades CSV and quotes CSV through the split topology: the merged feed runs in the
``tapeflow run`` process and publishes md.raw, the stage processes take it from there."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import polars as pl
import pytest

from tests.real_data import REAL_DATA, REPO

pytestmark = pytest.mark.integration


def test_run_with_brokers_when_trades_csv_and_quotes_csv_then_both_merged_through_the_stages(kafka_topics, tmp_path):
    source = pl.read_csv(REAL_DATA / "binance-futures-btcusdt-trades-20200222.csv").head(1_500)
    source.select((pl.col("timestamp") // 1_000).alias("time"), pl.col("price").alias("px"),
                  pl.col("amount").alias("qty"), "side").write_csv(tmp_path / "trades.csv")
    source.select((pl.col("timestamp") // 1_000 + 1).alias("time"), (pl.col("price") - 0.5).alias("bid"),
                  (pl.col("price") + 0.5).alias("ask")).write_csv(tmp_path / "quotes.csv")
    env = {**os.environ, "TAPEFLOW_WAREHOUSE": f"chdb://{tmp_path}/wh", "TAPEFLOW_EPOCH_INTERVAL_S": "0.5",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "run", "--brokers", kafka_topics.bootstrap, "--prefix",
         kafka_topics.prefix, "--feed", "replay", "--path", "trades.csv@BTCUSDT", "--path", "quotes.csv@BTCUSDT",
         "--run-id", "split-files", "--progress-interval", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "merging 2 files in event time (trade, quote)" in done.stderr
    assert "feed done: sent 3,000 delivered 3,000 failed 0" in done.stderr
    assert re.search(r"md_trades\s+1500", done.stdout) and re.search(r"md_quotes\s+1500", done.stdout), done.stdout
    assert int(re.search(r"orders ([\d,]+) \(approved", done.stdout).group(1).replace(",", "")) > 0
