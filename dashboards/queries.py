"""Every query the dashboard runs, in one place, so ``benchmarks/dashboard_queries.py`` can time each.

Rules all of them keep:
- Parameters are bound by the engine (``{run_id:String}``), never formatted into the SQL text, so
  a run id or a filter value with a quote in it is just a value.
- Money tables are ReplacingMergeTree: read with FINAL (or through the ``fills`` view, which does).
- Times for charts come back as epoch milliseconds (``t``), what a Bokeh datetime axis takes.
- Every query is bounded (a run id and, for lists, a LIMIT), so a refresh stays well under 100 ms
  on an hour of trading at 1,000 ticks/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from trading.risk_limits import default_limits
from trading.risk_limits import RiskLimits


@dataclass(frozen=True)
class Query:
    name: str
    page: str
    sql: str
    params: tuple[str, ...]  # every name the SQL binds: a missing one fails before the engine sees it


QUERIES: dict[str, Query] = {}


def _query(name: str, page: str, sql: str, *params: str) -> Query:
    query = Query(name, page, sql, ("run_id", *params) if "{run_id:String}" in sql else params)
    QUERIES[name] = query
    return query


def fetch(warehouse: Any, name: str, **params: Any) -> pl.DataFrame:
    """Run the registered query ``name`` with its parameters bound by the engine."""
    query = QUERIES[name]
    missing = [p for p in query.params if p not in params]
    if missing:
        raise TypeError(f"dashboard query {name!r} needs parameters {', '.join(missing)}")
    return warehouse.query_df(query.sql, {p: params[p] for p in query.params})


def fetch_one(warehouse: Any, name: str, **params: Any) -> dict[str, Any]:
    """The single row of a one-row query as a dict (empty when the run has no rows yet)."""
    frame = fetch(warehouse, name, **params)
    return frame.row(0, named=True) if frame.height else {}


# ---------------------------------------------------------------------------------------- runs

_query("runs", "app", """
SELECT run_id, max(ts_written) AS last_write, min(bar_start) AS first_bar, max(bar_end) AS last_bar
FROM md_bars
WHERE interval = '1s'
GROUP BY run_id
ORDER BY last_write DESC
LIMIT 50
""")

# ---------------------------------------------------------------------------------------- desk

# One row: the latest account P&L snapshot, order and fill counts. No FINAL: argMax is the same
# whatever duplicates a retried insert left, and counts are of distinct ids, so no merge-on-read
# is needed (FINAL over the many small parts of a live run costs several times more).
_query("desk_figures", "desk", """
SELECT p.*, o.orders, o.cancels, a.approved, r.rejected, f.fills, f.filled_notional, x.filled_orders
FROM (
    SELECT uniqExact(id) AS snapshots,
           argMax(equity, (ts_event, ts_ingest)) AS equity,
           argMax(realized_pnl, (ts_event, ts_ingest)) AS realized,
           argMax(unrealized_pnl, (ts_event, ts_ingest)) AS unrealized,
           argMax(fees, (ts_event, ts_ingest)) AS fees,
           argMax(drawdown, (ts_event, ts_ingest)) AS current_drawdown,
           max(drawdown) AS max_drawdown,
           argMax(peak_equity, (ts_event, ts_ingest)) AS peak_equity,
           argMax(gross_exposure, (ts_event, ts_ingest)) AS gross_exposure,
           argMax(net_exposure, (ts_event, ts_ingest)) AS net_exposure,
           toUnixTimestamp64Milli(max(ts_event)) AS last_event
    FROM pnl WHERE run_id = {run_id:String} AND strategy = '*'
) AS p
CROSS JOIN (
    SELECT uniqExactIf(id, action = 'new') AS orders, uniqExactIf(id, action = 'cancel') AS cancels
    FROM orders_intent WHERE run_id = {run_id:String}
) AS o
CROSS JOIN (SELECT uniqExact(id) AS approved FROM orders_approved WHERE run_id = {run_id:String}) AS a
CROSS JOIN (SELECT uniqExact(id) AS rejected FROM orders_rejected WHERE run_id = {run_id:String}) AS r
CROSS JOIN (
    SELECT count() AS fills, sum(notional) AS filled_notional FROM (
        SELECT any(last_qty * last_price) AS notional
        FROM exec_reports WHERE run_id = {run_id:String} AND fill_id != '' GROUP BY id)
) AS f
CROSS JOIN (
    SELECT uniqExactIf(client_order_id, state = 'filled' AND reason != 'reconcile:adopt_position') AS filled_orders
    FROM exec_reports WHERE run_id = {run_id:String}
) AS x
""")

# The account equity curve after ``since_ms`` (exclusive): one point per millisecond of event time
# (the chart's resolution), the last snapshot in it. Streamed into the chart, so each refresh reads
# only the new points.
_query("equity_curve", "desk", """
SELECT toUnixTimestamp64Milli(ts_event) AS t,
       argMax(equity, (ts_event, ts_ingest)) AS equity,
       argMax(drawdown, (ts_event, ts_ingest)) AS drawdown,
       argMax(realized_pnl, (ts_event, ts_ingest)) AS realized,
       argMax(unrealized_pnl, (ts_event, ts_ingest)) AS unrealized,
       argMax(fees, (ts_event, ts_ingest)) AS fees
