"""The trading desk: portfolio construction, pre-trade risk, the venue and the ledger of one
account, in one functional core (DESIGN §2).

Bytewax allows no cycle, so the account's stages share one operator keyed by account: fills update
risk and the ledger at once, and orders are sized against the ledger's real positions (the signals
stage sends :class:`strategies.signals.CrossSection` items, not orders). The same core runs in the fused
embedded dataflow and in the split topology's ``trading`` flow over Kafka.

The desk is an :class:`trading.sequencer.EventSequencer` composed with the account's cores: the
sequencer decides when an input is final (event-time order whatever the batching or the topology,
so the same input and config give the same orders, fills and P&L), the desk says what happens to it:

- a cross-section: orders through risk to the venue (:class:`trading.order_path.OrderPath`);
- a bar end (the desk's own bar clock, derived from the trades): a venue time step and a
  position/P&L snapshot of a symbol that traded in the bar and filled or holds a position;
- bars instead of ticks (a bar replay): a bar's open is the venue's matching opportunity
  (``venues/sim.py``, fills from bars), its close the marks;
- trades and quotes: marks for risk and the ledger, the touch, and the venue's matching. Ticks
  that come as :class:`schemas.columns.TickBatch` columns are processed as runs with array
  operations; only the rows that can change a working order go through the venue one by one, and
  a fill there values the book at the marks of that very row.

Without a feed watermark the cost of determinism is latency: fills are computed when the horizon
passes them, about one bar plus the lateness window after the tick that caused them (their
``ts_event`` is the true simulated time). Behind an ordered feed's watermark (``schemas.columns.WATERMARK``)
the tape is final as it arrives, up to the next cross-section's bar time.

Operator commands (kill switch, limits) are not market events: they apply when they arrive.
"""

from __future__ import annotations

from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field

from market.calendar import calendar_by_name
from schemas import (
    Bar,
    ControlCommand,
    ExecutionReport,
    PnlSnapshot,
    Quote,
    Record,
    TapeWatermark,
    Trade,
)
from schemas.columns import TRADE, TickBatch
from strategies.portfolio import PortfolioConfig, PortfolioConstructor
from strategies.signals import CrossSection
from topics.catalog import table_name
from trading.allocation import CapitalAllocation, strategy_capital_amounts
from trading.ledger import ACCOUNT_SCOPE, Ledger
from trading.marks import MarkedLedger, RunMarks
from trading.order_path import T_APPROVED, T_INTENT, T_REJECTED, OrderPath, Tagged
from trading.risk import RiskState
from trading.risk_limits import RiskLimits, default_limits
from trading.sequencer import BarClose, BarEnd, BarOpen, EventSequencer, Horizon
from trading.unwind import Unwinder
from venues.reconcile import ADOPT_POSITION, is_adoption
from venues.sim import SimVenue
from venues.sim_config import SimVenueConfig

__all__ = [
    "T_APPROVED", "T_CONTROL", "T_DLQ", "T_INTENT", "T_PNL", "T_POSITIONS", "T_REJECTED", "T_REPORTS",
    "DeskConfig", "Tagged", "TradingDesk", "default_portfolio", "desk_allocation", "desk_ledger", "desk_sequencer",
]

T_REPORTS = table_name("exec.reports")
T_POSITIONS = table_name("positions")
T_PNL = table_name("pnl")
T_CONTROL = table_name("control")
T_DLQ = table_name("dlq")


def default_portfolio() -> PortfolioConfig:
    # 4% of capital per name, so a full flip (8%) stays under the default order-notional limit
    # (10%) and a book of 4 longs and 4 shorts far under the gross and per-name limits.
    return PortfolioConfig(capital=1_000_000.0, max_weight_per_name=0.04)


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
    redelivered_ticks: bool = Field(
        True, description="Whether a trade or quote may be delivered twice (Kafka is at-least-once): the desk then "
        "drops every market event whose id it has seen. The fused embedded flow hands ticks over in process, each "
        "once (a resume restarts feed and desk from the same snapshot), and turns the check off.")
    universe: tuple[str, ...] | None = Field(
        None, description="Symbols the market watermark waits for before any is processed (the split "
        "topology drains partitions one after another); None: the symbols seen so far.")
    market_streams: tuple[str, ...] = Field(
        ("trade", "quote"), description="What the feed delivers per symbol: the market watermark waits for each "
        "(a trades-only replay has no quotes to wait for).")
    portfolio: PortfolioConfig = Field(default_factory=default_portfolio)
    strategy_capital: dict[str, float] = Field(
        default_factory=dict, description="Strategy name -> fraction of the capital it trades, for several "
        "strategies on one account (trading/allocation.py); empty: each is sized against the whole capital.")
    limits: RiskLimits = Field(default_factory=default_limits)
    venue: SimVenueConfig = Field(default_factory=SimVenueConfig)


def desk_ledger(config: DeskConfig) -> Ledger:
    """The account's ledger, each strategy valued against its own capital when the capital is split."""
    return Ledger(config.account, config.capital, strategy_capital_amounts(config.capital, config.strategy_capital))


