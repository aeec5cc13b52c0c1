"""The trading desk: portfolio construction, pre-trade risk, the venue and the ledger of one
account, in one functional core (DESIGN §2, fused topology).

Bytewax allows no cycle, so in the fused dataflow the account's stages share one operator keyed by
account: fills update risk and the ledger at once, and orders are sized against the ledger's real
positions (the signals stage sends :class:`flows.signals.CrossSection` items, not orders).

Reproducibility. The desk sees two inputs whose interleaving depends on how the engine batched the
tape: market events (trades, quotes, bars) straight from normalize and bars, and cross-sections
from the signals stage, which trail the tape by the lateness window and the wait for every symbol.
The desk therefore keeps its own event-time order: market events and cross-sections go into one
heap keyed by ``(ts_event, priority, arrival)`` and are processed only below the *signal
watermark*: the bar time of the newest cross-section. Once cross-section T has arrived, every
market event before T has arrived too (it took a shorter path through the dataflow), and no
cross-section at or before T will follow. So each step sees exactly the state of the tape at its
event time, whatever the batching: the same input and config give the same orders, fills and P&L.
The cost is latency: fills are computed when the watermark passes them, about one bar plus the
lateness window after the tick that caused them (their ``ts_event`` is the true simulated time).

At equal event times a cross-section goes first (orders at bar end T are sent before anything at
T), then bars (a bar ending at T is a snapshot of the tape before T), then trades and quotes; ties
within those break on the symbol, then on arrival (one symbol's events always arrive in tape order).

Operator commands (kill switch, limits) are not market events: they apply when they arrive.
"""

from __future__ import annotations

import heapq
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from flows.pnl import ACCOUNT_SCOPE, Ledger
from flows.risk import RiskState
from flows.risk_limits import RiskLimits
from flows.signals import CrossSection
from schemas import Bar, ControlCommand, ExecutionReport, Order, PnlSnapshot, Quote, Record, RiskReject, Trade
from strategies.portfolio import PortfolioConfig, PortfolioConstructor
from topics.catalog import table_name
from venues.sim import SimVenue
from venues.sim_config import SimVenueConfig

Tagged = tuple[str, Record]

T_INTENT = table_name("orders.intent")
T_APPROVED = table_name("orders.approved")
T_REJECTED = table_name("orders.rejected")
T_REPORTS = table_name("exec.reports")
T_POSITIONS = table_name("positions")
T_PNL = table_name("pnl")
T_CONTROL = table_name("control")

_CROSS_SECTION, _BAR, _TICK = 0, 1, 2


def default_portfolio() -> PortfolioConfig:
    # 4% of capital per name, so a full flip (8%) stays under the default order-notional limit
    # (10%) and a book of 4 longs and 4 shorts far under the gross and per-name limits.
    return PortfolioConfig(capital=1_000_000.0, max_weight_per_name=0.04)


def default_limits() -> RiskLimits:
    # 8 symbols rebalanced on 1-second bars may send 8 orders a second: 200 a minute would bind.
    return RiskLimits(max_orders_per_minute=600)