FROM pnl
WHERE run_id = {run_id:String} AND strategy = '*'
  AND ts_event >= fromUnixTimestamp64Milli({since_ms:Int64} + 1, 'UTC')
GROUP BY t
ORDER BY t
LIMIT 20000
""", "since_ms")

# Per strategy and symbol: the latest position (one snapshot per event time, so ts_event alone
# orders them; pnl has several per event time and breaks ties on ts_ingest), and today's P&L (UTC day of the run's latest
# event): the latest cumulative figures less those of the last snapshot before the day began.
_query("positions", "desk", """
WITH (SELECT toStartOfDay(max(ts_event)) FROM positions WHERE run_id = {run_id:String}) AS day_start
SELECT strategy, symbol,
       argMax(quantity, ts_event) AS quantity,
       argMax(avg_cost, ts_event) AS avg_cost,
       argMax(mark_price, ts_event) AS mark_price,
       argMax(market_value, ts_event) AS market_value,
       argMax(realized_pnl, ts_event)
           - argMaxIf(realized_pnl, ts_event, ts_event < day_start) AS realized_today,
       argMax(unrealized_pnl, ts_event)
           - argMaxIf(unrealized_pnl, ts_event, ts_event < day_start) AS unrealized_today,
       argMax(fees, ts_event)
           - argMaxIf(fees, ts_event, ts_event < day_start) AS fees_today
FROM positions
WHERE run_id = {run_id:String}
GROUP BY strategy, symbol
ORDER BY strategy, symbol
""")

# ------------------------------------------------------------------------------------- blotter

_FILTERS = """({strategy:String} = '' OR strategy = {strategy:String})
      AND ({symbol:String} = '' OR symbol = {symbol:String})"""

_query("orders", "blotter", f"""
SELECT toUnixTimestamp64Milli(o.ts_event) AS t, o.client_order_id AS client_order_id, o.action AS action,
       o.strategy AS strategy, o.symbol AS symbol, o.side AS side, o.order_type AS order_type,
       o.quantity AS quantity, o.limit_price AS limit_price,
       multiIf(r.n > 0, 'risk_rejected', e.state = '', 'pending', e.state) AS order_state,
       e.filled_qty AS cum_qty, e.fill_price AS avg_price, e.fills AS fills, e.fees AS fees, r.reasons AS reasons
FROM (
    SELECT * FROM orders_intent FINAL WHERE run_id = {{run_id:String}} AND {_FILTERS}
) AS o
LEFT JOIN (
    SELECT client_order_id,
           argMax(state, (ts_event, cum_qty, ts_ingest)) AS state,
           max(cum_qty) AS filled_qty,
           argMax(avg_price, (ts_event, cum_qty, ts_ingest)) AS fill_price,
           countIf(fill_id != '') AS fills,
           sum(fee) AS fees
    FROM exec_reports FINAL WHERE run_id = {{run_id:String}} AND {_FILTERS}
    GROUP BY client_order_id
) AS e ON e.client_order_id = o.client_order_id
LEFT JOIN (
    SELECT order_client_order_id AS client_order_id, arrayStringConcat(any(reasons), ', ') AS reasons, count() AS n
    FROM orders_rejected FINAL WHERE run_id = {{run_id:String}}
    GROUP BY client_order_id
) AS r ON r.client_order_id = o.client_order_id
WHERE {{state:String}} = '' OR order_state = {{state:String}}
ORDER BY o.ts_event DESC, o.client_order_id DESC
LIMIT {{limit:UInt32}}
""", "strategy", "symbol", "state", "limit")

_query("fills", "blotter", f"""
SELECT toUnixTimestamp64Milli(ts_event) AS t, fill_id, client_order_id, strategy, symbol, side, last_qty,
       last_price, last_qty * last_price AS notional, fee, state, leaves_qty
