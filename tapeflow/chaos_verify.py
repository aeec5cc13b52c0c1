"""What a chaos run must prove: the warehouse after kills equals an undisturbed run, row for row.

``verify_run(wh, reference, run)`` returns the problems found (an empty list means none):

1. **Every table equal row for row**: the rows of each table (deduplicated with FINAL where the
   table is a ReplacingMergeTree), without the wall-clock columns (``ts_ingest``,
   ``ts_tick_ingest``, ``ts_written``, ``run_id``), in id order, equal the reference run's. The
   append-only tick tables (``md_trades``, ``md_quotes``: MergeTree) are compared with every copy
   of a row: a stage that resumes from its snapshot produces the ticks since that snapshot again,
   and the warehouse writer must drop them (:mod:`sinks.landed`). :func:`landed_twice` counts tick
   rows held more than once; any is a failure.
2. **No id duplicated**: one order per ``client_order_id``, one fill per ``fill_id`` (a restart
   that re-sends an order under a new id, or books a fill twice, shows here even when the rows
   differ in nothing else).
3. **The ledger equals an independent recomputation from the fills**, per strategy, in SQL and not
   through the ledger's code: the final quantity of each position is the signed sum of its fills;
   fees are the sum of the fills' fees; realized + unrealized P&L of the last snapshot equals the
   cash the fills moved (``-sum(signed qty * price)``) plus the final positions marked at their last
   mark.
"""

from __future__ import annotations

WALL_CLOCK_COLUMNS = ("ts_ingest", "ts_tick_ingest", "ts_written", "run_id")
MARKET_TABLES = ("md_trades", "md_quotes", "md_bars", "features", "signals", "dlq")
MONEY_TABLES = ("orders_intent", "orders_approved", "orders_rejected", "exec_reports", "positions", "pnl")
TOLERANCE = 1e-6  # currency units: sums of floats in another order


def table_rows(wh, table: str, run_id: str) -> list[tuple]:
    columns = [c for c in wh.query(f"SELECT * FROM {table} LIMIT 0").column_names if c not in WALL_CLOCK_COLUMNS]
    final = "FINAL" if "Replacing" in wh.tables()[table] else ""
    return list(wh.query(f"SELECT {', '.join(columns)} FROM {table} {final} WHERE run_id = {{r:String}} "
                         f"ORDER BY {', '.join(columns)}", {"r": run_id}).rows)


TICK_TABLES = ("md_trades", "md_quotes")


def landed_twice(wh, run_id: str) -> dict[str, int]:
    """Rows of the append-only tick tables held more than once (a resumed stage re-produced them and
    the writer did not drop them)."""
    counts = {}
    for table in TICK_TABLES:
        rows, unique = wh.query(f"SELECT count(), uniqExact(id) FROM {table} WHERE run_id = {{r:String}}",
                                {"r": run_id}).rows[0]
        counts[table] = int(rows - unique)
    return counts


def table_differences(wh, reference: str, run_id: str, tables=MARKET_TABLES + MONEY_TABLES) -> list[str]:
    problems = []
    for table in tables:
        want, got = table_rows(wh, table, reference), table_rows(wh, table, run_id)
        if want != got:
            missing = len(set(want) - set(got))
            extra = len(set(got) - set(want))
            problems.append(f"{table}: {len(got)} rows vs {len(want)} in {reference} "
                            f"({missing} missing, {extra} not in the reference, "
                            f"{len(got) - len(set(got))} held twice)")
    return problems


def doubled_ticks(wh, run_id: str) -> list[str]:
    return [f"{table}: {n} tick rows held twice (produced again after a restart and landed again)"
            for table, n in landed_twice(wh, run_id).items() if n]


def duplicate_ids(wh, run_id: str) -> list[str]:
    problems = []
    for table, key in (("orders_intent FINAL", "client_order_id"), ("fills", "fill_id")):
        rows, unique = wh.query(f"SELECT count(), uniqExact({key}) FROM {table} WHERE run_id = {{r:String}}",
                                {"r": run_id}).rows[0]
        if rows != unique:
            problems.append(f"{table.split()[0]}: {rows - unique} duplicated {key}(s) among {rows}")
    return problems


RECOMPUTED = """
SELECT f.strategy, f.symbol, f.qty, f.cash, f.fees, p.quantity, p.mark_price
FROM (
    SELECT strategy, symbol, sum(if(side = 'buy', last_qty, -last_qty)) AS qty,
           -sum(if(side = 'buy', last_qty, -last_qty) * last_price) AS cash, sum(fee) AS fees
    FROM fills WHERE run_id = {r:String} GROUP BY strategy, symbol
) AS f
LEFT JOIN (
    SELECT strategy, symbol, argMax(quantity, (ts_event, id)) AS quantity, argMax(mark_price, (ts_event, id)) AS mark_price
    FROM positions FINAL WHERE run_id = {r:String} GROUP BY strategy, symbol
) AS p USING (strategy, symbol)
ORDER BY f.strategy, f.symbol
"""

LAST_PNL = """
SELECT strategy, argMax(realized_pnl + unrealized_pnl, (ts_event, id)), argMax(fees, (ts_event, id))
FROM pnl FINAL WHERE run_id = {r:String} AND strategy != '*' GROUP BY strategy
"""


def ledger_differences(wh, run_id: str) -> list[str]:
    problems = []
    by_strategy: dict[str, list[float]] = {}
    for strategy, symbol, qty, cash, fees, booked_qty, mark in wh.query(RECOMPUTED, {"r": run_id}).rows:
        if abs(qty - (booked_qty or 0.0)) > 1e-9:
            problems.append(f"position {strategy}/{symbol}: fills sum to {qty:g}, the ledger holds {booked_qty:g}")
        totals = by_strategy.setdefault(strategy, [0.0, 0.0])
        totals[0] += cash + qty * (mark or 0.0)
        totals[1] += fees
    for strategy, pnl, fees in wh.query(LAST_PNL, {"r": run_id}).rows:
        recomputed_pnl, recomputed_fees = by_strategy.get(strategy, [0.0, 0.0])
        if abs(pnl - recomputed_pnl) > TOLERANCE * max(1.0, abs(pnl)):
            problems.append(f"P&L {strategy}: ledger {pnl:.6f}, recomputed from fills {recomputed_pnl:.6f}")
        if abs(fees - recomputed_fees) > TOLERANCE * max(1.0, abs(fees)):
            problems.append(f"fees {strategy}: ledger {fees:.6f}, fills {recomputed_fees:.6f}")
    return problems


def verify_run(wh, reference: str, run_id: str, tables=MARKET_TABLES + MONEY_TABLES) -> list[str]:
    return (table_differences(wh, reference, run_id, tables) + doubled_ticks(wh, run_id) + duplicate_ids(wh, run_id)
            + ledger_differences(wh, run_id))
