"""Risk, execution and P&L as three stages of their own (the split topology's separate processes).

The fused :class:`trading.desk.TradingDesk` runs portfolio construction, risk, the venue and the
ledger in one operator. Here each runs in its own process, between Kafka topics:

    risk       signals (cross-sections), md.trades, md.quotes, control, exec.reports
               -> orders.intent, orders.approved (+ watermarks), orders.rejected, control
    execution  orders.approved, md.trades, md.quotes   -> exec.reports (+ watermarks)
    pnl        exec.reports, md.trades, md.quotes      -> positions, pnl

Each stage composes the desk's event-time sequencer (:class:`trading.sequencer.EventSequencer`:
one heap, the market watermark, the bar clock, redelivery and late checks) with only the cores it
uses (PortfolioConstructor and RiskState, SimVenue, Ledger), so with limits that do not bind the
three give the same orders, fills, positions and P&L as the fused desk.

Feedback without losing determinism. Risk sizes its orders at bar end T against the positions and
working orders the fills *before T* left; execution may not step the venue past T before it knows
risk's orders at T. The two stages lock-step through :class:`schemas.StageWatermark` punctuation
in their output topics:

- risk promises "no order older than P will follow" on ``orders.approved``: P is its oldest
  cross-section not yet processed, or (none pending) the newest one plus one bar, as
  cross-sections come in bar order on the bar grid (the desk's bar interval must not be longer
  than the signals' interval); before the first cross-section, the features' warm-up bound;
- execution processes its tape and orders below ``min(market watermark, P)`` and promises "every
  report older than X is out" on ``exec.reports``;
- risk processes a cross-section at T once X >= T; pnl books fills and marks below X.

One round trip per bar between risk and execution: the cost of a deterministic feedback loop.

Ordering detail: a report is queued at its ``ts_event`` after every market event at that time,
while the fused desk books a fill right after the very tick that caused it. The two differ only
when two ticks carry the same nanosecond timestamp and a fill happened on the first: a snapshot
taken at that fill then marks with the second tick's price here. The fills, the positions and the
P&L at every bar end are the same.

The three stages never flush at the end of a tape: what a watermark has not passed stays in the
recovery snapshot, as in every tail-reading stage (``tapeflow run --brokers``).

Effectively-once: risk and execution drop an order / report id seen before, the ledger ignores a
fill_id already booked, the warehouse replaces by id. A restarted stage repeats outputs after its
last snapshot byte for byte (its inputs and state are the same), so those drops are exact.
"""

from __future__ import annotations

from typing import Iterable

from market.calendar import calendar_by_name
from schemas import (ControlCommand, ExecutionReport, Order, PnlSnapshot, Quote, Record, StageWatermark, TapeWatermark,
                     Trade, now_ns)
from schemas.columns import TickBatch
from strategies.portfolio import PortfolioConstructor
from strategies.signals import CrossSection
from trading.desk import (T_APPROVED, T_CONTROL, T_DLQ, T_PNL, T_POSITIONS, T_REPORTS, DeskConfig, Tagged,
                          desk_allocation, desk_ledger, desk_sequencer)
from trading.ledger import ACCOUNT_SCOPE
from trading.marks import MarkedLedger
from trading.order_path import OrderPath
from trading.risk import RiskState
from trading.sequencer import REPORT, BarEnd, Horizon
from trading.unwind import Unwinder
from venues.routed import RoutedVenue
from venues.sim import SimVenue


def _watermark(stage: str, account: str, ts: int) -> StageWatermark:
    return StageWatermark(id=f"wm:{stage}:{account}:{ts}", ts_event=ts, ts_ingest=now_ns(), stage=stage, account=account)


