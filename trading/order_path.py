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

from schemas import DeadLetter, ExecutionReport, Order, RiskReject, now_ns
from strategies.portfolio import PortfolioConstructor
from strategies.signals import CrossSection
from topics.catalog import table_name
from trading.allocation import CapitalAllocation
from trading.marks import MarkedLedger
from trading.risk import RiskState

Tagged = tuple[str, object]
Book = Callable[[Iterable[ExecutionReport], list], None]

T_INTENT = table_name("orders.intent")
T_APPROVED = table_name("orders.approved")
T_REJECTED = table_name("orders.rejected")
T_DLQ = table_name("dlq")


class OrderPath:
    """Portfolio construction and pre-trade risk of one account, in front of ``venue``."""

    def __init__(self, account: str, portfolio: PortfolioConstructor, risk: RiskState, venue,
                 marked: MarkedLedger, allocation: CapitalAllocation | None = None) -> None:
        self.account = account
        self.portfolio = portfolio
        self.allocation = allocation  # several strategies: each one's capital and limits (trading/allocation.py)
        self.risk = risk
        self.venue = venue
        self.marked = marked
        self.counts = {"cross_sections": 0, "orders": 0, "approved": 0, "rejected": 0}

    def on_section(self, section: CrossSection, out: list, book: Book) -> None:
        """The orders that move each strategy's book to its targets in the cross-section (strategies in
        name order); ``book`` gets the venue's reports."""
        self.counts["cross_sections"] += 1
        by_strategy: dict[str, list] = {}
        for signal in section.signals:
            by_strategy.setdefault(signal.strategy, []).append(signal)
        for strategy in sorted(by_strategy):
            portfolio = self.portfolio
            if self.allocation is not None:
                portfolio = self.allocation.portfolio(strategy)
                if portfolio is None:
                    out.append((T_DLQ, self._unallocated(section, strategy)))
                    continue
            self._strategy_orders(section, strategy, by_strategy[strategy], portfolio, out, book)

    def _strategy_orders(self, section: CrossSection, strategy: str, signals: list, portfolio: PortfolioConstructor,
                         out: list, book: Book) -> None:
        ledger = self.marked.ledger
        targets = {s.symbol: s.target_weight for s in signals}
        prices = {sym: mark for sym in targets if (mark := ledger.mark(sym)) is not None}
        positions = {sym: qty for (strat, sym), qty in ledger.positions().items() if strat == strategy}
        priced = {sym: w for sym, w in targets.items() if sym in prices}
        if portfolio.config.execution == "passive":
            orders = portfolio.passive_orders_for(
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
            orders = portfolio.orders_for(
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
        # an operator's unwind passes the reduce-only checks, not a strategy's exposure budget
        decision = (self.risk.on_reducing_order(order) if reducing
                    else self._strategy_check(order) or self.risk.on_order(order))
        if type(decision) is RiskReject:
            self.counts["rejected"] += 1
            out.append((T_REJECTED, decision))
            return False
        self.counts["approved"] += 1
        out.append((T_APPROVED, decision))
        book(self.venue.on_order(decision), out)
        return True

    def _strategy_check(self, order: Order) -> RiskReject | None:
        if self.allocation is None:
            return None
        ledger = self.marked.ledger
        positions = {sym: qty for (strat, sym), qty in ledger.positions().items() if strat == order.strategy}
        working = [o for o in self.venue.open_orders() if o.strategy == order.strategy]
        symbols = set(positions) | {o.symbol for o in working} | {order.symbol}
        marks = {sym: mark for sym in symbols if (mark := ledger.mark(sym)) is not None}
        return self.allocation.check(order, positions, working, marks)

    def _unallocated(self, section: CrossSection, strategy: str) -> DeadLetter:
        first = next(s for s in section.signals if s.strategy == strategy)
        return DeadLetter(
            id=f"dlq:desk:{self.account}:{strategy}:{section.bar_end}", ts_event=section.bar_end, ts_ingest=now_ns(),
            source_topic="signals", stage="desk", reason="unknown_strategy",
            detail=f"signals of strategy {strategy!r}, which this desk has no capital for "
                   f"(configured: {', '.join(self.allocation.fractions)}): start the desk with the same --strategy "
                   "options as the signals stage", symbol=first.symbol, payload=first.to_json().decode())

    def _open_qty(self, strategy: str) -> dict[str, float]:
        open_qty: dict[str, float] = {}
        for order in self.venue.open_orders():
            if order.strategy == strategy:
                open_qty[order.symbol] = open_qty.get(order.symbol, 0.0) + order.side.sign * order.leaves_qty
        return open_qty
