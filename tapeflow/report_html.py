"""``tapeflow report --html out.html``: one run's report as a page to look at, with PNG charts beside it.

Everything comes from the warehouse tables (deduplicated with FINAL), like the text summary. The
page is a standalone Bokeh document with its JavaScript inline, so it opens from a file with no
network; the PNGs are drawn by matplotlib (Agg, no display) into ``<name>_charts/`` next to it:
``equity.png``, ``drawdown.png``, ``pnl_by_symbol.png``, ``latency.png``.

What it shows: the statistics of :mod:`trading.run_statistics` (ratios per period, the period
named, annualized only for runs long enough to stand for a year), equity and drawdown curves of
the account and of each strategy, P&L by strategy and by symbol, turnover (filled notional over
starting equity), fees, fill rate (approved orders with at least one fill over approved orders),
and the tick -> order and tick -> fill latency histograms.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trading.run_statistics import RunStatistics, format_span, run_statistics


@dataclass
class RunReport:
    run_id: str
    stats: RunStatistics | None
    account_curve: list[tuple[int, float]]  # (ts_event_ns, equity)
    strategy_curves: dict[str, list[tuple[int, float]]]
    pnl_by_strategy: list[tuple[str, float, float, float, float]]  # strategy, realized, unrealized, fees, net
    pnl_by_symbol: list[tuple[str, str, float, float, float, float]]  # strategy, symbol, realized, unrealized, fees, net
    orders: int = 0
    approved: int = 0
    rejected: int = 0
    fills: int = 0
    filled_orders: int = 0
    filled_notional: float = 0.0
    fees: float = 0.0
    tick_to_order_us: np.ndarray = field(default_factory=lambda: np.empty(0))
    tick_to_fill_us: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def starting_equity(self) -> float:
        return self.account_curve[0][1] if self.account_curve else 0.0

    @property
    def turnover(self) -> float:
        return self.filled_notional / self.starting_equity if self.starting_equity > 0 else 0.0

    @property
    def fill_rate(self) -> float:
        return self.filled_orders / self.approved if self.approved else 0.0


def _rows(wh, sql: str, run_id: str) -> list[tuple]:
    return list(wh.query(sql, {"run_id": run_id}).rows)


def _latencies_us(wh, table: str, run_id: str) -> np.ndarray:
    rows = _rows(wh, "SELECT (toUnixTimestamp64Nano(ts_ingest) - toUnixTimestamp64Nano(ts_tick_ingest)) / 1000 "
                     f"FROM {table} WHERE run_id = {{run_id:String}}", run_id)
    return np.array([float(r[0]) for r in rows], dtype=np.float64)


def gather_report(wh, run_id: str) -> RunReport:
    curves: dict[str, list[tuple[int, float]]] = {}
    for strategy, ts, equity in _rows(
            wh, "SELECT strategy, toUnixTimestamp64Nano(ts_event), equity FROM pnl FINAL "
                "WHERE run_id = {run_id:String} ORDER BY strategy, ts_event, ts_ingest", run_id):
        curves.setdefault(strategy, []).append((int(ts), float(equity)))
    account = curves.pop("*", [])
    by_strategy = [tuple(r) for r in _rows(
        wh, "SELECT strategy, argMax(realized_pnl, (ts_event, ts_ingest)), argMax(unrealized_pnl, (ts_event, ts_ingest)), "
            "argMax(fees, (ts_event, ts_ingest)) FROM pnl FINAL WHERE run_id = {run_id:String} AND strategy != '*' "
            "GROUP BY strategy ORDER BY strategy", run_id)]
    by_symbol = [tuple(r) for r in _rows(
        wh, "SELECT strategy, symbol, argMax(realized_pnl, (ts_event, ts_ingest)), "
            "argMax(unrealized_pnl, (ts_event, ts_ingest)), argMax(fees, (ts_event, ts_ingest)) FROM positions FINAL "
            "WHERE run_id = {run_id:String} GROUP BY strategy, symbol ORDER BY strategy, symbol", run_id)]
    counts = {table: int(_rows(wh, f"SELECT count() FROM {table} FINAL WHERE run_id = {{run_id:String}}", run_id)[0][0])
              for table in ("orders_intent", "orders_approved", "orders_rejected")}
    (fills,) = _rows(wh, "SELECT count(), uniqExact(client_order_id), sum(last_qty * last_price), sum(fee) FROM fills "
                         "WHERE run_id = {run_id:String}", run_id)
    return RunReport(
        run_id=run_id,
        stats=run_statistics(account),
        account_curve=account,
        strategy_curves=curves,
        pnl_by_strategy=[(s, float(r), float(u), float(f), float(r) + float(u) - float(f)) for s, r, u, f in by_strategy],
        pnl_by_symbol=[(s, sym, float(r), float(u), float(f), float(r) + float(u) - float(f))
                       for s, sym, r, u, f in by_symbol],
        orders=counts["orders_intent"], approved=counts["orders_approved"], rejected=counts["orders_rejected"],
        fills=int(fills[0]), filled_orders=int(fills[1]), filled_notional=float(fills[2] or 0.0),
        fees=float(fills[3] or 0.0),
        tick_to_order_us=_latencies_us(wh, "orders_intent FINAL", run_id),
        tick_to_fill_us=_latencies_us(wh, "fills", run_id),
    )


def drawdown_curve(curve: list[tuple[int, float]]) -> np.ndarray:
    """Fraction below the running peak at each sample (0.02 = 2% under the peak)."""
    equity = np.array([e for _, e in curve], dtype=np.float64)
    if equity.size == 0:
        return equity
    peaks = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peaks > 0, (peaks - equity) / peaks, 0.0)


def _times(curve: list[tuple[int, float]]) -> np.ndarray:
    return np.array([t for t, _ in curve], dtype="datetime64[ns]")


def exact_quantile(values: np.ndarray, level: float) -> float:
    """The sorted value at index floor(level * n): ClickHouse's quantileExact, so the page and the
    text summary print the same figures."""
    ordered = np.sort(values)
    return float(ordered[min(len(ordered) - 1, int(level * len(ordered)))])


def _percentiles(values: np.ndarray) -> str:
    if values.size == 0:
        return "none"
    p50, p99 = exact_quantile(values, 0.5), exact_quantile(values, 0.99)
    return f"p50 {p50:,.0f} us, p99 {p99:,.0f} us, max {values.max():,.0f} us ({values.size:,})"


def summary_rows(report: RunReport) -> list[tuple[str, str]]:
    s = report.stats
    rows = [("run", report.run_id)]
    if s is not None:
        rows += [
            ("tape", f"{format_span(s.span_ns)} of event time"),
            ("total return", f"{s.total_return:+.4%}"),
            (f"Sharpe (per {s.period_name} period)", f"{s.sharpe:.3f} over {s.periods:,} periods"),
            (f"Sortino (per {s.period_name} period)", f"{s.sortino:.3f}"),
            (f"volatility (per {s.period_name} period)", f"{s.volatility:.3e}"),
            ("annualized Sharpe", "not annualized: the run spans under 20 trading sessions"
             if s.sharpe_annualized is None else f"{s.sharpe_annualized:.2f} (252 sessions x 6.5 h)"),
            ("max drawdown", f"{s.max_drawdown:.4%}"),
        ]
    rows += [
        ("orders", f"{report.orders:,} (approved {report.approved:,}, rejected {report.rejected:,})"),
        ("fills", f"{report.fills:,}; fill rate {report.fill_rate:.1%} of approved orders"),
        ("turnover", f"{report.turnover:.3f}x starting equity ({report.filled_notional:,.2f} filled)"),
        ("fees", f"{report.fees:,.2f}"),
        ("tick -> order", _percentiles(report.tick_to_order_us)),
        ("tick -> fill", _percentiles(report.tick_to_fill_us)),
    ]
    return rows


def _html_table(columns: list[str], rows: list[tuple]) -> str:
    def cell(v) -> str:
        return f"{v:,.2f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table class='tf'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(report: RunReport, path: Path) -> Path:
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Div
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    style = ("<style>table.tf{border-collapse:collapse;font:13px sans-serif;margin:4px 0 12px}"
             "table.tf td,table.tf th{border:1px solid #ccc;padding:3px 8px;text-align:left}</style>")
    parts = [Div(text=style + f"<h1>tapeflow run {html.escape(report.run_id)}</h1>"
                 + _html_table(["statistic", "value"], summary_rows(report)), width=900)]
    equity = figure(title="equity", x_axis_type="datetime", width=900, height=300)
    drawdown = figure(title="drawdown (fraction below the running peak)", x_axis_type="datetime", width=900,
                      height=220, x_range=equity.x_range)
    scopes = [("account", report.account_curve)] + sorted(report.strategy_curves.items())
    for i, (name, curve) in enumerate(scopes):
        if not curve:
            continue
        color = Category10_10[i % 10]
        equity.line(_times(curve), [e for _, e in curve], legend_label=name, color=color)
        drawdown.line(_times(curve), drawdown_curve(curve), legend_label=name, color=color)
    parts += [equity, drawdown]
    parts.append(Div(text=style + "<h2>P&amp;L by strategy</h2>" + _html_table(
        ["strategy", "realized", "unrealized", "fees", "net"], report.pnl_by_strategy)
        + "<h2>P&amp;L by symbol</h2>" + _html_table(
        ["strategy", "symbol", "realized", "unrealized", "fees", "net"], report.pnl_by_symbol), width=900))
    if report.pnl_by_symbol:
        labels = [f"{s}/{sym}" for s, sym, *_ in report.pnl_by_symbol]
        by_symbol = figure(title="net P&L by symbol", x_range=labels, width=900, height=260)
        by_symbol.vbar(x=labels, top=[row[-1] for row in report.pnl_by_symbol], width=0.8)
        parts.append(by_symbol)
    for title, values in (("tick -> order latency (us)", report.tick_to_order_us),
                          ("tick -> fill latency (us)", report.tick_to_fill_us)):
        if values.size:
            counts, edges = np.histogram(values, bins=min(50, max(5, values.size // 5)))
            hist = figure(title=title, width=900, height=220)
            hist.quad(top=counts, bottom=0, left=edges[:-1], right=edges[1:])
            parts.append(hist)
    path.write_text(file_html(column(*parts), resources=INLINE, title=f"tapeflow run {report.run_id}"))
    return path


def write_pngs(report: RunReport, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    scopes = [("account", report.account_curve)] + sorted(report.strategy_curves.items())

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        written.append(folder / name)

    for name, title, values_of in (("equity.png", "equity", lambda c: [e for _, e in c]),
                                   ("drawdown.png", "drawdown (fraction below the running peak)", drawdown_curve)):
        fig, ax = plt.subplots(figsize=(9, 3))
        for scope, curve in scopes:
            if curve:
                ax.plot(_times(curve), values_of(curve), label=scope)
        ax.set_title(title)
        ax.legend(loc="best")
        save(fig, name)
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.bar([f"{s}/{sym}" for s, sym, *_ in report.pnl_by_symbol], [row[-1] for row in report.pnl_by_symbol])
    ax.set_title("net P&L by symbol")
    ax.tick_params(axis="x", labelrotation=45)
    save(fig, "pnl_by_symbol.png")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, title, values in ((axes[0], "tick -> order (us)", report.tick_to_order_us),
                              (axes[1], "tick -> fill (us)", report.tick_to_fill_us)):
        if values.size:
            ax.hist(values, bins=min(50, max(5, values.size // 5)))
        ax.set_title(title)
    save(fig, "latency.png")
    return written


def write_report(wh, run_id: str, html_path: Path) -> tuple[Path, list[Path]]:
    """The HTML page and its PNG charts (in ``<stem>_charts/`` beside it)."""
    report = gather_report(wh, run_id)
    page = write_html(report, html_path)
    return page, write_pngs(report, html_path.with_name(html_path.stem + "_charts"))
