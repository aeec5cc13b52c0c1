"""Summaries printed at the end of a run and by ``tapeflow report``, read from the warehouse."""

from __future__ import annotations

from typing import Any, Sequence

import typer


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in columns]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.6g}"
    return str(value)


MARKET_TABLES = ("md_raw", "md_trades", "md_quotes", "md_bars", "features", "dlq")


def market_counts(wh, run_id: str) -> dict[str, int]:
    counts = {}
    for table in MARKET_TABLES:
        _, rows = wh.query(f"SELECT count() FROM {table} WHERE run_id = {{run_id:String}}", {"run_id": run_id})
        counts[table] = int(rows[0][0])
    return counts


def print_market_summary(wh, run_id: str, progress) -> None:
    stats = progress.summary()
    counts = market_counts(wh, run_id)
    typer.echo(f"\nrun {run_id}: {stats['ticks']:,} ticks in {stats['elapsed_s']:.1f}s ({stats['ticks_per_s']:,.0f} ticks/s)")
    typer.echo(format_table(["table", "rows in warehouse"], sorted(counts.items())))
    _, dlq = wh.query(
        "SELECT stage, reason, count() FROM dlq WHERE run_id = {run_id:String} GROUP BY stage, reason ORDER BY stage, reason",
        {"run_id": run_id},
    )
    if dlq:
        typer.echo("\ndead letters by reason")
        typer.echo(format_table(["stage", "reason", "count"], dlq))
