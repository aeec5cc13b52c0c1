"""Risk, execution and P&L as three stages of their own (the split topology's separate processes).

The fused :class:`trading.desk.TradingDesk` runs portfolio construction, risk, the venue and the
ledger in one operator. Here each runs in its own process, between Kafka topics:

    risk       signals (cross-sections), md.trades, md.quotes, control, exec.reports
               -> orders.intent, orders.approved (+ watermarks), orders.rejected, control
    execution  orders.approved, md.trades, md.quotes   -> exec.reports (+ watermarks)
    pnl        exec.reports, md.trades, md.quotes      -> positions, pnl

Each stage reuses the desk's event-time machinery (one heap, the market watermark, the bar clock)
and the same cores (PortfolioConstructor, RiskState, SimVenue, Ledger), so with limits that do not
bind the three give the same orders, fills, positions and P&L as the fused desk.

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

from trading.desk import (
    _CROSS_SECTION,
    _REPORT,
    T_APPROVED,
    T_CONTROL,
    T_DLQ,
    T_PNL,
    T_POSITIONS,
    T_REPORTS,
    DeskConfig,
    Tagged,
    TradingDesk,
)
from market.normalize import RecentTradeIds
from trading.ledger import ACCOUNT_SCOPE
from schemas import DeadLetter, ExecutionReport, Order, PnlSnapshot, Record, StageWatermark, now_ns
from venues.routed import RoutedVenue

RECENT_IDS = 100_000  # order / report ids remembered for redelivery checks (far more than an epoch)


def _watermark(stage: str, account: str, ts: int) -> StageWatermark:
    return StageWatermark(id=f"wm:{stage}:{account}:{ts}", ts_event=ts, ts_ingest=now_ns(), stage=stage, account=account)


class _SplitStage(TradingDesk):
    """Shared by the three stages: an upstream watermark caps the horizon, repeats are dropped."""

    STAGE = ""

    def __init__(self, config: DeskConfig | None = None, venue=None):
        super().__init__(config, venue)
        self._upstream = -1  # the upstream stage's latest watermark
        self._emitted = -1  # our own latest watermark
        self._recent = RecentTradeIds(RECENT_IDS)

    def on_batch(self, items: list) -> list[Tagged]:
        out = super().on_batch(items)
        out.extend(self._punctuation())
        return out

    def on_item(self, item: object) -> list[Tagged]:
        kind = type(item)
        if kind is StageWatermark:
            self._upstream = max(self._upstream, item.ts_event)
            return []
        if kind is Order or kind is ExecutionReport:
            return self._queue_routed(item)
        return super().on_item(item)

    def _queue_routed(self, record: Order | ExecutionReport) -> list[Tagged]:
        if not self._recent.add_if_new(record.id):
            self.counts["duplicates"] += 1
            return []
        key = (record.ts_event, _CROSS_SECTION if type(record) is Order else _REPORT)
        if key < self._released:
            self.counts["late"] += 1
            return [(T_DLQ, self._late_routed(record))]
        self._push(key[0], key[1], record.symbol, record)
        return []

    def _late_routed(self, record: Order | ExecutionReport) -> DeadLetter:
        return DeadLetter(
            id=f"dlq:{self.STAGE}:{record.id}", ts_event=record.ts_event, ts_ingest=now_ns(),
            source_topic="orders.approved" if type(record) is Order else "exec.reports", stage=self.STAGE,
            reason="late", detail=f"event time {record.ts_event} is before what the {self.STAGE} stage "
            f"already processed ({self._released[0]}): the upstream broke its watermark",
            symbol=record.symbol, payload=record.to_json().decode())

    def _punctuation(self) -> list[Tagged]:
        return []

    def flush(self) -> list[Tagged]:
        """Nothing: releasing past the watermarks would break the lock-step (module docstring)."""
        return []


class RiskStage(_SplitStage):
    """Portfolio construction and pre-trade risk; the venue is the execution stage, so fills come
    back as reports and orders leave as ``orders.approved`` (with ``orders.intent`` /
    ``orders.rejected`` as in the fused desk). Its ledger is its own view for sizing and the
    breaker; the pnl stage publishes positions and P&L."""

    STAGE = "risk"

    def __init__(self, config: DeskConfig | None = None):
        super().__init__(config, RoutedVenue())
        self._pending_sections: list[int] = []  # bar ends queued, not processed yet (bar order)

    def _queue_section(self, section) -> None:
        super()._queue_section(section)
        self._pending_sections.append(section.bar_end)

    def _on_section(self, section, out: list[Tagged]) -> None:
        self._pending_sections.pop(0)  # released in bar order
        super()._on_section(section, out)

    def _horizon(self) -> tuple[int, int]:
        # Reports at the execution watermark itself may still come: stop just before them.
        return min(super()._horizon(), (self._upstream, _REPORT))

    def _on_trade(self, trade, out: list[Tagged]) -> None:
        self.risk.on_trade(trade.symbol, trade.price, trade.ts_event)
        self.ledger.on_mark(trade.symbol, trade.price, trade.ts_event, trade.ts_tick_ingest)

    def _on_quote(self, quote, out: list[Tagged]) -> None:
        self._note_quote(quote)  # the touch, where passive orders rest, and the first mark

    def _on_bar_end(self, bar, out: list[Tagged]) -> None:
        self._risk_view(self._bar_snapshot(bar), out)

    def _on_queued(self, item, out: list[Tagged]) -> None:
        if type(item) is ExecutionReport:
            self._book([item], out)
        else:
            self._on_section(item, out)

    def _book(self, reports: Iterable[ExecutionReport], out: list[Tagged]) -> None:
        for report in reports:
            self.venue.on_report(report)
            self.risk.on_execution_report(report)
            if report.is_fill:
                self._risk_view(self._book_fill(report), out)

    def _risk_view(self, records: Iterable[Record], out: list[Tagged]) -> None:
        """Snapshots feed the breaker (a trip is a control record); publishing them is pnl's job."""
        for record in records:
            if type(record) is PnlSnapshot and record.strategy == ACCOUNT_SCOPE:
                out.extend((T_CONTROL, c) for c in self.risk.on_pnl(record))

    def _punctuation(self) -> list[Tagged]:
        if self._pending_sections:
            promise = self._pending_sections[0]
        elif self._watermark >= 0:
            promise = self._watermark + self._interval_ns
        elif self.config.universe is not None and self._market_horizon() is not None:
            promise = self._earliest_section()
        else:
            return []
        if promise <= self._emitted:
            return []
        self._emitted = promise
        return [(T_APPROVED, _watermark(self.STAGE, self.config.account, promise))]