FROM fills
WHERE run_id = {{run_id:String}} AND {_FILTERS}
ORDER BY ts_event DESC, fill_id DESC
LIMIT {{limit:UInt32}}
""", "strategy", "symbol", "limit")

_query("rejects", "blotter", """
SELECT toUnixTimestamp64Milli(ts_event) AS t, order_client_order_id AS client_order_id, order_strategy AS strategy,
       order_symbol AS symbol, order_side AS side, order_quantity AS quantity,
       arrayStringConcat(reasons, ', ') AS reasons
FROM orders_rejected FINAL
WHERE run_id = {run_id:String}
  AND ({strategy:String} = '' OR order_strategy = {strategy:String})
  AND ({symbol:String} = '' OR order_symbol = {symbol:String})
ORDER BY ts_event DESC, id DESC
LIMIT {limit:UInt32}
""", "strategy", "symbol", "limit")

_query("reject_reasons", "blotter", """
SELECT reason, count() AS orders
FROM (SELECT arrayJoin(reasons) AS reason FROM orders_rejected FINAL WHERE run_id = {run_id:String})
GROUP BY reason
ORDER BY orders DESC, reason
""")

# The choices of the filters: every symbol of the tape, every strategy that signalled.
_query("universe", "app", """
SELECT kind, value FROM (
    SELECT 'symbol' AS kind, symbol AS value FROM md_bars WHERE run_id = {run_id:String} AND interval = '1s'
    GROUP BY symbol
    UNION ALL
    SELECT 'strategy' AS kind, strategy AS value FROM signals WHERE run_id = {run_id:String} GROUP BY strategy
)
ORDER BY kind, value
""")

# -------------------------------------------------------------------------------------- market

_query("candles_1s", "market", """
SELECT * FROM (
    SELECT toUnixTimestamp64Milli(bar_start) AS t, open, high, low, close, volume, vwap, trade_count
    FROM md_bars FINAL
    WHERE run_id = {run_id:String} AND symbol = {symbol:String} AND interval = '1s'
    ORDER BY bar_start DESC
    LIMIT {limit:UInt32}
) ORDER BY t
""", "symbol", "limit")

_query("candles_1m", "market", """
SELECT * FROM (
    SELECT toUnixTimestamp64Milli(minute) AS t, open, high, low, close, volume, vwap, trade_count
    FROM ohlcv_1m
    WHERE run_id = {run_id:String} AND symbol = {symbol:String}
    ORDER BY minute DESC
    LIMIT {limit:UInt32}
) ORDER BY t
""", "symbol", "limit")

_query("symbol_signals", "market", """
SELECT toUnixTimestamp64Milli(bar_end) AS t, strategy, model_version, score, target_weight
FROM signals FINAL
WHERE run_id = {run_id:String} AND symbol = {symbol:String}
  AND bar_end >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')
ORDER BY bar_end
LIMIT 20000
""", "symbol", "since_ms")

_query("symbol_fills", "market", """
SELECT toUnixTimestamp64Milli(ts_event) AS t, strategy, side, last_qty, last_price, fee
FROM fills
WHERE run_id = {run_id:String} AND symbol = {symbol:String}
  AND ts_event >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')
ORDER BY ts_event
LIMIT 20000
""", "symbol", "since_ms")

# ---------------------------------------------------------------------------------------- risk

# Operator limit changes the desk applied: a set_limit it refused has an alert with its id.
_query("limit_changes", "risk", """
SELECT name, argMax(value, ts_event) AS value, argMax(issued_by, ts_event) AS issued_by,
       toUnixTimestamp64Milli(max(ts_event)) AS t
FROM control
WHERE run_id = {run_id:String} AND kind = 'set_limit' AND target IN ('global', {account:String})
  AND concat('risk:', {account:String}, ':alert:', id) NOT IN (
      SELECT id FROM control WHERE run_id = {run_id:String} AND kind = 'alert')