class DeskConfig(BaseModel):
    """One account's desk; every part has documented defaults in its own module."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str = Field("paper", min_length=1)
    capital: float = Field(1_000_000.0, gt=0)
    bar_interval: str = Field("1s", description="Bars that trigger position and P&L snapshots.")
    portfolio: PortfolioConfig = Field(default_factory=default_portfolio)
    limits: RiskLimits = Field(default_factory=default_limits)
    venue: SimVenueConfig = Field(default_factory=SimVenueConfig)


class TradingDesk:
    def __init__(self, config: DeskConfig | None = None):
        self.config = config or DeskConfig()
        account = self.config.account
        self.portfolio = PortfolioConstructor(self.config.portfolio)
        self.risk = RiskState(account, self.config.limits)
        self.venue = SimVenue(self.config.venue)
        self.ledger = Ledger(account, self.config.capital)
        self._queue: list[tuple[int, int, str, int, object]] = []
        self._arrivals = 0
        self._watermark = -1
        self._filled_since_bar: set[str] = set()
        self.counts = {"cross_sections": 0, "orders": 0, "approved": 0, "rejected": 0, "fills": 0}

    # ------------------------------------------------------------------ inputs

    def on_market(self, record: Trade | Quote | Bar) -> list[Tagged]:
        """Queue a market event; processed once the signal watermark passes it."""
        if type(record) is Bar and record.interval != self.config.bar_interval:
            return []
        priority = _BAR if type(record) is Bar else _TICK
        self._push(record.ts_event, priority, record.symbol, record)
        return []

    def on_cross_section(self, section: CrossSection) -> list[Tagged]:
        self._push(section.bar_end, _CROSS_SECTION, "", section)
        self._watermark = max(self._watermark, section.bar_end)
        return self._release(self._watermark)

    def on_control(self, command: ControlCommand) -> list[Tagged]:
        """An operator's command applies now; it and any alert it causes land in ``control``."""
        out: list[Tagged] = [(T_CONTROL, command)]
        out.extend((T_CONTROL, c) for c in self.risk.on_control(command))
        return out

    def flush(self) -> list[Tagged]:
        """End of the tape: everything still queued, in event-time order."""
        return self._release(None)

    def on_item(self, item: object) -> list[Tagged]:
        kind = type(item)
        if kind is Trade or kind is Quote or kind is Bar:
            return self.on_market(item)
        if kind is CrossSection:
            return self.on_cross_section(item)
        if kind is ControlCommand:
            return self.on_control(item)
        raise TypeError(f"the trading desk takes trades, quotes, bars, cross-sections and control, not {kind.__name__}")

    # ------------------------------------------------------------------ event-time processing

    def _push(self, ts: int, priority: int, symbol: str, item: object) -> None:
        # Ties break on the symbol, then on arrival: one symbol's events arrive in tape order
        # whatever the batching, but how symbols interleave does not.
        self._arrivals += 1
        heapq.heappush(self._queue, (ts, priority, symbol, self._arrivals, item))

    def _release(self, watermark: int | None) -> list[Tagged]:
        out: list[Tagged] = []
        queue = self._queue
        while queue:
            ts, priority, _, _, item = queue[0]
            if watermark is not None and not (ts < watermark or (ts == watermark and priority == _CROSS_SECTION)):
                break
            heapq.heappop(queue)
            kind = type(item)
            if kind is Trade:
                self._on_trade(item, out)
            elif kind is Quote:
                self._on_quote(item, out)
            elif kind is Bar:
                self._on_bar(item, out)
            else:
                self._on_section(item, out)
        return out

    def _on_trade(self, trade: Trade, out: list[Tagged]) -> None:
        self.risk.on_trade(trade.symbol, trade.price, trade.ts_event)
        self.ledger.on_mark(trade.symbol, trade.price, trade.ts_event, trade.ts_tick_ingest)
        self._book(self.venue.on_trade(trade), out)

    def _on_quote(self, quote: Quote, out: list[Tagged]) -> None:
        if self.ledger.mark(quote.symbol) is None:  # before the first trade the mid is the best mark
            self.ledger.on_mark(quote.symbol, quote.mid, quote.ts_event, quote.ts_tick_ingest)
        self._book(self.venue.on_quote(quote), out)

    def _on_bar(self, bar: Bar, out: list[Tagged]) -> None:
        self._book(self.venue.on_time(bar.bar_end, bar.ts_tick_ingest), out)
        symbol = bar.symbol
        if symbol in self._filled_since_bar or self.ledger.position(symbol) != 0.0:
            self._filled_since_bar.discard(symbol)
            self._snapshots(self.ledger.snapshot(bar.bar_end, bar.ts_tick_ingest, {symbol}), out)

    def _on_section(self, section: CrossSection, out: list[Tagged]) -> None:
        self.counts["cross_sections"] += 1
        if not section.signals:
            return
        strategy = section.signals[0].strategy
        targets = {s.symbol: s.target_weight for s in section.signals}
        prices = {sym: mark for sym in targets if (mark := self.ledger.mark(sym)) is not None}
        positions = {sym: qty for (strat, sym), qty in self.ledger.positions().items() if strat == strategy}
        orders = self.portfolio.orders_for(
            targets={sym: w for sym, w in targets.items() if sym in prices},
            prices=prices,
            positions=positions,
            open_qty=self._open_qty(strategy),
            bar_end=section.bar_end,
            account=self.config.account,
            strategy=strategy,
            ts_tick_ingest=section.ts_tick_ingest,
        )
        for order in orders:
            self.submit(order, out)

    def submit(self, order: Order, out: list[Tagged]) -> None:
        """One order intent through risk to the venue."""
        self.counts["orders"] += 1
        out.append((T_INTENT, order))
        decision = self.risk.on_order(order)
        if type(decision) is RiskReject:
            self.counts["rejected"] += 1
            out.append((T_REJECTED, decision))
            return
        self.counts["approved"] += 1
        out.append((T_APPROVED, decision))
        self._book(self.venue.on_order(decision), out)

    def _open_qty(self, strategy: str) -> dict[str, float]:
        open_qty: dict[str, float] = {}
        for order in self.venue.open_orders():
            if order.strategy == strategy:
                open_qty[order.symbol] = open_qty.get(order.symbol, 0.0) + order.side.sign * order.leaves_qty
        return open_qty

    def _book(self, reports: Iterable[ExecutionReport], out: list[Tagged]) -> None:
        for report in reports:
            out.append((T_REPORTS, report))
            self.risk.on_execution_report(report)
            if report.is_fill:
                self.counts["fills"] += 1
                self._filled_since_bar.add(report.symbol)
                self._snapshots(self.ledger.on_fill(report), out)

    def _snapshots(self, records: Iterable[Record], out: list[Tagged]) -> None:
        for record in records:
            if type(record) is PnlSnapshot:
                out.append((T_PNL, record))
                if record.strategy == ACCOUNT_SCOPE:
                    out.extend((T_CONTROL, c) for c in self.risk.on_pnl(record))
            else:
                out.append((T_POSITIONS, record))