class ExecutionStage(_SplitStage):
    """The venue (simulated) on approved orders and the tape, in event time below risk's promise."""

    STAGE = "execution"

    def _horizon(self) -> tuple[int, int]:
        market = self._market_horizon()
        if market is None:
            return (-1, 0)
        return min((market, 0), (self._upstream, 0))

    def _on_trade(self, trade, out: list[Tagged]) -> None:
        self._book(self.venue.on_trade(trade), out)

    def _on_quote(self, quote, out: list[Tagged]) -> None:
        self._book(self.venue.on_quote(quote), out)

    def _on_bar_end(self, bar, out: list[Tagged]) -> None:
        self._book(self.venue.on_time(bar.bar_end, bar.ts_tick_ingest), out)

    def _on_queued(self, item, out: list[Tagged]) -> None:
        if type(item) is not Order:
            raise TypeError(f"the execution stage queues orders, not {type(item).__name__}")
        self.counts["approved"] += 1
        self._book(self.venue.on_order(item), out)

    def _book(self, reports: Iterable[ExecutionReport], out: list[Tagged]) -> None:
        for report in reports:
            out.append((T_REPORTS, report))
            if report.is_fill:
                self.counts["fills"] += 1

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

    def _horizon(self) -> tuple[int, int]:
        market = self._market_horizon()
        if market is None:
            return (-1, 0)
        return min((market, 0), (self._upstream, _REPORT))

    def _on_trade(self, trade, out: list[Tagged]) -> None:
        self.ledger.on_mark(trade.symbol, trade.price, trade.ts_event, trade.ts_tick_ingest)

    def _on_quote(self, quote, out: list[Tagged]) -> None:
        self._note_quote(quote)

    def _on_bar_end(self, bar, out: list[Tagged]) -> None:
        self._snapshots(self._bar_snapshot(bar), out)

    def _on_queued(self, item, out: list[Tagged]) -> None:
        if type(item) is not ExecutionReport:
            raise TypeError(f"the pnl stage queues execution reports, not {type(item).__name__}")
        if item.is_fill:
            self._snapshots(self._book_fill(item), out)

    def _snapshots(self, records: Iterable[Record], out: list[Tagged]) -> None:
        for record in records:
            out.append((T_PNL if type(record) is PnlSnapshot else T_POSITIONS, record))


TRADING_STAGES = {"risk": RiskStage, "execution": ExecutionStage, "pnl": PnlStage}
