"""Blotter: every order with its state and fills, latest first, filterable by strategy, symbol and
state; the fills; and the risk rejects with their reason codes."""

from __future__ import annotations

import pandas as pd
import panel as pn
import polars as pl
from bokeh.models import HTMLTemplateFormatter, NumberFormatter

from dashboards import style
from dashboards.context import DashboardContext
from dashboards.queries import fetch
from dashboards.snapshot import RunSnapshot

ROWS = 300
ORDER_STATES = ("pending", "accepted", "partially_filled", "filled", "canceled", "rejected", "risk_rejected")
ALL = "All"

SIDE = HTMLTemplateFormatter(template=(
    f'<span style="font-weight:600;color:<%= value == "buy" ? "{style.UP}" : "{style.DOWN}" %>"><%= value %></span>'
))
STATE = HTMLTemplateFormatter(template=(
    '<span style="color:<%= value == "filled" ? "' + style.UP + '" : (value == "risk_rejected" || value == "rejected")'
    ' ? "' + style.DOWN + '" : value == "canceled" ? "' + style.MUTED + '" : "' + style.AMBER + '" %>"><%= value %></span>'
))
QTY = NumberFormatter(format="0,0", text_align="right")
PRICE = NumberFormatter(format="0,0.00", text_align="right")
FEE = NumberFormatter(format="0,0.0000", text_align="right")


def with_clock(frame: pl.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The frame with its epoch-ms ``t`` shown as the tape's UTC clock, in ``columns`` order."""
    rows = frame.to_dicts()
    for row in rows:
        row["time"] = style.clock_ms(row.pop("t"))
    return pd.DataFrame(rows, columns=columns)


class BlotterPage:
    title = "Blotter"

    ORDER_COLUMNS = ["time", "client_order_id", "strategy", "symbol", "side", "action", "order_type", "quantity",
                     "limit_price", "order_state", "cum_qty", "avg_price", "fills", "fees", "reasons"]
    FILL_COLUMNS = ["time", "fill_id", "strategy", "symbol", "side", "last_qty", "last_price", "notional", "fee",
                    "state", "leaves_qty"]
    REJECT_COLUMNS = ["time", "client_order_id", "strategy", "symbol", "side", "quantity", "reasons"]

    def __init__(self, ctx: DashboardContext):
        self.ctx = ctx
        self.strategy = pn.widgets.Select(label="Strategy", options=[ALL], value=ALL, width=160)
        self.symbol = pn.widgets.Select(label="Symbol", options=[ALL], value=ALL, width=140)
        self.state = pn.widgets.Select(label="Order state", options=[ALL, *ORDER_STATES], value=ALL, width=160)
        self.orders = pn.widgets.Tabulator(
            pd.DataFrame(columns=self.ORDER_COLUMNS), height=380, pagination=None,
            formatters={"side": SIDE, "order_state": STATE, "quantity": QTY, "cum_qty": QTY, "limit_price": PRICE,
                        "avg_price": PRICE, "fees": FEE},
            titles=style.titles(self.ORDER_COLUMNS), **style.tabulator_options(),
        )
        self.fills = pn.widgets.Tabulator(
            pd.DataFrame(columns=self.FILL_COLUMNS), height=300,
            formatters={"side": SIDE, "state": STATE, "last_qty": QTY, "leaves_qty": QTY, "last_price": PRICE,
                        "notional": PRICE, "fee": FEE},
            titles=style.titles(self.FILL_COLUMNS), **style.tabulator_options(),
        )
        self.rejects = pn.widgets.Tabulator(
            pd.DataFrame(columns=self.REJECT_COLUMNS), height=300, formatters={"side": SIDE, "quantity": QTY},
            titles=style.titles(self.REJECT_COLUMNS), **style.tabulator_options(),
        )
        self.reasons = pn.widgets.Tabulator(
            pd.DataFrame(columns=["reason", "orders"]), height=300, titles={"reason": "Reason", "orders": "Orders"},
            **style.tabulator_options(width=260, sizing_mode="fixed"),
        )
        self.view = pn.Column(
            pn.Row(self.strategy, self.symbol, self.state),
            pn.pane.HTML(style.section(f"Orders (latest {ROWS})")), self.orders,
            pn.Row(
                pn.Column(pn.pane.HTML(style.section("Fills")), self.fills, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.Column(pn.pane.HTML(style.section("Risk rejects")), self.rejects, sizing_mode="stretch_width"),
                pn.Column(pn.pane.HTML(style.section("Reject reasons")), self.reasons),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    def set_universe(self, strategies: list[str], symbols: list[str]) -> None:
        if [ALL, *strategies] != self.strategy.options:
            self.strategy.options = [ALL, *strategies]
        if [ALL, *symbols] != self.symbol.options:
            self.symbol.options = [ALL, *symbols]

    def filters(self) -> dict[str, str]:
        def chosen(widget: pn.widgets.Select) -> str:
            return "" if widget.value in (ALL, None) else str(widget.value)

        return {"strategy": chosen(self.strategy), "symbol": chosen(self.symbol)}

    def reset(self) -> None:
        for table in (self.orders, self.fills, self.rejects, self.reasons):
            table.value = table.value.iloc[0:0]

    def refresh(self, run_id: str, snap: RunSnapshot) -> None:
        wh, chosen = self.ctx.warehouse, self.filters()
        state = "" if self.state.value in (ALL, None) else self.state.value
        self.orders.value = with_clock(
            fetch(wh, "orders", run_id=run_id, state=state, limit=ROWS, **chosen), self.ORDER_COLUMNS)
        self.fills.value = with_clock(fetch(wh, "fills", run_id=run_id, limit=ROWS, **chosen), self.FILL_COLUMNS)
        self.rejects.value = with_clock(fetch(wh, "rejects", run_id=run_id, limit=ROWS, **chosen), self.REJECT_COLUMNS)
        self.reasons.value = fetch(wh, "reject_reasons", run_id=run_id).to_pandas()
