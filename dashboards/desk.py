"""Desk: the account at a glance. Key figures, the equity curve and drawdown, today's P&L by
strategy and symbol, and the open positions with their market value and exposure."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool, NumberFormatter

from dashboards import style
from dashboards.context import DashboardContext
from dashboards.queries import fetch
from dashboards.snapshot import RunSnapshot

EQUITY_POINTS = 20_000  # a day of 1 s snapshots would be more: the chart keeps the latest


def _empty_curve() -> dict[str, list]:
    return {"t": [], "equity": [], "drawdown_pct": []}


class DeskPage:
    title = "Desk"

    def __init__(self, ctx: DashboardContext):
        self.ctx = ctx
        self.kpis = pn.pane.HTML(style.kpi_tiles([]), sizing_mode="stretch_width")
        self.curve = ColumnDataSource(_empty_curve())
        self._last_t = 0

        self.equity_fig = style.desk_figure(height=250, title="Equity (account)")
        self.equity_fig.line("t", "equity", source=self.curve, color=style.ACCENT, line_width=2)
        style.money_axis(self.equity_fig)
        self.equity_fig.select_one(HoverTool).tooltips = [("time", "@t{%H:%M:%S.%3N}"), ("equity", "@equity{0,0.00}")]
        self.equity_fig.select_one(HoverTool).formatters = {"@t": "datetime"}
        self.drawdown_fig = style.desk_figure(height=130, title="Drawdown from peak (%)", x_range=self.equity_fig.x_range)
        self.drawdown_fig.varea("t", y1=0, y2="drawdown_pct", source=self.curve, color=style.DOWN, alpha=0.45)
        self.drawdown_fig.select_one(HoverTool).tooltips = [("drawdown", "@drawdown_pct{0.000}%")]

        money = NumberFormatter(format="0,0.00", text_align="right")
        pnl_columns = ["strategy", "symbol", "realized", "unrealized", "fees", "total"]
        self.pnl_table = pn.widgets.Tabulator(
            pd.DataFrame(columns=pnl_columns),
            formatters={"realized": style.signed_money(), "unrealized": style.signed_money(), "fees": money,
                        "total": style.signed_money()},
            titles=style.titles(pnl_columns), height=300, **style.tabulator_options(),
        )
        position_columns = ["symbol", "strategy", "quantity", "avg_cost", "mark", "market_value", "exposure_pct"]
        self.positions_table = pn.widgets.Tabulator(
            pd.DataFrame(columns=position_columns),
            formatters={"quantity": style.signed_money(0), "avg_cost": money, "mark": money,
                        "market_value": style.signed_money(0),
                        "exposure_pct": NumberFormatter(format="0.00", text_align="right")},
            titles={**style.titles(position_columns), "exposure_pct": "Exposure % equity"},
            height=300, **style.tabulator_options(),
        )
        self.view = pn.Column(
            self.kpis,
            pn.Row(
                pn.Column(pn.pane.Bokeh(self.equity_fig), pn.pane.Bokeh(self.drawdown_fig), sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.Column(pn.pane.HTML(style.section("P&L today by strategy and symbol")), self.pnl_table,
                          sizing_mode="stretch_width"),
                pn.Column(pn.pane.HTML(style.section("Open positions")), self.positions_table,
                          sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    def reset(self) -> None:
        self.curve.data = _empty_curve()
        self._last_t = 0

    def refresh(self, run_id: str, snap: RunSnapshot) -> None:
        self.kpis.object = style.kpi_tiles(key_figures(snap.figures))
        wh = self.ctx.warehouse
        new = fetch(wh, "equity_curve", run_id=run_id, since_ms=self._last_t)
        if new.height:
            self.curve.stream(
                {"t": new["t"].to_list(), "equity": new["equity"].to_list(),
                 "drawdown_pct": (new["drawdown"] * -100.0).to_list()},
                rollover=EQUITY_POINTS,
            )
            self._last_t = int(new["t"][-1])
        positions = fetch(wh, "positions", run_id=run_id)
        equity = snap.figures.get("equity")
        self.pnl_table.value = pnl_rows(positions.to_dicts())
        self.positions_table.value = position_rows(positions.to_dicts(), equity)


def key_figures(f: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The tiles of the Desk: what a trader reads first."""
    if not f or not f.get("snapshots"):
        return [("equity", "Equity", "—", "no P&L yet"), ("fills", "Fills", style.count(f.get("fills", 0) if f else 0), "")]
    pnl = (f["realized"] or 0.0) + (f["unrealized"] or 0.0) - (f["fees"] or 0.0)
    approved = f["approved"] or 0
    fill_rate = (f["filled_orders"] / approved) if approved else None
    equity = f["equity"] or 0.0
    return [
        ("equity", "Equity", style.money(equity), f"peak {style.money(f['peak_equity'], 0)}"),
        ("pnl", "P&L", style.money(pnl, signed=True), f"realized {style.money(f['realized'], signed=True)}"),
        ("unrealized", "Unrealized", style.money(f["unrealized"], signed=True), f"fees {style.money(f['fees'])}"),
        ("drawdown", "Drawdown", style.pct(f["current_drawdown"], 3), f"max {style.pct(f['max_drawdown'], 3)}"),
        ("gross", "Gross exposure", style.money(f["gross_exposure"], 0),
         f"{style.pct(f['gross_exposure'] / equity if equity else None, 1)} of equity"),
        ("net", "Net exposure", style.money(f["net_exposure"], 0, signed=True),
         f"{style.pct(f['net_exposure'] / equity if equity else None, 1)} of equity"),
        ("orders", "Orders", style.count(f["orders"]), f"{style.count(f['cancels'])} cancels"),
        ("fills", "Fills", style.count(f["fills"]), f"notional {style.money(f['filled_notional'], 0)}"),
        ("fill_rate", "Fill rate", style.pct(fill_rate, 1), f"{style.count(f['filled_orders'])} orders filled"),
        ("rejects", "Rejects", style.count(f["rejected"]), f"of {style.count(f['orders'])} orders"),
    ]


