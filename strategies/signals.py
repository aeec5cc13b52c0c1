"""Signals stage core: feature vectors -> cross-sections -> signals and intended orders.

``SignalState`` is the functional core of the ``signals`` stage (DESIGN §2). It is driven by one
stream of feature vectors for one account and strategy (the Bytewax builder keys it on the account,
so every symbol of a bar meets in one state), and it emits, per bar time, one ``Signal`` per symbol
and the delta ``Order``s that move the book to the strategy's targets.

Cross-section completion, in event time only (never the wall clock, so replays are identical):

- every symbol's vectors arrive in bar order, so once a symbol delivered bar time T or a later one
  it will never deliver anything earlier. Bar time T is **released** when every symbol of the
  universe has reached T. A symbol with no trades in a bar has no bar and no vector; it reaches T by
  delivering a later bar, and is absent from T's cross-section (its position is left as it is).
  This rule depends only on *what* arrived, never on how the engine interleaved the symbols, so the
  released cross-sections are identical however Bytewax batched them.
- without a universe the symbols seen so far stand in for it, and a bar time also waits until a
  later one shows up (after one vector there is no knowing who else is coming). Pipelines pass the
  universe whenever the feed knows it.
- a silent symbol would hold every bar back: T is released anyway once any symbol is
  ``max_wait_bars`` bars past it (default 30).
- ``flush()`` releases everything pending at end of stream.

Bar times are released in increasing order. A vector for an already released bar time is a
duplicate (ignored) if that symbol was in the released cross-section, otherwise it is late and goes
out as a ``DeadLetter`` (reason ``late``) for the dlq, never silently dropped. A second vector for a
pending (symbol, bar time) is a duplicate and ignored; the first one wins.

Book view for netting: filled positions plus working (open) order quantity. An order this state
sends counts as working until an execution report closes it, so the same delta is never sent twice
while the venue works the first one. In the split topology fills come back through
``on_execution_report``; in the fused topology Bytewax allows no cycle back into this stage, so
``book_orders_as_filled=True`` books each order into the position view when it is sent (the book
is then "as intended", and memory stays bounded without reports).

Output order is deterministic: per bar time, signals sorted by symbol, then orders sorted by symbol.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from schemas import INTERVAL_NANOS, DeadLetter, ExecutionReport, FeatureVector, Order, RiskReject, Signal, now_ns
from strategies.base import Strategy, is_valid_target
from strategies.ids import signal_id
from strategies.portfolio import PortfolioConstructor

@dataclass(frozen=True)
class CrossSection:
    """Every signal of one released bar time, as one item.

    In the fused topology the trading desk consumes these instead of orders: it builds the orders
    itself against the ledger's real positions (no cycle is needed back into this stage), and the
    arrival of bar time T tells it that no signal for T or earlier will follow (its watermark)."""

    bar_end: int
    signals: tuple[Signal, ...]
    ts_tick_ingest: int  # of the tick that completed the cross-section


SignalOutput = Union[Signal, Order, DeadLetter, CrossSection]

STAGE = "signals"
SOURCE_TOPIC = "features"
# Released bar times remembered to tell a re-delivered vector (ignore) from a late one (dlq).
RELEASED_MEMORY = 64
# Fill ids remembered for de-duplication; duplicates arrive within retries/replays, not days later.
FILL_ID_MEMORY = 100_000
_QTY_EPSILON = 1e-9


@dataclass
class WorkingOrder:
    """An order this state sent and no report has closed yet; ``leaves`` is unsigned."""

    symbol: str
    sign: int
    leaves: float


class SignalState:
    """Collects feature vectors per bar time and runs the strategies and portfolio on each cross-section.

    ``strategy``: one strategy, or several that trade side by side (each scores every released
    cross-section; their signals go out together, in one :class:`CrossSection` per bar, sorted by
    strategy then symbol). Orders (``emit_orders``) are built here for a single strategy only: with
    several, the desk sizes each one's orders against its own capital and positions."""

    def __init__(
        self,
        strategy: Strategy | Sequence[Strategy],
        portfolio: PortfolioConstructor,
        account: str,
        symbols: Iterable[str] | None = None,
        max_wait_bars: int = 30,
        interval: str = "1s",
        book_orders_as_filled: bool = False,
        emit_orders: bool = True,
    ) -> None:
        if max_wait_bars < 1:
            raise ValueError("max_wait_bars must be >= 1")
        if not account:
            raise ValueError("account must be non-empty")
        strategies = tuple(strategy) if isinstance(strategy, (list, tuple)) else (strategy,)
        if not strategies:
            raise ValueError("the signals stage needs at least one strategy")
        names = [s.name for s in strategies]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names must differ (they key orders and the ledger): {names}")
        if len({s.feature_set for s in strategies}) != 1:
            raise ValueError("the strategies of one signals stage must read one feature set")
        if emit_orders and len(strategies) > 1:
            raise ValueError("several strategies: the desk sizes their orders (emit_orders=False)")
        self.strategies = tuple(sorted(strategies, key=lambda s: s.name))
        self.strategy = self.strategies[0]
        self.portfolio = portfolio
        self.account = account
        self.symbols: frozenset[str] | None = frozenset(symbols) if symbols is not None else None
        self.max_wait_bars = max_wait_bars
        self.interval = interval
        self.book_orders_as_filled = book_orders_as_filled
        self.emit_orders = emit_orders
        self._interval_ns = INTERVAL_NANOS[interval]
        self._progress: dict[str, int] = {}  # symbol -> latest bar time it delivered

        self._pending: dict[int, dict[str, FeatureVector]] = {}
        self._released: OrderedDict[int, frozenset[str]] = OrderedDict()
        self._last_released: int | None = None
        self._positions: dict[str, float] = {}
        self._working: dict[str, WorkingOrder] = {}
        self._fill_keys: deque[tuple[str, str]] = deque()
        self._fill_key_set: set[tuple[str, str]] = set()
        self.stats = {"released": 0, "duplicates": 0, "late": 0, "ignored": 0, "orders": 0}

    # ------------------------------------------------------------------ features in

    def on_features(self, fv: FeatureVector) -> list[SignalOutput]:
        """Accept one vector; return what any cross-sections it completes produce."""
        if fv.feature_set != self.strategy.feature_set or fv.interval != self.interval:
            self.stats["ignored"] += 1  # another feature set or bar interval shares the topic
            return []
        if self.symbols is not None and fv.symbol not in self.symbols:
            self.stats["ignored"] += 1  # outside this strategy's universe
            return []
        bar_time = fv.bar_end
        if self._last_released is not None and bar_time <= self._last_released:
            if fv.symbol in self._released.get(bar_time, frozenset()):
                self.stats["duplicates"] += 1
                return []
            self.stats["late"] += 1
            return [self._late(fv)]
        bucket = self._pending.setdefault(bar_time, {})
        if fv.symbol in bucket:
            self.stats["duplicates"] += 1
            return []
        bucket[fv.symbol] = fv
        if bar_time > self._progress.get(fv.symbol, -1):
            self._progress[fv.symbol] = bar_time
        return self._release_ready()

    def flush(self) -> list[SignalOutput]:
        """End of stream: release every pending bar time, oldest first."""
        out: list[SignalOutput] = []
        for bar_time in sorted(self._pending):
            out.extend(self._release(bar_time))
        return out

    # ------------------------------------------------------------------ execution feedback

    def on_execution_report(self, report: ExecutionReport) -> list[SignalOutput]:
        """Update the book from one report of this account and strategy; emits nothing.

        Fills add to the position (once per fill id); every report shrinks the order's working
        quantity to the venue's ``leaves_qty`` (never grows it, so a stale duplicate report cannot
        resurrect quantity), and a terminal state (filled, canceled, rejected) closes the order.
        """
        if report.account != self.account or report.strategy != self.strategy.name:
            return []
        if self.book_orders_as_filled:
            return []  # the book already counts every sent order as filled
        if report.is_fill and self._remember_fill(report.client_order_id, report.fill_id):
            self._add_position(report.symbol, report.side.sign * report.last_qty)
        working = self._working.get(report.client_order_id)
        if working is not None:
            working.leaves = min(working.leaves, report.leaves_qty)
            if report.state.is_terminal or working.leaves <= _QTY_EPSILON:
                del self._working[report.client_order_id]
        return []

    def on_fill(self, report: ExecutionReport) -> list[SignalOutput]:
        """A fill report; the same path as any report (kept for readability at call sites)."""
        return self.on_execution_report(report)

    def on_order_closed(self, client_order_id: str) -> list[SignalOutput]:
        """An order will not (further) fill, e.g. denied before reaching the venue: release its
        working quantity so the next bar can re-send the delta."""
        self._working.pop(client_order_id, None)
        return []

    def on_reject(self, reject: RiskReject) -> list[SignalOutput]:
        """Pre-trade risk denied one of our orders: it never reached the venue."""
        if reject.account == self.account and reject.order.strategy == self.strategy.name:
            self.on_order_closed(reject.order.client_order_id)
        return []

    # ------------------------------------------------------------------ book view

    @property
    def positions(self) -> dict[str, float]:
        return {s: q for s, q in sorted(self._positions.items()) if q != 0.0}

    def open_qty(self) -> dict[str, float]:
        """Signed working quantity per symbol (buys positive)."""
        totals: dict[str, float] = {}
        for working in self._working.values():
            totals[working.symbol] = totals.get(working.symbol, 0.0) + working.sign * working.leaves
        return {s: q for s, q in sorted(totals.items()) if abs(q) > _QTY_EPSILON}

    @property
    def working_orders(self) -> dict[str, WorkingOrder]:
        return dict(self._working)

    @property
    def pending_bar_times(self) -> list[int]:
        return sorted(self._pending)

    # ------------------------------------------------------------------ internals

    def _expected_symbols(self) -> frozenset[str] | None:
        return self.symbols

    def _release_ready(self) -> list[SignalOutput]:
        """Release, oldest first, every bar time that every expected symbol has reached.

        A symbol has reached T once it delivered a vector for T or a later bar time (its vectors
        arrive in order, so it will never deliver T after a later one). This depends only on what
        arrived, not on how the upstream interleaved symbols, so releases are identical however the
        engine batched the vectors. A symbol that falls silent would hold every bar time back, so
        T is released anyway once any symbol has reached ``max_wait_bars`` bars past it.
        """
        expected = self._expected_symbols()
        if expected:
            reached = min(self._progress.get(symbol, -1) for symbol in expected)
        elif self._progress:
            # No universe: who else is coming is unknown, so a bar time waits until a later one
            # shows up and every symbol seen so far has reached it.
            newest = max(self._progress.values())
            reached = min(min(self._progress.values()), newest - 1)
        else:
            reached = -1
        valve = max(self._progress.values(), default=-1) - self.max_wait_bars * self._interval_ns
        out: list[SignalOutput] = []
        for bar_time in sorted(self._pending):
            if bar_time <= reached or bar_time <= valve:
                out.extend(self._release(bar_time))
            else:
                break
        return out

    def _release(self, bar_time: int) -> list[SignalOutput]:
        bucket = self._pending.pop(bar_time)
        self._last_released = bar_time
        self._released[bar_time] = frozenset(bucket)
        while len(self._released) > RELEASED_MEMORY:
            self._released.popitem(last=False)
        self.stats["released"] += 1

        cross_section = [bucket[s] for s in sorted(bucket)]
        ts_ingest = now_ns()
        signals: list[SignalOutput] = []
        for strategy in self.strategies:
            scores = strategy.score(cross_section)
            raw = strategy.target_weights(scores)
            # Every symbol in the cross-section gets a target; one the strategy left out is flat.
            weights = {v.symbol: float(raw.get(v.symbol, 0.0)) for v in cross_section}
            if not is_valid_target(weights):
                raise ValueError(f"strategy {strategy.name} broke the weight contract at {bar_time}: {weights}")
            name, version, model_version = strategy.name, strategy.version, strategy.model_version
            signals.extend(
                Signal(
                    id=signal_id(name, v.symbol, bar_time),
                    ts_event=bar_time,
                    ts_ingest=ts_ingest,
                    account=self.account,
                    strategy=name,
                    strategy_version=version,
                    model_version=model_version,
                    symbol=v.symbol,
                    bar_end=bar_time,
                    score=float(scores.get(v.symbol, 0.0)),
                    target_weight=weights[v.symbol],
                    ts_tick_ingest=v.ts_tick_ingest,
                    section_size=len(cross_section) * len(self.strategies),
                    section_seq=self.stats["released"],
                )
                for v in cross_section
            )
        strategy = self.strategy.name
        # The orders were caused by the tick that completed the cross-section: the latest one.
        tick_ingest = max(v.ts_tick_ingest for v in cross_section)
        if not self.emit_orders:
            return [CrossSection(bar_time, tuple(signals), tick_ingest)]
        weights = {signal.symbol: signal.target_weight for signal in signals}  # one strategy (see __init__)
        orders = self.portfolio.orders_for(
            targets=weights,
            prices={v.symbol: v.close for v in cross_section},
            positions=self._positions,
            open_qty=self.open_qty(),
            bar_end=bar_time,
            account=self.account,
            strategy=strategy,
            ts_tick_ingest=tick_ingest,
        )
        for order in orders:
            self._book_sent(order)
        self.stats["orders"] += len(orders)
        return signals + sorted(orders, key=lambda o: o.symbol)

    def _book_sent(self, order: Order) -> None:
        if self.book_orders_as_filled:
            self._add_position(order.symbol, order.side.sign * order.quantity)
        elif order.client_order_id not in self._working:
            self._working[order.client_order_id] = WorkingOrder(order.symbol, order.side.sign, order.quantity)

    def _add_position(self, symbol: str, signed_qty: float) -> None:
        # Round away float drift from summing fills; quantities are far coarser than 1e-9.
        quantity = round(self._positions.get(symbol, 0.0) + signed_qty, 9)
        if quantity == 0.0:
            self._positions.pop(symbol, None)
        else:
            self._positions[symbol] = quantity

    def _remember_fill(self, client_order_id: str, fill_id: str) -> bool:
        """True the first time a fill is seen; memory is bounded to the most recent fills."""
        key = (client_order_id, fill_id)
        if key in self._fill_key_set:
            return False
        self._fill_keys.append(key)
        self._fill_key_set.add(key)
        if len(self._fill_keys) > FILL_ID_MEMORY:
            self._fill_key_set.discard(self._fill_keys.popleft())
        return True

    def _late(self, fv: FeatureVector) -> DeadLetter:
        return DeadLetter(
            id=f"dlq:{STAGE}:{'+'.join(s.name for s in self.strategies)}:{fv.symbol}:{fv.bar_end}",
            ts_event=fv.ts_event,
            ts_ingest=now_ns(),
            source_topic=SOURCE_TOPIC,
            stage=STAGE,
            reason="late",
            detail=f"bar time {fv.bar_end} already released (last released {self._last_released})",
            symbol=fv.symbol,
            payload=fv.to_json().decode(),
        )