GROUP BY name
""", "account")

_query("trading_state", "risk", """
SELECT kind, target, argMax(name, ts_event) AS name, argMax(value, ts_event) AS value,
       argMax(issued_by, ts_event) AS issued_by, argMax(detail, ts_event) AS detail,
       toUnixTimestamp64Milli(max(ts_event)) AS t
FROM control
WHERE run_id = {run_id:String} AND kind IN ('kill_switch', 'trading_state')
GROUP BY kind, target
""")

# What each limit measures, now: the latest account snapshot, the largest position, working orders
# and the order rate over the last minute of event time.
_query("risk_usage", "risk", """
WITH (SELECT max(ts_event) FROM orders_approved WHERE run_id = {run_id:String}) AS last_order,
     (SELECT toStartOfDay(max(ts_event)) FROM pnl WHERE run_id = {run_id:String}) AS day_start
SELECT p.*, s.max_position_qty, s.max_position_notional, w.open_orders, m.*
FROM (
    SELECT argMax(equity, (ts_event, ts_ingest)) AS equity_now,
           argMax(drawdown, (ts_event, ts_ingest)) AS drawdown_now,
           argMax(gross_exposure, (ts_event, ts_ingest)) AS gross_notional,
           argMax(net_exposure, (ts_event, ts_ingest)) AS net_notional,
           argMinIf(equity, (ts_event, ts_ingest), ts_event >= day_start) AS day_start_equity
    FROM pnl WHERE run_id = {run_id:String} AND strategy = '*'
) AS p
CROSS JOIN (
    SELECT max(abs(qty)) AS max_position_qty, max(abs(value)) AS max_position_notional
    FROM (
        SELECT symbol, sum(q) AS qty, sum(v) AS value FROM (
            SELECT strategy, symbol, argMax(quantity, ts_event) AS q,
                   argMax(market_value, ts_event) AS v
            FROM positions WHERE run_id = {run_id:String} GROUP BY strategy, symbol)
        GROUP BY symbol)
) AS s
CROSS JOIN (
    SELECT countIf(state NOT IN ('filled', 'canceled', 'rejected')) AS open_orders FROM (
        SELECT client_order_id, argMax(state, (ts_event, cum_qty, ts_ingest)) AS state
        FROM exec_reports WHERE run_id = {run_id:String} GROUP BY client_order_id)
) AS w
CROSS JOIN (
    SELECT sum(per_second) AS orders_last_minute, max(per_second) AS max_orders_per_second,
           max(max_qty) AS max_order_qty
    FROM (
        SELECT toStartOfSecond(ts_event) AS second, uniqExact(id) AS per_second, max(quantity) AS max_qty
        FROM orders_approved
        WHERE run_id = {run_id:String} AND action = 'new' AND ts_event > last_order - INTERVAL 60 SECOND
        GROUP BY second)
) AS m
""")

_query("max_order_notional", "risk", """
WITH (SELECT max(ts_event) FROM exec_reports WHERE run_id = {run_id:String}) AS last_report
SELECT max(order_qty * avg_price) AS max_order_notional
FROM exec_reports
WHERE run_id = {run_id:String} AND avg_price > 0 AND ts_event > last_report - INTERVAL 60 SECOND
""")

_query("control_log", "risk", """
SELECT toUnixTimestamp64Milli(ts_event) AS t, kind, target, name, value, issued_by, detail
FROM control FINAL
WHERE run_id = {run_id:String}
ORDER BY ts_event DESC, id DESC
LIMIT {limit:UInt32}
""", "limit")

# -------------------------------------------------------------------------------------- system

_THROUGHPUT_TABLES = (
    "md_raw", "md_trades", "md_quotes", "md_bars", "features", "signals", "orders_intent", "orders_approved",
    "orders_rejected", "exec_reports", "positions", "pnl", "control", "dlq",
)

# Rows landed per table: in all, over the last minute of wall clock (ts_written), and the age of
# the newest row. One UNION ALL, so the page costs one round trip.
_query("throughput", "system", "\nUNION ALL\n".join(
    f"SELECT '{table}' AS table_name, count() AS rows_total, "
    "countIf(ts_written >= now64(6) - INTERVAL 60 SECOND) / 60 AS rows_per_s, "
    "toUnixTimestamp64Milli(max(ts_written)) AS last_write_ms, "
    "toUnixTimestamp64Milli(now64(3)) AS now_ms "
    f"FROM {table} WHERE run_id = {{run_id:String}}"
    for table in _THROUGHPUT_TABLES
))

_LATENCY_US = "(toUnixTimestamp64Nano(ts_ingest) - toUnixTimestamp64Nano(ts_tick_ingest)) / 1000"

# Log-spaced buckets (tenths of a decade of microseconds) of tick-to-order and tick-to-fill latency.
_query("latency_histogram", "system", f"""
SELECT path, round(log10(greatest(us, 1)), 1) AS log_us, count() AS n
FROM (
    SELECT 'tick_to_order' AS path, {_LATENCY_US} AS us FROM orders_intent FINAL WHERE run_id = {{run_id:String}}
    UNION ALL
    SELECT 'tick_to_fill' AS path, {_LATENCY_US} AS us FROM fills WHERE run_id = {{run_id:String}}
)
GROUP BY path, log_us
ORDER BY path, log_us
""")

_query("latency_summary", "system", f"""
SELECT path, count() AS n, quantileExact(0.5)(us) AS p50_us, quantileExact(0.99)(us) AS p99_us, max(us) AS max_us
FROM (
    SELECT 'tick_to_order' AS path, {_LATENCY_US} AS us FROM orders_intent FINAL WHERE run_id = {{run_id:String}}
    UNION ALL
    SELECT 'tick_to_fill' AS path, {_LATENCY_US} AS us FROM fills WHERE run_id = {{run_id:String}}
)
GROUP BY path
ORDER BY path
""")

_query("dlq_reasons", "system", """
SELECT stage, reason, count() AS records, toUnixTimestamp64Milli(max(ts_event)) AS last_t
FROM dlq FINAL
WHERE run_id = {run_id:String}
GROUP BY stage, reason
ORDER BY records DESC, stage, reason
""")

_query("model_versions", "system", """
SELECT strategy, strategy_version, argMax(model_version, bar_end) AS model_version, count() AS signals,
       toUnixTimestamp64Milli(max(bar_end)) AS last_t
