"""Summaries printed at the end of a run and by ``tapeflow report``, read from the warehouse.

Everything here is computed from the warehouse tables (deduplicated with FINAL), so the summary of
a finished run and ``tapeflow report --run-id`` of the same run print the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import typer

from trading.run_statistics import RunStatistics, run_statistics


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in columns]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.6g}"
    return str(value)


MARKET_TABLES = ("md_raw", "md_trades", "md_quotes", "md_bars", "features", "dlq")
TRADING_TABLES = ("signals", "orders_intent", "orders_approved", "orders_rejected", "exec_reports", "positions", "pnl")
REPLACING = {"md_bars", "features", "signals", *TRADING_TABLES}

def _rows(wh, sql: str, run_id: str) -> list[tuple]:
    return list(wh.query(sql, {"run_id": run_id}).rows)


def table_counts(wh, run_id: str, tables: Sequence[str]) -> dict[str, int]:
    counts = {}
    for table in tables:
        final = "FINAL" if table in REPLACING else ""
        counts[table] = int(_rows(wh, f"SELECT count() FROM {table} {final} WHERE run_id = {{run_id:String}}", run_id)[0][0])
    return counts


@dataclass
class TradingSummary:
    orders: int = 0
    approved: int = 0
    rejected: int = 0
    rejects_by_reason: list[tuple[str, int]] = field(default_factory=list)
    fills: int = 0
    filled_notional: float = 0.0
    positions: list[tuple] = field(default_factory=list)  # strategy, symbol, qty, avg_cost, mark, unrealized
    by_strategy: list[tuple] = field(default_factory=list)  # strategy, capital, realized, unrealized, fees, P&L, fills
    realized: float = 0.0
    unrealized: float = 0.0
    fees: float = 0.0
    equity: float = 0.0
    statistics: RunStatistics | None = None  # ratios per period, named (trading.run_statistics)
    tick_to_order_us: tuple[float, float, float] = (0.0, 0.0, 0.0)  # p50, p99, max
    tick_to_fill_us: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _latency(wh, table: str, run_id: str) -> tuple[float, float, float]:
    (row,) = _rows(
        wh,
        "SELECT quantileExact(0.5)(d), quantileExact(0.99)(d), max(d) FROM (SELECT "
        "(toUnixTimestamp64Nano(ts_ingest) - toUnixTimestamp64Nano(ts_tick_ingest)) / 1000 AS d "
        f"FROM {table} WHERE run_id = {{run_id:String}})",
        run_id,
    )
    return tuple(float(v or 0.0) for v in row)  # type: ignore[return-value]


def trading_summary(wh, run_id: str) -> TradingSummary:
    summary = TradingSummary()
    counts = table_counts(wh, run_id, ("orders_intent", "orders_approved", "orders_rejected"))
    summary.orders, summary.approved, summary.rejected = (
        counts["orders_intent"], counts["orders_approved"], counts["orders_rejected"])
    summary.rejects_by_reason = _rows(
        wh,
        "SELECT reason, count() FROM (SELECT arrayJoin(reasons) AS reason FROM orders_rejected FINAL "
        "WHERE run_id = {run_id:String}) GROUP BY reason ORDER BY count() DESC, reason",
        run_id,
    )
    (fills,) = _rows(wh, "SELECT count(), sum(last_qty * last_price) FROM fills WHERE run_id = {run_id:String}", run_id)
    summary.fills, summary.filled_notional = int(fills[0]), float(fills[1] or 0.0)
    summary.positions = _rows(
        wh,
        "SELECT strategy, symbol, argMax(quantity, (ts_event, ts_ingest)) AS qty, "
        "argMax(avg_cost, (ts_event, ts_ingest)), argMax(mark_price, (ts_event, ts_ingest)), "
        "argMax(unrealized_pnl, (ts_event, ts_ingest)) FROM positions FINAL WHERE run_id = {run_id:String} "
        "GROUP BY strategy, symbol HAVING qty != 0 ORDER BY strategy, symbol",
        run_id,
    )
    summary.by_strategy = _rows(
        wh,
        "SELECT p.strategy, p.cap, p.rz, p.unrz, p.fee, p.rz + p.unrz - p.fee, ifNull(f.n, 0) FROM (SELECT strategy, "
        "argMax(equity - realized_pnl - unrealized_pnl + fees, (ts_event, ts_ingest)) AS cap, "
        "argMax(realized_pnl, (ts_event, ts_ingest)) AS rz, argMax(unrealized_pnl, (ts_event, ts_ingest)) AS unrz, "
        "argMax(fees, (ts_event, ts_ingest)) AS fee FROM pnl FINAL WHERE run_id = {run_id:String} "
        "AND strategy != '*' GROUP BY strategy) AS p LEFT JOIN (SELECT strategy, count() AS n FROM fills "
        "WHERE run_id = {run_id:String} GROUP BY strategy) AS f ON f.strategy = p.strategy ORDER BY p.strategy",
        run_id,
    )
    curve = _rows(
        wh,
        "SELECT toUnixTimestamp64Nano(ts_event), equity, realized_pnl, unrealized_pnl, fees FROM pnl FINAL "
        "WHERE run_id = {run_id:String} AND strategy = '*' ORDER BY ts_event, ts_ingest",
        run_id,
    )
    if curve:
        _, summary.equity, summary.realized, summary.unrealized, summary.fees = curve[-1]
        summary.statistics = run_statistics([(int(ts), float(eq)) for ts, eq, *_ in curve])
    summary.tick_to_order_us = _latency(wh, "orders_intent FINAL", run_id)
    summary.tick_to_fill_us = _latency(wh, "fills", run_id)
    return summary


def print_trading_summary(summary: TradingSummary) -> None:
    s = summary
    typer.echo(
        f"\norders {s.orders:,} (approved {s.approved:,}, rejected {s.rejected:,}) | fills {s.fills:,} "
        f"(notional {s.filled_notional:,.2f})"
    )
    if s.rejects_by_reason:
        typer.echo(format_table(["reject reason", "orders"], s.rejects_by_reason))
    typer.echo(
        f"P&L: realized {s.realized:,.2f}  unrealized {s.unrealized:,.2f}  fees {s.fees:,.2f}  "
        f"equity {s.equity:,.2f}"
    )
    if s.statistics is not None:
        typer.echo(f"{s.statistics.describe()} | max drawdown {s.statistics.max_drawdown:.4%}")
    if len(s.by_strategy) > 1:
        typer.echo(format_table(["strategy", "capital", "realized", "unrealized", "fees", "P&L", "fills"],
                                s.by_strategy))
    if s.positions:
        typer.echo(format_table(["strategy", "symbol", "quantity", "avg cost", "mark", "unrealized"], s.positions))
    else:
        typer.echo("no open positions")
    o, f = s.tick_to_order_us, s.tick_to_fill_us
    typer.echo(
        f"latency tick->order p50 {o[0]:,.0f} us  p99 {o[1]:,.0f} us  max {o[2]:,.0f} us | "
        f"tick->fill p50 {f[0]:,.0f} us  p99 {f[1]:,.0f} us  max {f[2]:,.0f} us"
    )


def print_market_summary(wh, run_id: str, progress=None) -> None:
    if progress is not None:
        stats = progress.summary()
        typer.echo(f"\nrun {run_id}: {stats['ticks']:,} ticks in {stats['elapsed_s']:.1f}s ({stats['ticks_per_s']:,.0f} ticks/s)")
    else:
        typer.echo(f"\nrun {run_id}")
    counts = table_counts(wh, run_id, MARKET_TABLES + ("signals",))
    typer.echo(format_table(["table", "rows in warehouse"], sorted(counts.items())))
    dlq = _rows(
        wh,
        "SELECT stage, reason, count() FROM dlq WHERE run_id = {run_id:String} GROUP BY stage, reason ORDER BY stage, reason",
        run_id,
    )
    if dlq:
        typer.echo("\ndead letters by reason")
        typer.echo(format_table(["stage", "reason", "count"], dlq))


def print_run_report(wh, run_id: str, progress=None, trading: bool = True) -> None:
    print_market_summary(wh, run_id, progress)
    if trading:
        print_trading_summary(trading_summary(wh, run_id))
