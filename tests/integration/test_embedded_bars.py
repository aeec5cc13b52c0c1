"""Bar files through the embedded pipeline: features on replayed bars equal those on the bars the
pipeline built from ticks, and the desk fills from bars at the next bar's open plus slippage."""

from __future__ import annotations

import math

import polars as pl
import pytest

from feeds import make_feed
from feeds.bar_replay import BarFileFeed
from schemas.feature_set import FEATURE_SET_V1
from tests.integration.embedded_runs import run_embedded

pytestmark = pytest.mark.integration

BAR_COLUMNS = ("symbol", "interval", "bar_start", "open", "high", "low", "close", "volume", "vwap", "trade_count",
               "buy_volume", "sell_volume")


def _features(wh, run_id: str) -> dict[tuple[str, int], tuple[float, ...]]:
    names = ", ".join(FEATURE_SET_V1)
    rows = wh.query(f"SELECT symbol, toUnixTimestamp64Nano(bar_end), {names} FROM features FINAL "
                    "WHERE run_id = {r:String}", {"r": run_id}).rows
    return {(r[0], int(r[1])): tuple(float(v) for v in r[2:]) for r in rows}


@pytest.fixture(scope="module")
def replayed(module_warehouse, tmp_path_factory):
    """A synthetic tape run through the pipeline, its 1s bars written out to Parquet from the
    warehouse, and that file replayed through the pipeline with trading."""
    wh = module_warehouse
    run_embedded(wh, make_feed("synthetic", seed=11, ticks_per_second=400, max_ticks=40_000), "ticks", trading=True)
    listed = ", ".join(c if c != "bar_start" else "toUnixTimestamp64Nano(bar_start) AS bar_start" for c in BAR_COLUMNS)
    result = wh.query(f"SELECT {listed} FROM md_bars FINAL WHERE run_id = 'ticks' AND interval = '1s' "
                      "ORDER BY bar_start, symbol")
    path = tmp_path_factory.mktemp("bars") / "bars-1s.parquet"
    pl.DataFrame(list(result.rows), schema=list(BAR_COLUMNS), orient="row").write_parquet(path)
    feed = BarFileFeed([(path, None)])
    run_embedded(wh, feed, "bars", trading=True)
    return wh, feed, path


def test_replayed_bars_when_written_out_from_the_warehouse_then_features_equal_to_1e12(replayed):
    wh, _, _ = replayed
    built, from_file = _features(wh, "ticks"), _features(wh, "bars")
    assert len(built) > 100 and built.keys() == from_file.keys()
    for key, values in built.items():
        for name, a, b in zip(FEATURE_SET_V1, values, from_file[key]):
            assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12, (key, name, a, b)


def test_tapeflow_run_feed_bars_when_given_the_written_bars_then_the_same_features(replayed, tmp_path):
    """The same file through the command a user runs, in a process and warehouse of its own."""
    import json
    import os
    import subprocess
    import sys

    from tests.real_data import REPO

    wh, _, path = replayed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    url = f"chdb://{tmp_path}/wh"

    def tapeflow(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tapeflow.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    done = tapeflow("run", "--no-dashboard", "--feed", "bars", "--path", str(path), "--warehouse", url,
                    "--run-id", "cli-bars")
    assert done.returncode == 0, done.stderr
    assert "1s bars" in done.stderr
    names = ", ".join(FEATURE_SET_V1)
    queried = tapeflow("query", f"SELECT symbol, toString(toUnixTimestamp64Nano(bar_end)) AS end, {names} "
                       "FROM features FINAL WHERE run_id = 'cli-bars'", "--warehouse", url, "--json")
    assert queried.returncode == 0, queried.stderr
    rows = [json.loads(line) for line in queried.stdout.splitlines() if line.strip()]
    from_cli = {(r["symbol"], int(r["end"])): tuple(float(r[n]) if r[n] is not None else math.nan
                                                    for n in FEATURE_SET_V1) for r in rows}
    built = _features(wh, "ticks")
    assert from_cli.keys() == built.keys()
    for key, values in built.items():
        for name, a, b in zip(FEATURE_SET_V1, values, from_cli[key]):
            assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12, (key, name, a, b)


def test_replayed_bars_when_traded_then_every_fill_at_a_bar_open_plus_slippage_bounded_by_its_volume(replayed):
    wh, feed, _ = replayed
    bars = {(r["symbol"], r["bar_start"]): r for r in feed.frame().iter_rows(named=True)}
    fills = wh.query("SELECT symbol, side, last_qty, last_price, toUnixTimestamp64Nano(ts_event), client_order_id "
                     "FROM exec_reports FINAL WHERE run_id = 'bars' AND fill_id != ''").rows
    assert len(fills) > 20
    latency = 50_000_000
    taken: dict[tuple[str, int, str], float] = {}
    for symbol, side, qty, price, ts, _ in fills:
        bar = bars[(symbol, ts - latency)]  # a fill is at its bar's start + the venue latency
        sign = 1 if side == "buy" else -1
        expected = bar["open"] * (1 + sign * 1e-4)  # default bar_slippage_bps = 1
        assert abs(price - expected) <= 0.01 + 1e-9, (symbol, side, price, bar["open"])
        assert sign * (price - expected) >= -1e-9  # rounded against the order
        key = (symbol, ts, side)
        taken[key] = taken.get(key, 0.0) + qty
    for (symbol, ts, side), qty in taken.items():
        assert qty <= bars[(symbol, ts - latency)]["volume"] + 1e-9
    orders = wh.query("SELECT client_order_id, toUnixTimestamp64Nano(ts_event) FROM orders_approved FINAL "
                      "WHERE run_id = 'bars'").rows
    sent = dict(orders)
    assert all(ts - latency > sent[coid] - 1 for *_, ts, coid in fills)  # never before the order's bar end
    assert all(ts - latency >= sent[coid] for *_, ts, coid in fills)  # the next bar's open or later


def test_replayed_bars_when_traded_then_positions_marked_at_bar_closes(replayed):
    wh, feed, _ = replayed
    closes = {(r["symbol"], r["bar_end"]): r["close"] for r in feed.frame().iter_rows(named=True)}
    rows = wh.query("SELECT symbol, toUnixTimestamp64Nano(ts_event), mark_price FROM positions FINAL "
                    "WHERE run_id = 'bars' AND mark_price > 0").rows
    assert rows
    on_bar_end = [(s, ts, mark) for s, ts, mark in rows if (s, ts) in closes]
    assert on_bar_end and all(mark == closes[(s, ts)] for s, ts, mark in on_bar_end)