class CrossSectionAssembler:
    """Rebuilds :class:`CrossSection` items from Signals that crossed Kafka partitions.

    The signals topic is keyed by symbol, so one bar's signals arrive on several partitions in any
    order, possibly more than once (at-least-once delivery). A cross-section is complete when it
    holds ``section_size`` distinct (strategy, symbol) signals; cross-sections go out strictly in ``section_seq``
    order, so a complete later bar waits for an earlier one still in flight.
    """

    def __init__(self) -> None:
        self._next_seq = 1
        self._pending: dict[int, dict[tuple[str, str], Signal]] = {}  # section_seq -> (strategy, symbol) -> signal
        self.stats = {"signals": 0, "duplicates": 0, "released": 0}

    def on_signal(self, signal: Signal) -> list[CrossSection]:
        self.stats["signals"] += 1
        seq = signal.section_seq
        if seq < self._next_seq:
            self.stats["duplicates"] += 1  # redelivered after its cross-section went out
            return []
        bucket = self._pending.setdefault(seq, {})
        key = (signal.strategy, signal.symbol)
        if key in bucket:
            self.stats["duplicates"] += 1
            return []
        bucket[key] = signal
        out: list[CrossSection] = []
        while (ready := self._pending.get(self._next_seq)) is not None:
            first = next(iter(ready.values()))
            if len(ready) < first.section_size:
                break
            del self._pending[self._next_seq]
            signals = tuple(ready[s] for s in sorted(ready))
            out.append(CrossSection(first.bar_end, signals, max(s.ts_tick_ingest for s in signals)))
            self._next_seq += 1
            self.stats["released"] += 1
        return out
