"""The embedded pipeline trades: acceptance of the trading half against the real engine."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from feeds import make_feed
from tests.integration.embedded_runs import run_embedded, table_content

pytestmark = pytest.mark.integration

TICKS = 60_000
MONEY_TABLES = ("orders_intent", "orders_approved", "orders_rejected", "exec_reports", "positions", "pnl")


def synthetic(seed: int = 5, max_ticks: int = TICKS):
    # 400 ticks/s of event time over 8 symbols: 150 s of tape, ~115 traded bars after warm-up
    return make_feed("synthetic", seed=seed, ticks_per_second=400, max_ticks=max_ticks)


@pytest.fixture(scope="module")
def traded(module_warehouse, tmp_path_factory):
    control = tmp_path_factory.mktemp("control") / "control.jsonl"
    from config.control_channel import ControlChannel

    run_embedded(module_warehouse, synthetic(), "trade-a", trading=True, control=ControlChannel(control))
    return module_warehouse


def q(wh, sql: str, run_id: str):
    return wh.query(sql, {"r": run_id}).rows


def test_embedded_run_when_trading_then_orders_fills_and_pnl_landed(traded):
    (orders, fills, pnl), = q(traded, "SELECT (SELECT count() FROM orders_intent FINAL WHERE run_id = {r:String}), "
                                      "(SELECT count() FROM fills WHERE run_id = {r:String}), "
                                      "(SELECT count() FROM pnl FINAL WHERE run_id = {r:String})", "trade-a")
    assert orders > 20 and fills >= orders // 2 and pnl > fills


def test_every_fill_belongs_to_an_approved_order(traded):
    orphans = q(traded, "SELECT count() FROM fills WHERE run_id = {r:String} AND client_order_id NOT IN "
                        "(SELECT client_order_id FROM orders_approved FINAL WHERE run_id = {r:String})", "trade-a")
    assert orphans == [(0,)]


def test_no_order_is_both_approved_and_rejected(traded):
    both = q(traded, "SELECT count() FROM orders_approved FINAL WHERE run_id = {r:String} AND client_order_id IN "
                     "(SELECT order_client_order_id FROM orders_rejected FINAL WHERE run_id = {r:String})", "trade-a")
    intents = q(traded, "SELECT count() FROM orders_intent FINAL WHERE run_id = {r:String}", "trade-a")[0][0]
    decided = q(traded, "SELECT (SELECT count() FROM orders_approved FINAL WHERE run_id = {r:String}) + "
                        "(SELECT count() FROM orders_rejected FINAL WHERE run_id = {r:String})", "trade-a")[0][0]
    assert both == [(0,)] and decided == intents


def test_positions_in_the_warehouse_equal_the_sum_of_fills_per_strategy_and_symbol(traded):
    fills = dict(((s, y), round(v, 9)) for s, y, v in q(
        traded, "SELECT strategy, symbol, sum(if(side = 'buy', last_qty, -last_qty)) FROM fills "
                "WHERE run_id = {r:String} GROUP BY strategy, symbol", "trade-a"))
    positions = dict(((s, y), round(v, 9)) for s, y, v in q(
        traded, "SELECT strategy, symbol, argMax(quantity, (ts_event, ts_ingest)) FROM positions FINAL "
                "WHERE run_id = {r:String} GROUP BY strategy, symbol", "trade-a"))
    assert fills and positions == fills


def test_pnl_recomputed_from_fills_and_last_trades_equals_the_pnl_table(traded):
    """Independent of the ledger: cash flows of the fills marked to the last trade before the final
    snapshot (or the average cost when a symbol has not traded since)."""
    fills = q(traded, "SELECT symbol, side, last_qty, last_price, fee, toUnixTimestamp64Nano(ts_event) FROM fills "
                      "WHERE run_id = {r:String} ORDER BY ts_event, id", "trade-a")
    (final,) = q(traded, "SELECT toUnixTimestamp64Nano(ts_event), realized_pnl + unrealized_pnl - fees, fees, equity "
                         "FROM pnl FINAL WHERE run_id = {r:String} AND strategy = '*' "
                         "ORDER BY ts_event DESC, ts_ingest DESC LIMIT 1", "trade-a")
    final_ts, table_pnl, table_fees, equity = final
    qty, cash, fees = defaultdict(float), 0.0, 0.0
    for symbol, side, last_qty, price, fee, ts in fills:
        if ts > final_ts:
            continue
        signed = last_qty if side == "buy" else -last_qty
        qty[symbol] += signed
        cash -= signed * price
        fees += fee
    marks = dict(q(traded, "SELECT symbol, argMax(price, (ts_event, id)) FROM md_trades WHERE run_id = {r:String} "
                           f"AND toUnixTimestamp64Nano(ts_event) <= {final_ts} GROUP BY symbol", "trade-a"))
    value = sum(n * marks[s] for s, n in qty.items())
    recomputed = cash + value - fees
    assert math.isclose(fees, table_fees, abs_tol=1e-6)
    assert abs(recomputed - table_pnl) <= 1e-6, (recomputed, table_pnl)
    assert abs(equity - (1_000_000.0 + table_pnl)) <= 1e-6


def test_two_runs_with_the_same_seed_then_identical_orders_fills_and_pnl(traded, tmp_path):
    from config.control_channel import ControlChannel

    run_embedded(traded, synthetic(), "trade-b", trading=True, control=ControlChannel(tmp_path / "c.jsonl"))
    for table in ("signals", *MONEY_TABLES):
        first = table_content(traded, table, "trade-a")
        assert first == table_content(traded, table, "trade-b"), table
        if table != "orders_rejected":
            assert first, f"{table} is empty: the comparison would prove nothing"


def test_trading_run_when_stopped_and_resumed_then_no_duplicate_or_missing_orders_and_same_pnl(traded, tmp_path):
    from config.control_channel import ControlChannel

    recovery = tmp_path / "recovery"
    control = ControlChannel(tmp_path / "c.jsonl")
    run_embedded(traded, synthetic(), "trade-r", trading=True, control=control, max_ticks=TICKS // 2 + 123,
                 recovery_dir=recovery)
    half = q(traded, "SELECT count() FROM orders_intent WHERE run_id = {r:String}", "trade-r")[0][0]
    run_embedded(traded, synthetic(), "trade-r", trading=True, control=control, recovery_dir=recovery)
    assert 0 < half
    for table in MONEY_TABLES:
        rows, unique = q(traded, f"SELECT count(), uniqExact(id) FROM {table} FINAL WHERE run_id = {{r:String}}", "trade-r")[0]
        assert rows == unique
        assert table_content(traded, table, "trade-r") == table_content(traded, table, "trade-a"), table
