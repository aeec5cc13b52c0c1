"""The trading desk: portfolio construction, pre-trade risk, the venue and the ledger of one
account, in one functional core (DESIGN §2).

Bytewax allows no cycle, so the account's stages share one operator keyed by account: fills update
risk and the ledger at once, and orders are sized against the ledger's real positions (the signals
stage sends :class:`strategies.signals.CrossSection` items, not orders). The same core runs in the fused
embedded dataflow and in the split topology's ``trading`` flow over Kafka.

Reproducibility. The desk's inputs (trades and quotes per symbol, cross-sections, in the split
topology from different topics and partitions) interleave however the engine and the broker batched
them. The desk therefore keeps its own event-time order: everything goes into one heap keyed by
``(ts_event, priority, symbol, arrival)`` and is processed only below a horizon that no later
arrival can undercut:

- the *signal watermark* W: the bar time of the newest cross-section. Cross-sections arrive in
  bar order on the bar clock (``bar_interval``, the features' interval), so the next one is at
  W + interval or later and the tape below that is not held back for it;
- the *market watermark*: for every symbol seen, its newest event time minus the lateness window
  (normalize never lets an older event of that symbol through). A symbol more than
  ``silent_after_ns`` behind the newest one is treated as silent and does not hold the others back.

So each step sees exactly the state of the tape at its event time, whatever the batching or the
topology: the same input and config give the same orders, fills and P&L. The cost is latency:
fills are computed when the horizon passes them, about one bar plus the lateness window after the
tick that caused them (their ``ts_event`` is the true simulated time).

Bars are not an input: the desk derives its bar clock from the trades it sees (a symbol that traded
in ``[T - interval, T)`` gets a position/P&L snapshot and a venue time step at ``T``), so it needs no
third stream to stay in order with. At equal event times a cross-section goes first (orders at bar
end T are sent before anything at T), then bar ends (a snapshot of the tape before T), then trades
and quotes; ties within those break on the symbol, then on arrival (one symbol's events always
arrive in tape order).

Operator commands (kill switch, limits) are not market events: they apply when they arrive.

Execution follows ``PortfolioConfig.execution``: delta market orders (default), or ``passive`` limit
orders at the touch, priced from the last quote the desk processed in event order and re-quoted
each bar against the venue's working orders (``strategies/portfolio.py``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from trading.ledger import ACCOUNT_SCOPE, Ledger
from trading.risk import RiskState
from trading.risk_limits import RiskLimits, default_limits
from strategies.signals import CrossSection
from market.features import WARMUP_BARS
from market.normalize import RecentTradeIds
from schemas import (
    INTERVAL_NANOS,
    ControlCommand,
    DeadLetter,
    ExecutionReport,
    Order,
    PnlSnapshot,
    Quote,
    Record,
    RiskReject,
    Trade,
    now_ns,
)
from schemas.trusted import trusted_constructor
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
T_DLQ = table_name("dlq")

# Ids remembered per symbol to drop redelivered market events (a Kafka restart redelivers at most
# an epoch's worth); older duplicates are also refused by the late check.
RECENT_IDS_PER_SYMBOL = 20_000

# At equal event times: cross-sections (and, in the split execution stage, the orders they caused),
# then bar ends, then market events, then (split risk and pnl stages) the venue's reports.
_CROSS_SECTION, _BAR_END, _TICK, _REPORT = 0, 1, 2, 3

# Queued market records are snapshotted as their field dicts and rebuilt with these.
_MARKET_CONSTRUCTORS = {Trade: trusted_constructor(Trade), Quote: trusted_constructor(Quote)}


def default_portfolio() -> PortfolioConfig:
    # 4% of capital per name, so a full flip (8%) stays under the default order-notional limit
    # (10%) and a book of 4 longs and 4 shorts far under the gross and per-name limits.
    return PortfolioConfig(capital=1_000_000.0, max_weight_per_name=0.04)


@dataclass(frozen=True)
class _BarEnd:
    """The end of a bar in which ``symbol`` traded: the desk's own bar clock."""

    symbol: str
    bar_end: int
    ts_tick_ingest: int