def pnl_rows(positions: list[dict]) -> pd.DataFrame:
    """Today's P&L per strategy and symbol, with a total row per strategy first."""
    rows: list[dict] = []
    by_strategy: dict[str, list[dict]] = {}
    for p in positions:
        by_strategy.setdefault(p["strategy"], []).append(p)
    for strategy, items in sorted(by_strategy.items()):
        lines = [{
            "strategy": strategy, "symbol": p["symbol"], "realized": p["realized_today"],
            "unrealized": p["unrealized_today"], "fees": p["fees_today"],
            "total": p["realized_today"] + p["unrealized_today"] - p["fees_today"],
        } for p in items]
        total = {k: sum(line[k] for line in lines) for k in ("realized", "unrealized", "fees", "total")}
        rows.append({"strategy": strategy, "symbol": "ALL", **total})
        rows.extend(sorted(lines, key=lambda line: line["total"]))
    return pd.DataFrame(rows, columns=["strategy", "symbol", "realized", "unrealized", "fees", "total"])


def position_rows(positions: list[dict], equity: float | None) -> pd.DataFrame:
    """Open positions, largest exposure first; exposure is |market value| as % of equity."""
    rows = [{
        "symbol": p["symbol"], "strategy": p["strategy"], "quantity": p["quantity"], "avg_cost": p["avg_cost"],
        "mark": p["mark_price"], "market_value": p["market_value"],
        "exposure_pct": abs(p["market_value"]) / equity * 100 if equity else None,
    } for p in positions if p["quantity"] != 0]
    rows.sort(key=lambda r: -abs(r["market_value"]))
    return pd.DataFrame(rows, columns=["symbol", "strategy", "quantity", "avg_cost", "mark", "market_value", "exposure_pct"])