FROM signals FINAL
WHERE run_id = {run_id:String}
GROUP BY strategy, strategy_version
ORDER BY strategy, strategy_version
""")


# ------------------------------------------------------------------------------ derived figures

def limits_in_force(changes: pl.DataFrame, base: RiskLimits | None = None) -> tuple[RiskLimits, dict[str, str]]:
    """The desk's limits (its defaults, unless ``base``) with the applied ``set_limit`` commands
    on top; also who changed each changed limit."""
    limits = base or default_limits()
    changed_by: dict[str, str] = {}
    for row in changes.iter_rows(named=True):
        try:
            limits = limits.with_limit(row["name"], row["value"])
        except ValueError:
            continue  # the desk refused it too (its alert may simply not have landed yet)
        changed_by[row["name"]] = row["issued_by"]
    return limits, changed_by


def limit_utilisation(usage: dict[str, Any], limits: RiskLimits, max_order_notional: float | None) -> list[dict]:
    """One row per limit: what it measures now, the limit, and the fraction used."""

    def num(key: str) -> float | None:
        value = usage.get(key)
        return None if value is None else float(value)

    equity, day_start = num("equity_now"), num("day_start_equity")
    daily_loss = max(0.0, day_start - equity) if equity is not None and day_start is not None else None
    net = num("net_notional")
    measured: dict[str, float | None] = {
        "max_order_qty": num("max_order_qty"),
        "max_order_notional": max_order_notional,
        "price_collar_pct": None,  # only limit orders are collared; the desk sends market orders
        "max_position_qty": num("max_position_qty"),
        "max_position_notional": num("max_position_notional"),
        "max_gross_notional": num("gross_notional"),
        "max_net_notional": abs(net) if net is not None else None,
        "max_open_orders": num("open_orders"),
        "max_orders_per_second": num("max_orders_per_second"),
        "max_orders_per_minute": num("orders_last_minute"),
        "daily_loss_limit": daily_loss,
        "max_drawdown_pct": num("drawdown_now"),
    }
    rows = []
    for name, current in measured.items():
        limit = float(getattr(limits, name))
        used = None if current is None or limit <= 0 else current / limit
        rows.append({"limit": name, "current": current, "value": limit, "used": used})
    return rows