class _SplitStage:
    """Shared by the three stages: their inputs into the sequencer (an upstream watermark caps the
    horizon, repeats are dropped), released once per batch, then the stage's own punctuation."""

    STAGE = ""

    def __init__(self, config: DeskConfig | None = None):
        self.config = config or DeskConfig()
        self.sequencer = desk_sequencer(self.config, self.STAGE)
        self._upstream = -1  # the upstream stage's latest watermark
        self._emitted = -1  # our own latest watermark

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.sequencer.counts)

    def on_batch(self, items: list) -> list[Tagged]:
        out: list[Tagged] = []
        for item in items:
            out.extend(self._queue(item))
        out.extend(self._release(self._horizon()))
        out.extend(self._punctuation())
        return out

    def on_item(self, item: object) -> list[Tagged]:
        return self.on_batch([item])

    def flush(self) -> list[Tagged]:
        """Nothing: releasing past the watermarks would break the lock-step (module docstring)."""
        return []

    def _queue(self, item: object) -> list[Tagged]:
        kind = type(item)
        sequencer = self.sequencer
        if kind is TickBatch:
            return [(T_DLQ, dead) for dead in sequencer.queue_ticks(item)]
        if kind is Trade or kind is Quote:
            dead = sequencer.queue_market(item)
        elif kind is Order or kind is ExecutionReport:
            dead = sequencer.queue_routed(item)
        elif kind is StageWatermark:
            self._upstream = max(self._upstream, item.ts_event)
            return []
        elif kind is TapeWatermark:
            sequencer.advance_stream(item)
            return []
        else:
            raise TypeError(f"the {self.STAGE} stage does not take {kind.__name__}")
        return [] if dead is None else [(T_DLQ, dead)]

    def _release(self, horizon: Horizon) -> list[Tagged]:
        out: list[Tagged] = []
        for item in self.sequencer.release(horizon):
            self._process(item, out)
        return out

    def _horizon(self) -> Horizon:
        raise NotImplementedError

    def _process(self, item: object, out: list[Tagged]) -> None:
        raise NotImplementedError

    def _punctuation(self) -> list[Tagged]:
        return []


class RiskStage(_SplitStage):
    """Portfolio construction and pre-trade risk; the venue is the execution stage, so fills come
    back as reports and orders leave as ``orders.approved`` (with ``orders.intent`` /
    ``orders.rejected`` as in the fused desk). Its ledger is its own view for sizing and the
    breaker; the pnl stage publishes positions and P&L."""

    STAGE = "risk"

    def __init__(self, config: DeskConfig | None = None):
        super().__init__(config)
        account = self.config.account
        self.risk = RiskState(account, self.config.limits, calendar_by_name(self.config.venue.calendar))
        self.venue = RoutedVenue()
        self.ledger = desk_ledger(self.config)
        self.marked = MarkedLedger(self.ledger, self.risk)
        self.orders = OrderPath(account, PortfolioConstructor(self.config.portfolio), self.risk, self.venue,
                                self.marked, desk_allocation(self.config))
        self._pending_sections: list[int] = []  # bar ends queued, not processed yet (bar order)
        self.unwind = Unwinder(account)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("unwind", Unwinder(state["config"].account))  # a snapshot from before cancel-all/flatten
        self.__dict__.update(state)

    def _now_ns(self) -> int:
        """Cancel-all and flatten orders: no older than what was processed, nor than the promise
        already made to the execution stage (it would dead-letter them as late)."""
        return max(self.sequencer.released[0], self._emitted, 0)

    @property
    def counts(self) -> dict[str, int]:
        return {**self.orders.counts, "fills": self.marked.fills, **self.sequencer.counts}

    def _queue(self, item: object) -> list[Tagged]:
        kind = type(item)
        if kind is CrossSection:
            self.sequencer.queue_section(item)
            self._pending_sections.append(item.bar_end)
            return []
        if kind is ControlCommand:
            if self.orders.allocation is not None:
                self.orders.allocation.on_control(item)
            out: list[Tagged] = [(T_CONTROL, item), *((T_CONTROL, c) for c in self.risk.on_control(item))]
            self.unwind.on_command(item, self._now_ns(), self.orders, out, self._book)
            return out
        return super()._queue(item)

    def _horizon(self) -> Horizon:
        # Reports at the execution watermark itself may still come: stop just before them.
        return min(self.sequencer.section_horizon(), (self._upstream, REPORT))

    def _process(self, item: object, out: list[Tagged]) -> None:
        kind = type(item)
        if kind is TickBatch:
            self.marked.on_run(item)
        elif kind is Trade:
            self.marked.on_trade(item)
        elif kind is Quote:
            self.marked.on_quote(item)  # the touch, where passive orders rest, and the first mark
        elif kind is BarEnd:
            self._risk_view(self.marked.bar_snapshot(item), out)
        elif kind is ExecutionReport:
            self._book([item], out)
        else:
            self._pending_sections.pop(0)  # released in bar order
            self.orders.on_section(item, out, self._book)

    def _book(self, reports: Iterable[ExecutionReport], out: list[Tagged]) -> None:
        reports = list(reports)
        for report in reports:
            self.venue.on_report(report)
            self.risk.on_execution_report(report)
            if report.is_fill:
                self._risk_view(self.marked.book_fill(report), out)
        if self.unwind.pending and reports:  # a flatten waiting for its cancels' answers
            self.unwind.on_reports(reports, self._now_ns(), self.orders, out, self._book)

    def _risk_view(self, records: Iterable[Record], out: list[Tagged]) -> None:
        """Snapshots feed the breaker (a trip is a control record); publishing them is pnl's job."""
        for record in records:
            if type(record) is not PnlSnapshot:
                continue
            if record.strategy == ACCOUNT_SCOPE:
                out.extend((T_CONTROL, c) for c in self.risk.on_pnl(record))
            elif self.orders.allocation is not None:  # a strategy's own breaker
                out.extend((T_CONTROL, c) for c in self.orders.allocation.on_pnl(record))

    def _punctuation(self) -> list[Tagged]:
        sequencer = self.sequencer
        if self._pending_sections:
            promise = self._pending_sections[0]
        elif sequencer.signal_watermark >= 0:
            promise = sequencer.signal_watermark + sequencer.interval_ns
        elif sequencer.knows_every_symbol() and (earliest := sequencer.earliest_section()) is not None:
            promise = earliest
        else:
            return []
        if promise <= self._emitted:
            return []
        self._emitted = promise
        return [(T_APPROVED, _watermark(self.STAGE, self.config.account, promise))]


