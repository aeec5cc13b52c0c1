"""An account's order path: a cross-section's targets become orders, each through pre-trade risk to
the venue.

Orders are sized against the ledger's real positions and the venue's working orders (the signals
stage sends :class:`strategies.signals.CrossSection` items, not orders), at the ledger's marks.
Execution follows ``PortfolioConfig.execution``: delta market orders (default), or ``passive``
limit orders at the touch, priced from the last quote processed in event order and re-quoted each
bar against the venue's working orders (``strategies/portfolio.py``).

The fused desk and the split risk stage compose the same path; they differ in the venue (the
simulated exchange, or the routed view of one run by the execution stage) and in what they do with
its reports (the ``book`` callback).
"""

from __future__ import annotations

from typing import Callable, Iterable

from schemas import ExecutionReport, Order, RiskReject
from strategies.portfolio import PortfolioConstructor
from strategies.signals import CrossSection
from topics.catalog import table_name
from trading.marks import MarkedLedger
from trading.risk import RiskState

Tagged = tuple[str, object]
Book = Callable[[Iterable[ExecutionReport], list], None]

T_INTENT = table_name("orders.intent")
T_APPROVED = table_name("orders.approved")
T_REJECTED = table_name("orders.rejected")


class OrderPath:
    """Portfolio construction and pre-trade risk of one account, in front of ``venue``."""

    def __init__(self, account: str, portfolio: PortfolioConstructor, risk: RiskState, venue,
                 marked: MarkedLedger) -> None:
        self.account = account
        self.portfolio = portfolio
        self.risk = risk
        self.venue = venue
        self.marked = marked
        self.counts = {"cross_sections": 0, "orders": 0, "approved": 0, "rejected": 0}

    def on_section(self, section: CrossSection, out: list, book: Book) -> None:
        """The orders that move the book to the cross-section's targets; ``book`` gets the venue's reports."""
        self.counts["cross_sections"] += 1
        if not section.signals:
            return
        ledger = self.marked.ledger
        strategy = section.signals[0].strategy
        targets = {s.symbol: s.target_weight for s in section.signals}
        prices = {sym: mark for sym in targets if (mark := ledger.mark(sym)) is not None}
        positions = {sym: qty for (strat, sym), qty in ledger.positions().items() if strat == strategy}
        priced = {sym: w for sym, w in targets.items() if sym in prices}
        if self.portfolio.config.execution == "passive":
            orders = self.portfolio.passive_orders_for(
                targets=priced,
                prices=prices,
                touches=self.marked.touch,
                positions=positions,
                working=[o for o in self.venue.open_orders() if o.strategy == strategy],
                bar_end=section.bar_end,
                account=self.account,
                strategy=strategy,
                ts_tick_ingest=section.ts_tick_ingest,
            )
        else:
            orders = self.portfolio.orders_for(
                targets=priced,
                prices=prices,
                positions=positions,
                open_qty=self._open_qty(strategy),
                bar_end=section.bar_end,
                account=self.account,
                strategy=strategy,
                ts_tick_ingest=section.ts_tick_ingest,
            )
        for order in orders:
            self.submit(order, out, book)

    def submit(self, order: Order, out: list, book: Book, reducing: bool = False) -> bool:
        """One order intent through risk to the venue; whether risk approved it. ``reducing``: an
        operator's unwind, checked by :meth:`trading.risk.RiskState.on_reducing_order`."""
        self.counts["orders"] += 1
        out.append((T_INTENT, order))
        decision = self.risk.on_reducing_order(order) if reducing else self.risk.on_order(order)
        if type(decision) is RiskReject:
            self.counts["rejected"] += 1
            out.append((T_REJECTED, decision))
            return False
        self.counts["approved"] += 1
        out.append((T_APPROVED, decision))
        book(self.venue.on_order(decision), out)
        return True

    def _open_qty(self, strategy: str) -> dict[str, float]:
        open_qty: dict[str, float] = {}
        for order in self.venue.open_orders():
            if order.strategy == strategy:
                open_qty[order.symbol] = open_qty.get(order.symbol, 0.0) + order.side.sign * order.leaves_qty
        return open_qty