class DeskConfig(BaseModel):
    """One account's desk; every part has documented defaults in its own module."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str = Field("paper", min_length=1)
    capital: float = Field(1_000_000.0, gt=0)
    bar_interval: str = Field("1s", description="Bar clock of position and P&L snapshots.")
    lateness_ns: int = Field(500_000_000, ge=0, description="Normalize's lateness window: the market watermark's slack.")
    silent_after_ns: int = Field(
        30_000_000_000, gt=0, description="A symbol this far behind the newest is silent and holds nothing back. "
        "Raise it when replaying complete Kafka topics, where partitions are drained at different paces.")
    universe: tuple[str, ...] | None = Field(
        None, description="Symbols the market watermark waits for before any is processed (the split "
        "topology drains partitions one after another); None: the symbols seen so far.")
    market_streams: tuple[str, ...] = Field(
        ("trade", "quote"), description="What the feed delivers per symbol: the market watermark waits for each "
        "(a trades-only replay has no quotes to wait for).")
    portfolio: PortfolioConfig = Field(default_factory=default_portfolio)
    limits: RiskLimits = Field(default_factory=default_limits)
    venue: SimVenueConfig = Field(default_factory=SimVenueConfig)


class TradingDesk:
    """``venue``: the simulated exchange by default; a live venue (Alpaca) is passed in, and its
    execution reports, which arrive on their own, come back through :meth:`on_item`."""

    def __init__(self, config: DeskConfig | None = None, venue=None):
        self.config = config or DeskConfig()
        account = self.config.account
        self.portfolio = PortfolioConstructor(self.config.portfolio)
        self.risk = RiskState(account, self.config.limits)
        self.venue = venue if venue is not None else SimVenue(self.config.venue)
        self.ledger = Ledger(account, self.config.capital)
        self._queue: list[tuple[int, int, str, int, object]] = []
        self._arrivals = 0
        self._watermark = -1
        self._interval_ns = INTERVAL_NANOS[self.config.bar_interval]
        # (symbol, "trade" | "quote") -> newest event time seen: trades and quotes come from
        # different topics in the split topology, each in order per symbol but not with each other
        self._market_seen: dict[tuple[str, str], int] = {}
        self._market_first: dict[tuple[str, str], int] = {}  # each stream's first (earliest) event time
        self._bar_scheduled: dict[str, int] = {}  # symbol -> latest bar end scheduled from its trades
        self._recent_ids: dict[str, RecentTradeIds] = {}
        self._released: tuple[int, int] = (-1, 0)  # the key up to which the queue was processed
        self._filled_since_bar: set[str] = set()
        self._touch: dict[str, tuple[float, float]] = {}  # symbol -> (bid, ask) of its last quote
        self.counts = {"cross_sections": 0, "orders": 0, "approved": 0, "rejected": 0, "fills": 0,
                       "duplicates": 0, "late": 0}

    # ------------------------------------------------------------------ recovery snapshots

    def __getstate__(self) -> dict:
        # The queue holds up to a bar and the lateness window of tape (thousands of trades and
        # quotes at 5,000 ticks/s) and is pickled every epoch: pydantic's own pickling of each
        # record cost ~30 ms per snapshot, a pause on the tick-to-order path. Their field dicts
        # pickle ten times faster and rebuild the same records without validation.
        state = self.__dict__.copy()
        state["_queue"] = [(*entry[:4], type(entry[4]), entry[4].__dict__) if type(entry[4]) in _MARKET_CONSTRUCTORS
                           else entry for entry in self._queue]
        return state

    def __setstate__(self, state: dict) -> None:
        state["_queue"] = [entry if len(entry) == 5 else (*entry[:4], _MARKET_CONSTRUCTORS[entry[4]](entry[5]))
                           for entry in state["_queue"]]
        self.__dict__.update(state)

    # ------------------------------------------------------------------ inputs

    def on_market(self, record: Trade | Quote) -> list[Tagged]:
        """Queue a trade or quote; processed once both watermarks pass it."""
        out = self._queue_market(record)
        out.extend(self._release(self._horizon()))
        return out

    def on_batch(self, items: list) -> list[Tagged]:
        """A batch of inputs in arrival order, released once at its end: the horizon is computed per
        batch instead of per tick (the result is the same, the queue is processed in key order)."""
        out: list[Tagged] = []
        for item in items:
            kind = type(item)
            if kind is Trade or kind is Quote:
                out.extend(self._queue_market(item))
            elif kind is CrossSection:
                self._queue_section(item)
            else:
                out.extend(self.on_item(item))
        out.extend(self._release(self._horizon()))
        return out

    def _queue_market(self, record: Trade | Quote) -> list[Tagged]:
        """A redelivered event (same id: at-least-once delivery over Kafka) is ignored, so it can never
        fill an order twice; one older than what the desk already processed goes to the dlq as
        ``late`` rather than silently changing history."""
        symbol, ts = record.symbol, record.ts_event
        seen = self._recent_ids.get(symbol)
        if seen is None:
            seen = self._recent_ids[symbol] = RecentTradeIds(RECENT_IDS_PER_SYMBOL)
        if not seen.add_if_new(record.id):
            self.counts["duplicates"] += 1
            return []
        if (ts, _TICK) < self._released:
            self.counts["late"] += 1
            return [(T_DLQ, self._late(record))]
        self._push(ts, _TICK, symbol, record)
        stream = (symbol, "trade" if type(record) is Trade else "quote")
        if ts > self._market_seen.get(stream, -1):
            self._market_seen[stream] = ts
        if stream not in self._market_first:
            self._market_first[stream] = ts
        if type(record) is Trade:
            bar_end = (ts // self._interval_ns + 1) * self._interval_ns
            if bar_end > self._bar_scheduled.get(symbol, -1):
                self._bar_scheduled[symbol] = bar_end
                self._push(bar_end, _BAR_END, symbol, _BarEnd(symbol, bar_end, record.ts_tick_ingest))
        return []

    def on_cross_section(self, section: CrossSection) -> list[Tagged]:
        self._queue_section(section)
        return self._release(self._horizon())

    def _queue_section(self, section: CrossSection) -> None:
        if self._watermark >= 0 and section.bar_end < self._watermark + self._interval_ns:
            raise ValueError(
                f"cross-section at {section.bar_end} is off the desk's bar clock ({self.config.bar_interval}) after "
                f"the one at {self._watermark}: DeskConfig.bar_interval must be the features' interval")
        self._push(section.bar_end, _CROSS_SECTION, "", section)
        self._watermark = max(self._watermark, section.bar_end)

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
        if kind is Trade or kind is Quote:
            return self.on_market(item)
        if kind is CrossSection:
            return self.on_cross_section(item)
        if kind is ControlCommand:
            return self.on_control(item)
        if kind is ExecutionReport:
            # From a live venue: the fill happened in the real world already, book it now.
            out: list[Tagged] = []
            self._book([item], out)
            return out
        raise TypeError(f"the trading desk takes trades, quotes, cross-sections and control, not {kind.__name__}")

    # ------------------------------------------------------------------ event-time processing

    def _push(self, ts: int, priority: int, symbol: str, item: object) -> None:
        # Ties break on the symbol, then on arrival: one symbol's events arrive in tape order
        # whatever the batching, but how symbols interleave does not.
        self._arrivals += 1
        heapq.heappush(self._queue, (ts, priority, symbol, self._arrivals, item))

    def _market_horizon(self) -> int | None:
        """The market watermark: no trade or quote older than this can still arrive (None: not
        every stream of the universe has been seen yet)."""
        seen = self._market_seen
        if not seen:
            return None
        universe = self.config.universe
        if universe is not None:
            kinds = self.config.market_streams
            if len(seen) < len(universe) * len(kinds) and not all((s, k) in seen for s in universe for k in kinds):
                return None
        newest = max(seen.values())
        market = min(ts for ts in seen.values() if ts >= newest - self.config.silent_after_ns)
        return market - self.config.lateness_ns

    def _earliest_section(self) -> int:
        """No cross-section can come before the features' warm-up has passed: a symbol's first
        vector is on its ``WARMUP_BARS``-th bar, and bars are epoch-aligned and exist only where a
        trade fell, so none ends before the ``WARMUP_BARS``-th interval from the earliest event's.
        (An event that arrives later with an older time is no earlier than the market horizon, so it
        cannot move this bound below a horizon the desk already released.)"""
        first = min(self._market_first.values())
        return (first // self._interval_ns + WARMUP_BARS) * self._interval_ns

    def _horizon(self) -> tuple[int, int]:
        """Everything strictly below this ``(ts, priority)`` key is final."""
        market = self._market_horizon()
        if market is None:
            return (-1, 0)
        universe = self.config.universe
        if self._watermark < 0:
            if universe is None:
                return (-1, 0)  # who else will trade is unknown: hold the tape until the first cross-section
            # No cross-section yet, and none can come before the features' warm-up has passed: the
            # tape up to then is processed now instead of being held (at 10k ticks/s the warm-up
            # alone would otherwise hold some 350,000 events).
            return (min(market, self._earliest_section()), 0)
        # Cross-sections come on the bar clock, in bar order: after the one at W, none can come before
        # W + interval, so the tape up to there is processed as the market passes it instead of
        # waiting for the next cross-section (which would then find a second of tape to work
        # through before its orders could go out).
        return min((market, 0), (self._watermark + self._interval_ns, _CROSS_SECTION))

    def _release(self, horizon: tuple[int, int] | None) -> list[Tagged]:
        out: list[Tagged] = []
        queue = self._queue
        while queue:
            ts, priority, _, _, item = queue[0]
            if horizon is not None and (ts, priority) >= horizon:
                break
            heapq.heappop(queue)
            self._released = (ts, priority)
            kind = type(item)
            if kind is Trade:
                self._on_trade(item, out)
            elif kind is Quote:
                self._on_quote(item, out)
            elif kind is _BarEnd:
                self._on_bar_end(item, out)
            else:
                self._on_queued(item, out)
        return out

    def _on_queued(self, item: object, out: list[Tagged]) -> None:
        """A queued item that is not market data: here a cross-section; the split stages
        (:mod:`trading.stages`) also queue orders and execution reports."""
        self._on_section(item, out)

    def _late(self, record: Trade | Quote) -> DeadLetter:
        return DeadLetter(
            id=f"dlq:desk:{record.id}",
            ts_event=record.ts_event,
            ts_ingest=now_ns(),
            source_topic="md.trades" if type(record) is Trade else "md.quotes",
            stage="desk",
            reason="late",
            detail=f"event time {record.ts_event} is before what the desk already processed ({self._released[0]})",
            symbol=record.symbol,
            payload=record.to_json().decode(),
        )

    def _on_trade(self, trade: Trade, out: list[Tagged]) -> None:
        self.risk.on_trade(trade.symbol, trade.price, trade.ts_event)
        self.ledger.on_mark(trade.symbol, trade.price, trade.ts_event, trade.ts_tick_ingest)
        self._book(self.venue.on_trade(trade), out)

    def _on_quote(self, quote: Quote, out: list[Tagged]) -> None:
        self._note_quote(quote)
        self._book(self.venue.on_quote(quote), out)

    def _on_bar_end(self, bar: "_BarEnd", out: list[Tagged]) -> None:
        self._book(self.venue.on_time(bar.bar_end, bar.ts_tick_ingest), out)
        self._snapshots(self._bar_snapshot(bar), out)

    # The ledger's side of the tape, shared with the split risk and pnl stages (trading.stages).

    def _note_quote(self, quote: Quote) -> None:
        self._touch[quote.symbol] = (quote.bid_price, quote.ask_price)  # passive execution prices at the touch
        if self.ledger.mark(quote.symbol) is None:  # before the first trade the mid is the best mark
            self.ledger.on_mark(quote.symbol, quote.mid, quote.ts_event, quote.ts_tick_ingest)

    def _bar_snapshot(self, bar: "_BarEnd") -> Iterable[Record]:
        """Position and P&L at a bar end of a symbol that filled in the bar or holds a position."""
        symbol = bar.symbol
        if symbol in self._filled_since_bar or self.ledger.position(symbol) != 0.0:
            self._filled_since_bar.discard(symbol)
            return self.ledger.snapshot(bar.bar_end, bar.ts_tick_ingest, {symbol})
        return ()

    def _book_fill(self, report: ExecutionReport) -> Iterable[Record]:
        self.counts["fills"] += 1
        self._filled_since_bar.add(report.symbol)
        return self.ledger.on_fill(report)

    def _on_section(self, section: CrossSection, out: list[Tagged]) -> None:
        self.counts["cross_sections"] += 1
        if not section.signals:
            return
        strategy = section.signals[0].strategy
        targets = {s.symbol: s.target_weight for s in section.signals}
        prices = {sym: mark for sym in targets if (mark := self.ledger.mark(sym)) is not None}
        positions = {sym: qty for (strat, sym), qty in self.ledger.positions().items() if strat == strategy}
        priced = {sym: w for sym, w in targets.items() if sym in prices}
        if self.portfolio.config.execution == "passive":
            orders = self.portfolio.passive_orders_for(
                targets=priced,
                prices=prices,
                touches=self._touch,
                positions=positions,
                working=[o for o in self.venue.open_orders() if o.strategy == strategy],
                bar_end=section.bar_end,
                account=self.config.account,
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
                self._snapshots(self._book_fill(report), out)

    def _snapshots(self, records: Iterable[Record], out: list[Tagged]) -> None:
        for record in records:
            if type(record) is PnlSnapshot:
                out.append((T_PNL, record))
                if record.strategy == ACCOUNT_SCOPE:
                    out.extend((T_CONTROL, c) for c in self.risk.on_pnl(record))
            else:
                out.append((T_POSITIONS, record))
