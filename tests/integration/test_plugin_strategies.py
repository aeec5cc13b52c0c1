"""Plug-in strategies through the embedded pipeline: the two examples trade side by side on one
account, each on half the capital, and what each traded follows its rule."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from config.settings import Settings
from feeds import make_feed
from flows.pipeline import TradingConfig, feed_market_streams, feed_universe
from tests.integration.embedded_runs import run_embedded, table_content

pytestmark = pytest.mark.integration

TICKS = 60_000
MR = "examples.mean_reversion:MeanReversion"
MOM = "examples.momentum:Momentum"
SPECS = (f"{MR}=0.5", f"{MOM}=0.5")
ENTRY_BPS = 5.0  # MeanReversionConfig's default
MONEY_TABLES = ("orders_intent", "orders_approved", "orders_rejected", "exec_reports", "positions", "pnl")


def synthetic():
    # 400 ticks/s of event time over 8 symbols: 150 s of tape, ~130 bars after ret_15's warm-up
    return make_feed("synthetic", seed=3, ticks_per_second=400, max_ticks=TICKS)


def two_strategies(feed) -> TradingConfig:
    config = TradingConfig.from_settings(Settings(), feed_universe(feed), feed_market_streams(feed))
    return config.with_strategies(SPECS)


@pytest.fixture(scope="module")
def traded(module_warehouse):
    for run_id in ("plug-a", "plug-b"):
        feed = synthetic()
        run_embedded(module_warehouse, feed, run_id, trading=two_strategies(feed))
    return module_warehouse


def rows(wh, sql: str, run_id: str = "plug-a") -> list[tuple]:
    return wh.query(sql, {"r": run_id}).rows


def orders_with_features(wh, strategy: str, feature: str) -> list[tuple[str, int, str, float, float]]:
    """(symbol, bar_end, side, target weight, feature at that bar) of each order the strategy sent."""
    return rows(wh, f"""
        SELECT o.symbol, toUnixTimestamp64Nano(o.ts_event) AS t, o.side, s.target_weight, f.{feature}
        FROM (SELECT * FROM orders_intent FINAL WHERE run_id = {{r:String}} AND strategy = '{strategy}') AS o
        JOIN (SELECT * FROM signals FINAL WHERE run_id = {{r:String}} AND strategy = '{strategy}') AS s
          ON s.symbol = o.symbol AND s.bar_end = o.ts_event
        JOIN (SELECT * FROM features FINAL WHERE run_id = {{r:String}}) AS f
          ON f.symbol = o.symbol AND f.bar_end = o.ts_event
        ORDER BY t, o.symbol""")


def test_mean_reversion_sells_after_rises_and_buys_after_falls(traded):
    orders = orders_with_features(traded, "mean_reversion", "ret_5")
    opened_short = [ret for _, _, side, w, ret in orders if side == "sell" and w < 0]
    opened_long = [ret for _, _, side, w, ret in orders if side == "buy" and w > 0]
    closed = [ret for _, _, _, w, ret in orders if w == 0.0]
    assert len(opened_short) > 5 and len(opened_long) > 5 and closed
    assert all(ret * 1e4 >= ENTRY_BPS for ret in opened_short), "a short opened without a rise to fade"
    assert all(ret * 1e4 <= -ENTRY_BPS for ret in opened_long), "a long opened without a fall to fade"
    assert all(math.isnan(ret) or abs(ret) * 1e4 < ENTRY_BPS for ret in closed)


def test_momentum_buys_the_best_and_sells_the_worst_of_each_bar(traded):
    returns: dict[int, dict[str, float]] = defaultdict(dict)
    for symbol, t, ret in rows(traded, "SELECT symbol, toUnixTimestamp64Nano(bar_end), ret_15 FROM features FINAL "
                                       "WHERE run_id = {r:String}"):
        returns[t][symbol] = ret
    orders = orders_with_features(traded, "momentum", "ret_15")
    longs = [(t, s) for s, t, side, w, _ in orders if side == "buy" and w > 0]
    shorts = [(t, s) for s, t, side, w, _ in orders if side == "sell" and w < 0]
    assert len(longs) > 5 and len(shorts) > 5
    for t, symbol in longs:
        assert returns[t][symbol] == max(r for r in returns[t].values() if not math.isnan(r)) > 0
    for t, symbol in shorts:
        assert returns[t][symbol] == min(r for r in returns[t].values() if not math.isnan(r)) < 0


def test_each_strategy_is_sized_against_its_half_of_the_capital(traded):
    """Target weight x half the portfolio capital, capped per name at 4% of that half: no order of
    either strategy makes a position worth more than 4% of 500,000 (plus one share)."""
    biggest = rows(traded, """
        SELECT strategy, max(abs(quantity) * mark_price) FROM positions FINAL
        WHERE run_id = {r:String} GROUP BY strategy ORDER BY strategy""")
    assert [s for s, _ in biggest] == ["momentum", "mean_reversion"][::-1]
    for _, value in biggest:
        assert 10_000 < value <= 0.04 * 500_000 * 1.02


def test_pnl_is_reported_by_strategy_against_each_ones_capital_and_sums_to_the_account(traded):
    last = dict(rows(traded, """
        SELECT strategy, argMax(realized_pnl + unrealized_pnl - fees, (ts_event, id)) FROM pnl FINAL
        WHERE run_id = {r:String} GROUP BY strategy"""))
    equity = dict(rows(traded, """
        SELECT strategy, argMax(equity - (realized_pnl + unrealized_pnl - fees), (ts_event, id)) FROM pnl FINAL
        WHERE run_id = {r:String} GROUP BY strategy"""))
    assert set(last) == {"*", "mean_reversion", "momentum"}
    assert equity == pytest.approx({"*": 1_000_000.0, "mean_reversion": 500_000.0, "momentum": 500_000.0})
    assert last["*"] == pytest.approx(last["mean_reversion"] + last["momentum"], abs=1e-6)


def test_two_identical_runs_trade_identically(traded):
    for table in MONEY_TABLES:
        a, b = table_content(traded, table, "plug-a"), table_content(traded, table, "plug-b")
        assert a == b, table
        assert a or table == "orders_rejected", f"{table} is empty"


def test_a_plug_ins_state_goes_into_the_recovery_snapshot_so_a_resumed_run_trades_as_an_uninterrupted_one(
        module_warehouse, tmp_path):
    specs = ("tests.integration.stateful_strategy:Flipper=0.5", f"{MR}=0.5")

    def config(feed):
        base = TradingConfig.from_settings(Settings(), feed_universe(feed), feed_market_streams(feed))
        return base.with_strategies(specs)

    feed = synthetic()
    run_embedded(module_warehouse, feed, "flip-a", trading=config(feed))
    recovery = tmp_path / "recovery"
    feed = synthetic()
    run_embedded(module_warehouse, feed, "flip-r", trading=config(feed), max_ticks=TICKS // 2 + 321,
                 recovery_dir=recovery)
    feed = synthetic()
    run_embedded(module_warehouse, feed, "flip-r", trading=config(feed), recovery_dir=recovery)
    flips = rows(module_warehouse, "SELECT count() FROM orders_intent FINAL WHERE run_id = {r:String} "
                                   "AND strategy = 'flipper' AND abs(quantity) > 50", "flip-a")[0][0]
    assert flips > 10  # whole-book flips, not rounding-sized resizes
    for table in ("signals",) + MONEY_TABLES:
        assert table_content(module_warehouse, table, "flip-r") == table_content(module_warehouse, table, "flip-a"), table