def desk_allocation(config: DeskConfig) -> CapitalAllocation | None:
    """Per-strategy sizing and limits when the capital is split between strategies, else None."""
    if not config.strategy_capital:
        return None
    return CapitalAllocation(config.strategy_capital, config.portfolio, config.limits)


def desk_sequencer(config: DeskConfig, stage: str = "desk") -> EventSequencer:
    """The sequencer a desk or split stage with ``config`` composes."""
    return EventSequencer(config.bar_interval, config.lateness_ns, config.silent_after_ns,
                          config.universe, config.market_streams, stage, config.redelivered_ticks)


class TradingDesk:
    """``venue``: the simulated exchange by default; a live venue (Alpaca) is passed in, and its
    execution reports, which arrive on their own, come back through :meth:`on_item`.

    Inputs: Trade and Quote records, :class:`schemas.columns.TickBatch` columns (its rows as if each
    were its record; its ``watermark`` makes everything older final at once), CrossSections,
    ControlCommands and a live venue's ExecutionReports (adoption records among them:
    ``venues.reconcile.adoption_record``, booked as positions, not as fills). Outputs:
    ``(table, record)`` pairs. A venue with ``on_booked(report)`` is told of every report once the
    desk has booked it."""

    def __init__(self, config: DeskConfig | None = None, venue=None):
        self.config = config or DeskConfig()
        account = self.config.account
        self.risk = RiskState(account, self.config.limits, calendar_by_name(self.config.venue.calendar))
        self.venue = venue if venue is not None else SimVenue(self.config.venue)
        self.ledger = desk_ledger(self.config)
        self.sequencer = desk_sequencer(self.config)
        self.marked = MarkedLedger(self.ledger, self.risk)
        self.orders = OrderPath(account, PortfolioConstructor(self.config.portfolio), self.risk, self.venue,
                                self.marked, desk_allocation(self.config))
        self.unwind = Unwinder(account)
        # A live venue keeps the desk's view of its positions and working orders, as booked here, to
        # reconcile with the broker from its own thread (venues/reconcile_loop.py).
        self._on_booked = getattr(self.venue, "on_booked", None)

    def __setstate__(self, state: dict) -> None:
        state.setdefault("unwind", Unwinder(state["config"].account))  # a snapshot from before cancel-all/flatten
        state.setdefault("_on_booked", None)  # ... or from before reconciliation
        self.__dict__.update(state)

    @property
    def portfolio(self) -> PortfolioConstructor:
        return self.orders.portfolio

    @property
    def counts(self) -> dict[str, int]:
        """Cross-sections, orders (approved, rejected), fills, and market events dropped as
        redelivered (duplicates) or dead-lettered as late."""
        return {**self.orders.counts, "fills": self.marked.fills, **self.sequencer.counts}

    # ------------------------------------------------------------------ inputs

    def on_market(self, record: Trade | Quote) -> list[Tagged]:
        """Queue a trade or quote; processed once the horizon passes it."""
        dead = self.sequencer.queue_market(record)
        out: list[Tagged] = [] if dead is None else [(T_DLQ, dead)]
        out.extend(self._release(self.sequencer.section_horizon()))
        return out

    def on_cross_section(self, section: CrossSection) -> list[Tagged]:
        self.sequencer.queue_section(section)
        return self._release(self.sequencer.section_horizon())

    def on_batch(self, items: list) -> list[Tagged]:
        """A batch of inputs in arrival order, released once at its end: the horizon is computed per
        batch instead of per item (the result is the same, the queue is processed in key order)."""
        out: list[Tagged] = []
        sequencer = self.sequencer
        ticks: list[TickBatch] = []  # consecutive tick batches, queued as one
        for item in items:
            kind = type(item)
            if kind is TickBatch:
                ticks.append(item)
                continue
            if ticks:
                out.extend((T_DLQ, dead) for dead in sequencer.queue_tick_batches(ticks))
                ticks = []
            if kind is Trade or kind is Quote:
                dead = sequencer.queue_market(item)
                if dead is not None:
                    out.append((T_DLQ, dead))
            elif kind is Bar:
                if self.config.market_streams != ("bar",):
                    raise TypeError("the desk takes a Bar only in a bar replay (market_streams ('bar',)); fed "
                                    "ticks, it keeps its own bar clock from the trades")
                dead = sequencer.queue_bar(item)
                if dead is not None:
                    out.append((T_DLQ, dead))
            elif kind is CrossSection:
                sequencer.queue_section(item)
            elif kind is TapeWatermark:
                sequencer.advance_stream(item)
            else:
                out.extend(self._now(item))
        if ticks:
            out.extend((T_DLQ, dead) for dead in sequencer.queue_tick_batches(ticks))
        out.extend(self._release(sequencer.section_horizon()))
        return out

    def on_control(self, command: ControlCommand) -> list[Tagged]:
        """An operator's command applies now; it and any alert it causes land in ``control``.
        Cancel-all and flatten (``trading/unwind.py``) send their orders at the event time the
        desk has processed up to."""
        out: list[Tagged] = [(T_CONTROL, command)]
        out.extend((T_CONTROL, c) for c in self.risk.on_control(command))
        if self.orders.allocation is not None:
            self.orders.allocation.on_control(command)
        self.unwind.on_command(command, self._now_ns(), self.orders, out, self._book)
        return out

    def _now_ns(self) -> int:
        return max(self.sequencer.released[0], 0)

    def flush(self) -> list[Tagged]:
        """End of the tape: everything still queued, in event-time order."""
        return self._release(None)

    def on_item(self, item: object) -> list[Tagged]:
        kind = type(item)
        if kind is Trade or kind is Quote:
            return self.on_market(item)
        if kind is CrossSection:
            return self.on_cross_section(item)
        if kind is TickBatch or kind is Bar or kind is TapeWatermark:
            return self.on_batch([item])
        return self._now(item)

    def _now(self, item: object) -> list[Tagged]:
        """Inputs that are not market events: they apply when they arrive."""
        kind = type(item)
        if kind is ControlCommand:
            return self.on_control(item)
        if kind is ExecutionReport:
            # From a live venue: the fill happened in the real world already, book it now.
            out: list[Tagged] = []
            self._book([item], out)
            return out
        raise TypeError(f"the trading desk takes trades, quotes, tick batches, cross-sections and control, "
                        f"not {kind.__name__}")

    def submit(self, order, out: list[Tagged]) -> None:
        """One order intent through risk to the venue (its reports booked at once)."""
        self.orders.submit(order, out, self._book)

    # ------------------------------------------------------------------ event-time processing

    def _release(self, horizon: Horizon | None) -> list[Tagged]:
        out: list[Tagged] = []
        for item in self.sequencer.release(horizon):
            kind = type(item)
            if kind is TickBatch:
                self._on_run(item, out)
            elif kind is Trade:
                self.marked.on_trade(item)
                self._book(self.venue.on_trade(item), out)
            elif kind is Quote:
                self.marked.on_quote(item)
                self._book(self.venue.on_quote(item), out)
            elif kind is BarOpen:
                self._book(self.venue.on_bar_open(item.bar), out)
            elif kind is BarClose:
                self.marked.on_bar_close(item.bar)
            elif kind is BarEnd:
                self._book(self.venue.on_time(item.bar_end, item.ts_tick_ingest), out)
                self._snapshots(self.marked.bar_snapshot(item), out)
            else:
                self.orders.on_section(item, out, self._book)
        return out

    def _on_run(self, run: TickBatch, out: list[Tagged]) -> None:
        """A run of ticks with nothing else in between: the venue's reports are booked at their
        row, with the ledger marked as it was right after it (a fill's P&L snapshot values the
        book then); every other mark is set once, at the end of the run."""
        marks = RunMarks(self.marked, run)
        on_ticks = getattr(self.venue, "on_ticks", None)
        if on_ticks is not None:
            def book(row: int, reports: list[ExecutionReport]) -> None:
                marks.through(row)
                self._book(reports, out)

            on_ticks(run, book)
        else:  # a venue that does not take columns: row by row
            for row, record in enumerate(run.to_records()):
                reports = self.venue.on_trade(record) if run.kind[row] == TRADE else self.venue.on_quote(record)
                if reports:
                    marks.through(row)
                    self._book(reports, out)
        marks.finish()

    def _book(self, reports: Iterable[ExecutionReport], out: list[Tagged]) -> None:
        if self.unwind.pending:
            reports = list(reports)  # read twice
        on_booked = self._on_booked
        for report in reports:
            out.append((T_REPORTS, report))
            if report.is_fill:
                self.risk.on_execution_report(report)
                self._snapshots(self.marked.book_fill(report), out)
            elif report.reason == ADOPT_POSITION and is_adoption(report):
                # risk moves positions on fills only: shown as one (keyed by the record id) so the
                # adopted position counts against the limits like any other
                self.risk.on_execution_report(report.model_copy(update={"fill_id": report.id}))
                self._snapshots(self.marked.book_adoption(report), out)
            else:
                self.risk.on_execution_report(report)
            if on_booked is not None:
                on_booked(report)
        if self.unwind.pending:  # a flatten waiting for its cancels' answers
            self.unwind.on_reports(reports, self._now_ns(), self.orders, out, self._book)

    def _snapshots(self, records: Iterable[Record], out: list[Tagged]) -> None:
        for record in records:
            if type(record) is PnlSnapshot:
                out.append((T_PNL, record))
                if record.strategy == ACCOUNT_SCOPE:
                    out.extend((T_CONTROL, c) for c in self.risk.on_pnl(record))
                elif self.orders.allocation is not None:  # a strategy's own breaker
                    out.extend((T_CONTROL, c) for c in self.orders.allocation.on_pnl(record))
            else:
                out.append((T_POSITIONS, record))
