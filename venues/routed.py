"""The venue as seen from a risk stage that does not run it: orders leave, reports come back.

In the split topology the execution stage (another process) runs the venue. The risk stage's
portfolio construction still needs the open quantity of its working orders, so it keeps this view:
an approved order is working from the moment it is sent, with its full quantity, and the reports
the execution stage sends back shrink or close it. Once every report older than a time T has been
applied (the execution stage's watermark), the view equals the venue's own state at T, because
every change of an order's state is a report stamped with the time it happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import ExecutionReport, Order, OrderAction, OrderType, Side


@dataclass
class RoutedOrder:
    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    leaves_qty: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None  # passive execution keeps an order resting at the current touch


class RoutedVenue:
    """Duck-types the part of :class:`venues.sim.SimVenue` the trading desk uses; sends nothing
    itself (the desk's approved orders are the stage's output)."""

    def __init__(self) -> None:
        self._working: dict[str, RoutedOrder] = {}

    def on_order(self, order: Order) -> list[ExecutionReport]:
        if order.action is not OrderAction.CANCEL and order.client_order_id not in self._working:
            self._working[order.client_order_id] = RoutedOrder(
                order.client_order_id, order.strategy, order.symbol, order.side, order.quantity,
                order.order_type, order.limit_price)
        return []

    def on_report(self, report: ExecutionReport) -> None:
        working = self._working.get(report.client_order_id)
        if working is None:
            return
        if report.state.is_terminal or report.leaves_qty <= 0.0:
            del self._working[report.client_order_id]
        else:
            # The venue's word, not min(): it rounds the quantity to its lot, up or down. Reports
            # arrive in the venue's order and repeats are dropped by id before they get here.
            working.leaves_qty = report.leaves_qty

    def on_trade(self, trade: object) -> list[ExecutionReport]:
        return []

    def on_quote(self, quote: object) -> list[ExecutionReport]:
        return []

    def on_time(self, ts_event: int, ts_tick_ingest: int | None = None) -> list[ExecutionReport]:
        return []

    def open_orders(self) -> list[RoutedOrder]:
        return list(self._working.values())