class ExecutionStage(_SplitStage):
    """The venue (simulated) on approved orders and the tape, in event time below risk's promise."""

    STAGE = "execution"

    def __init__(self, config: DeskConfig | None = None, venue=None):
        super().__init__(config)
        self.venue = venue if venue is not None else SimVenue(self.config.venue)
        self._counts = {"approved": 0, "fills": 0}

    @property
    def counts(self) -> dict[str, int]:
        return {**self._counts, **self.sequencer.counts}

    def _horizon(self) -> Horizon:
        market = self.sequencer.market_horizon()
        if market is None:
            return (-1, 0)
        return min((market, 0), (self._upstream, 0))

    def _process(self, item: object, out: list[Tagged]) -> None:
        kind = type(item)
        venue = self.venue
        if kind is TickBatch:
            venue.on_ticks(item, lambda row, reports: self._book(reports, out))
        elif kind is Trade:
            self._book(venue.on_trade(item), out)
        elif kind is Quote:
            self._book(venue.on_quote(item), out)
        elif kind is BarEnd:
            self._book(venue.on_time(item.bar_end, item.ts_tick_ingest), out)
        elif kind is Order:
            self._counts["approved"] += 1
            self._book(venue.on_order(item), out)
        else:
            raise TypeError(f"the execution stage queues orders, not {kind.__name__}")

    def _book(self, reports: Iterable[ExecutionReport], out: list[Tagged]) -> None:
        for report in reports:
            out.append((T_REPORTS, report))
            if report.is_fill:
                self._counts["fills"] += 1

    def _punctuation(self) -> list[Tagged]:
        ts, _ = self._horizon()
        if ts <= self._emitted:
            return []
        self._emitted = ts
        return [(T_REPORTS, _watermark(self.STAGE, self.config.account, ts))]


class PnlStage(_SplitStage):
    """The ledger of record: fills from ``exec.reports`` and marks from the tape, in event time
    below the execution watermark, into ``positions`` and ``pnl``."""

    STAGE = "pnl"

    def __init__(self, config: DeskConfig | None = None):
        super().__init__(config)
        self.ledger = desk_ledger(self.config)
        self.marked = MarkedLedger(self.ledger)

    @property
    def counts(self) -> dict[str, int]:
        return {"fills": self.marked.fills, **self.sequencer.counts}

    def _horizon(self) -> Horizon:
        market = self.sequencer.market_horizon()
        if market is None:
            return (-1, 0)
        return min((market, 0), (self._upstream, REPORT))

    def _process(self, item: object, out: list[Tagged]) -> None:
        kind = type(item)
        if kind is TickBatch:
            self.marked.on_run(item)
        elif kind is Trade:
            self.marked.on_trade(item)
        elif kind is Quote:
            self.marked.on_quote(item)
        elif kind is BarEnd:
            self._snapshots(self.marked.bar_snapshot(item), out)
        elif kind is ExecutionReport:
            if item.is_fill:
                self._snapshots(self.marked.book_fill(item), out)
        else:
            raise TypeError(f"the pnl stage queues execution reports, not {kind.__name__}")

    def _snapshots(self, records: Iterable[Record], out: list[Tagged]) -> None:
        for record in records:
            out.append((T_PNL if type(record) is PnlSnapshot else T_POSITIONS, record))


TRADING_STAGES = {"risk": RiskStage, "execution": ExecutionStage, "pnl": PnlStage}
