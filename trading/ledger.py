"""P&L stage core: the ``Ledger`` books fills into positions and P&L (DESIGN §1, last hop).

One ``Ledger`` per account (the stage is keyed by account). It is plain Python: no Bytewax, Kafka
or ClickHouse; the flow wiring calls :meth:`Ledger.on_fill` for every execution report,
:meth:`Ledger.on_mark` for every trade print and :meth:`Ledger.snapshot` at least once per 1s bar
for each symbol with a position.

Accounting conventions
----------------------
- **Positions** are per ``(strategy, symbol)`` at **average cost**. A fill that adds to a position
  (or opens one) moves the average cost; a fill that reduces it realizes
  ``closed_qty * (fill_price - avg_cost) * sign(position)`` and leaves the average cost alone; a
  fill that crosses zero realizes on the closing part and opens the remainder at the fill price.
- **Fees** (``ExecutionReport.fee``) are accumulated separately, never folded into the average cost
  or the realized P&L, so ``realized - fees`` is the closed-trade P&L net of costs.
- **Cash**: every fill moves cash by ``-signed_qty * price - fee``. ``check_balance`` verifies that
  cash plus the marked value of all positions equals equity, i.e. that avg-cost bookkeeping and
  the raw cash flows agree (to 1e-9 relative).
- **Marks** come from the tape, not from fills: the caller marks each symbol to its last trade
  price (or the mid before the first trade). A fill price is *our own* execution (it includes our
  slippage and spread crossing); marking to it would hide exactly the costs the P&L must show.
  Until a symbol has a mark, its positions are valued at their average cost (unrealized 0), so an
  unmarked symbol never creates phantom P&L. Marks older (in event time) than the current mark are
  ignored: a late trade must not pull the valuation back in time.
- **Equity** follows the schema (``PnlSnapshot``: capital + realized + unrealized - fees) at both
  levels. The account (``strategy == "*"``) carries ``initial_capital``; a strategy is measured as
  if it ran the whole account alone, so its equity is ``initial_capital`` + *its* P&L. This keeps
  ``drawdown`` in one unit everywhere: ``(peak_equity - equity) / peak_equity``, a fraction >= 0.
  When the account's capital is split between strategies (``strategy_capital``), a strategy is
  measured against its own share instead: equity = its capital + its P&L.
  A strategy's P&L in currency is ``equity - initial_capital`` (= realized + unrealized - fees).
  Peaks are taken over the emitted snapshots (fills and snapshot calls), i.e. sampled, not per tick.
- **Exposure**: ``gross = sum |qty * mark|``, ``net = sum qty * mark`` over the positions in scope.
- **Precision**: full float precision inside and on the wire (no rounding here; instrument
  increments are applied by the venue). A quantity within ``QTY_EPSILON`` of zero is flat: float
  residue such as ``0.3 - 0.1 - 0.2`` must not leave a phantom position.

Ids and replays
---------------
Every accepted fill is remembered by ``(venue, fill_id)``; a fill seen again (replay, retry,
at-least-once delivery) is ignored and returns ``[]``, so nothing is double-counted. Snapshot ids
are ``pos:{account}:{strategy}:{symbol}:{ts_event}:{seq}`` and ``pnl:{account}:{strategy}:
{ts_event}:{seq}`` where ``seq`` counts the ledger's emitting calls (one ``seq`` per on_fill or
snapshot call, shared by the records it emits). The same calls in the same order give the same
ids; two different snapshots never share one, so a ClickHouse ReplacingMergeTree keeps them all
while collapsing the duplicates a replay or retry re-inserts. ``seq`` is part of the (picklable)
state, so recovery resumes the numbering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from schemas.trusted import trusted_builder
from schemas import ExecutionReport, PnlSnapshot, PositionSnapshot, now_ns

ACCOUNT_SCOPE = "*"
"""The ``strategy`` value of an account-level ``PnlSnapshot``."""

QTY_EPSILON = 1e-9
"""A position smaller than this (in shares) is flat: 1e-9 is the finest fractional-share increment
(Alpaca), and anything below it is float residue from summing fractional fills."""

LedgerOutput = PositionSnapshot | PnlSnapshot


@dataclass(slots=True)
class _Book:
    """The running book of one (strategy, symbol)."""

    quantity: float = 0.0
    avg_cost: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    cash_flow: float = 0.0  # -sum(signed qty * price) - sum(fees): what these fills did to cash
    touched: bool = False  # filled since the last snapshot() (a closed book gets one flat snapshot)


@dataclass(slots=True)
class _Totals:
    """P&L aggregated over a set of books (a strategy or the account) at current marks."""

    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    fees: float = 0.0
    gross_exposure: float = 0.0
    net_exposure: float = 0.0


class Ledger:
    """Positions, cash and P&L of one account, booked from fills and valued at tape marks."""

    def __init__(self, account: str, initial_capital: float = 1_000_000.0,
                 strategy_capital: Mapping[str, float] | None = None) -> None:
        if not account:
            raise ValueError("a ledger needs an account")
        if not (math.isfinite(initial_capital) and initial_capital > 0):
            # drawdown is a fraction of peak equity, which needs a positive base
            raise ValueError(f"initial_capital must be finite and > 0, got {initial_capital!r}")
        self.account = account
        self.initial_capital = float(initial_capital)
        for name, amount in (strategy_capital or {}).items():
            if not (math.isfinite(amount) and amount > 0):
                raise ValueError(f"strategy {name!r}: capital must be finite and > 0, got {amount!r}")
        # strategy -> its capital; a strategy not in it is measured against the whole account
        self.strategy_capital = {name: float(amount) for name, amount in (strategy_capital or {}).items()}
        self._books: dict[tuple[str, str], _Book] = {}
        self._marks: dict[str, float] = {}
        self._mark_ts: dict[str, int] = {}
        self._booked_fills: set[tuple[str, str]] = set()
        self._peaks: dict[str, float] = {}  # scope (strategy or "*") -> peak equity emitted so far
        self._seq = 0
        self._counters = {
            "fills_booked": 0,
            "duplicate_fills_ignored": 0,
            "non_fill_reports_ignored": 0,
            "marks_applied": 0,
            "stale_marks_ignored": 0,
            "snapshot_calls": 0,
            "records_emitted": 0,
        }

    # ------------------------------------------------------------------ inputs

    def on_fill(self, report: ExecutionReport) -> list[LedgerOutput]:
        """Book a fill; return the (strategy, symbol) position, strategy P&L and account P&L.

        Non-fill reports (accepted, canceled, ...) and already booked fills return ``[]``.
        """
        if report.account != self.account:
            # the stage is keyed by account: another account's report here is a routing bug
            raise ValueError(f"report for account {report.account!r} sent to ledger {self.account!r}")
        if not report.is_fill:
            self._counters["non_fill_reports_ignored"] += 1
            return []
        fill_key = (report.venue, report.fill_id)  # fill ids are unique per venue, not globally
        if fill_key in self._booked_fills:
            self._counters["duplicate_fills_ignored"] += 1
            return []
        self._booked_fills.add(fill_key)
        self._counters["fills_booked"] += 1
        return self._book_execution(report)

    def on_adoption(self, report: ExecutionReport) -> list[LedgerOutput]:
        """Book a position taken over from the broker (an adoption record, ``venues.reconcile``):
        ``last_qty`` at ``last_price`` (the broker's average entry) moves the position and cash as a
        fill would, but it is no fill and counts as none. Booked once per record id; returns what
        :meth:`on_fill` returns."""
        if report.account != self.account:
            raise ValueError(f"adoption for account {report.account!r} sent to ledger {self.account!r}")
        if report.last_qty <= 0 or report.fill_id:
            raise ValueError(f"{report.id}: an adoption record has a quantity and no fill_id")
        key = (f"{report.venue}#adoption", report.id)  # beside the fill ids: one set, restored with them
        if key in self._booked_fills:
            self._counters["duplicate_fills_ignored"] += 1
            return []
        self._booked_fills.add(key)
        return self._book_execution(report)

    def _book_execution(self, report: ExecutionReport) -> list[LedgerOutput]:
        key = (report.strategy, report.symbol)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = _Book()
        _apply_fill(book, report.side.sign * report.last_qty, report.last_price, report.fee)

        self._seq += 1
        ts_event, tick, ingest = report.ts_event, report.ts_tick_ingest, now_ns()
        totals = self._totals()
        out: list[LedgerOutput] = [self._position_record(key, book, ts_event, tick, ingest)]
        out.append(self._pnl_record(report.strategy, totals[report.strategy], ts_event, tick, ingest))
        out.append(self._pnl_record(ACCOUNT_SCOPE, totals[ACCOUNT_SCOPE], ts_event, tick, ingest))
        self._counters["records_emitted"] += len(out)
        return out

    def on_mark(self, symbol: str, price: float, ts_event: int, ts_tick_ingest: int) -> None:
        """Mark ``symbol`` to ``price`` (last trade, or mid before any trade). No output: cheap enough
        to call on every trade; ``ts_tick_ingest`` is accepted for symmetry with the other inputs."""
        if not (math.isfinite(price) and price > 0):
            raise ValueError(f"mark for {symbol} must be finite and > 0, got {price!r}")
        last_ts = self._mark_ts.get(symbol)
        if last_ts is not None and ts_event < last_ts:
            self._counters["stale_marks_ignored"] += 1
            return
        self._marks[symbol] = float(price)
        self._mark_ts[symbol] = ts_event
        self._counters["marks_applied"] += 1

    def on_last_mark(self, symbol: str, price: float, ts_event: int, prints: int) -> None:
        """The last of ``prints`` trades of ``symbol`` in a run of the tape in event order: the
        state :meth:`on_mark` leaves after each of them, in one call (only the last one stays)."""
        if not (math.isfinite(price) and price > 0):
            raise ValueError(f"mark for {symbol} must be finite and > 0, got {price!r}")
        last_ts = self._mark_ts.get(symbol)
        if last_ts is not None and ts_event < last_ts:
            self._counters["stale_marks_ignored"] += prints
            return
        self._marks[symbol] = float(price)
        self._mark_ts[symbol] = ts_event
        self._counters["marks_applied"] += prints

    def snapshot(
        self, ts_event: int, ts_tick_ingest: int, symbols: set[str] | None = None
    ) -> list[LedgerOutput]:
        """Position snapshots for open or recently filled books in ``symbols`` (all when ``None``),
        then P&L for the strategies in scope, then the account P&L (always, so the equity curve
        has a sample per call even when flat)."""
        self._seq += 1
        self._counters["snapshot_calls"] += 1
        ingest = now_ns()
        out: list[LedgerOutput] = []
        strategies: set[str] = set()
        for key in sorted(self._books):  # sorted: deterministic output order across runs
            strategy, symbol = key
            if symbols is not None and symbol not in symbols:
                continue
            if symbols is None:
                strategies.add(strategy)  # a full snapshot reports every strategy ever traded
            book = self._books[key]
            if book.quantity == 0.0 and not book.touched:
                continue
            out.append(self._position_record(key, book, ts_event, ts_tick_ingest, ingest))
            book.touched = False
            strategies.add(strategy)
        totals = self._totals()
        for strategy in sorted(strategies):
            out.append(self._pnl_record(strategy, totals[strategy], ts_event, ts_tick_ingest, ingest))
        out.append(self._pnl_record(ACCOUNT_SCOPE, totals[ACCOUNT_SCOPE], ts_event, ts_tick_ingest, ingest))
        self._counters["records_emitted"] += len(out)
        return out

    # ------------------------------------------------------------------ queries

    def positions(self) -> dict[tuple[str, str], float]:
        """Open positions: (strategy, symbol) -> signed quantity (flat books left out)."""
        return {key: book.quantity for key, book in self._books.items() if book.quantity != 0.0}

    def position(self, symbol: str, strategy: str | None = None) -> float:
        """Signed quantity of ``symbol`` for ``strategy``, or net across strategies when ``None``."""
        if strategy is not None:
            book = self._books.get((strategy, symbol))
            return book.quantity if book is not None else 0.0
        return sum(b.quantity for (_, sym), b in self._books.items() if sym == symbol)

    def avg_cost(self, symbol: str, strategy: str) -> float:
        book = self._books.get((strategy, symbol))
        return book.avg_cost if book is not None else 0.0

    def mark(self, symbol: str) -> float | None:
        """The current mark of ``symbol``, ``None`` before the first one."""
        return self._marks.get(symbol)

    def pnl(self, strategy: str = ACCOUNT_SCOPE) -> dict[str, float]:
        """Realized, unrealized, fees, exposures and equity of a strategy or the account, now."""
        t = self._totals().get(strategy, _Totals())
        return {
            "realized_pnl": t.realized_pnl,
            "unrealized_pnl": t.unrealized_pnl,
            "fees": t.fees,
            "gross_exposure": t.gross_exposure,
            "net_exposure": t.net_exposure,
            "equity": self._equity(t, strategy),
        }

    def account_equity(self) -> float:
        return self._equity(self._totals()[ACCOUNT_SCOPE])

    def cash(self) -> float:
        """Initial capital plus every fill's cash flow (fees included)."""
        return self.initial_capital + math.fsum(b.cash_flow for b in self._books.values())

    def check_balance(self, rel_tol: float = 1e-9) -> bool:
        """True when cash + sum(qty * mark) equals the avg-cost equity within ``rel_tol``.

        The tolerance is relative to the largest magnitude involved (equity, cash, gross exposure):
        cash accumulates traded notional, so its float error scales with turnover, not with equity.
        """
        totals = self._totals()[ACCOUNT_SCOPE]
        cash = self.cash()
        valued = cash + math.fsum(b.quantity * self._valuation_price(sym, b)
                                  for (_, sym), b in self._books.items())
        equity = self._equity(totals)
        scale = max(abs(equity), abs(cash), totals.gross_exposure, 1.0)
        return abs(valued - equity) <= rel_tol * scale

    def stats(self) -> dict[str, int | float]:
        """Counters for monitoring: fills booked, duplicates ignored, marks, emissions, positions."""
        return {
            **self._counters,
            "books": len(self._books),
            "open_positions": sum(1 for b in self._books.values() if b.quantity != 0.0),
            "marked_symbols": len(self._marks),
            "seq": self._seq,
            "equity": self.account_equity(),
        }

    # ------------------------------------------------------------------ internals

    def _valuation_price(self, symbol: str, book: _Book) -> float:
        mark = self._marks.get(symbol)
        return mark if mark is not None else book.avg_cost  # unmarked: no phantom P&L

    def capital(self, scope: str = ACCOUNT_SCOPE) -> float:
        """The capital a strategy (or the account, ``"*"``) is measured against."""
        return self.strategy_capital.get(scope, self.initial_capital)

    def _equity(self, totals: _Totals, scope: str = ACCOUNT_SCOPE) -> float:
        return self.capital(scope) + totals.realized_pnl + totals.unrealized_pnl - totals.fees

    def _totals(self) -> dict[str, _Totals]:
        """One pass over all books: totals per strategy and for the account ("*")."""
        out: dict[str, _Totals] = {ACCOUNT_SCOPE: _Totals()}
        account = out[ACCOUNT_SCOPE]
        marks = self._marks
        for (strategy, symbol), book in self._books.items():
            t = out.get(strategy)
            if t is None:
                t = out[strategy] = _Totals()
            qty = book.quantity
            if qty == 0.0:  # flat books still carry realized P&L and fees, nothing else
                t.realized_pnl += book.realized_pnl
                t.fees += book.fees
                account.realized_pnl += book.realized_pnl
                account.fees += book.fees
                continue
            price = marks.get(symbol, book.avg_cost)  # = _valuation_price, inlined: hot path
            value = qty * price
            unrealized = qty * (price - book.avg_cost)
            t.realized_pnl += book.realized_pnl
            t.unrealized_pnl += unrealized
            t.fees += book.fees
            t.gross_exposure += abs(value)
            t.net_exposure += value
            account.realized_pnl += book.realized_pnl
            account.unrealized_pnl += unrealized
            account.fees += book.fees
            account.gross_exposure += abs(value)
            account.net_exposure += value
        return out

    def _position_record(
        self, key: tuple[str, str], book: _Book, ts_event: int, tick: int, ingest: int
    ) -> PositionSnapshot:
        strategy, symbol = key
        price = self._valuation_price(symbol, book)
        return _build_position(
            id=f"pos:{self.account}:{strategy}:{symbol}:{ts_event}:{self._seq}",
            ts_event=ts_event,
            ts_ingest=ingest,
            account=self.account,
            strategy=strategy,
            symbol=symbol,
            quantity=book.quantity,
            avg_cost=book.avg_cost,
            mark_price=price,
            market_value=book.quantity * price + 0.0,  # + 0.0 turns -0.0 into 0.0 on the wire
            realized_pnl=book.realized_pnl + 0.0,
            unrealized_pnl=book.quantity * (price - book.avg_cost) + 0.0,
            fees=book.fees,
            ts_tick_ingest=tick,
        )

    def _pnl_record(self, scope: str, t: _Totals, ts_event: int, tick: int, ingest: int) -> PnlSnapshot:
        equity = self._equity(t, scope)
        peak = max(self._peaks.get(scope, self.capital(scope)), equity)
        self._peaks[scope] = peak
        drawdown = (peak - equity) / peak if peak > 0 else 0.0
        return _build_pnl(
            id=f"pnl:{self.account}:{scope}:{ts_event}:{self._seq}",
            ts_event=ts_event,
            ts_ingest=ingest,
            account=self.account,
            strategy=scope,
            realized_pnl=t.realized_pnl + 0.0,
            unrealized_pnl=t.unrealized_pnl + 0.0,
            fees=t.fees,
            equity=equity,
            peak_equity=peak,
            drawdown=max(0.0, drawdown),
            gross_exposure=t.gross_exposure,
            net_exposure=t.net_exposure + 0.0,
            ts_tick_ingest=tick,
        )


# Snapshots come from the ledger's own arithmetic: no validation on the fill path.
_build_position = trusted_builder(PositionSnapshot)
_build_pnl = trusted_builder(PnlSnapshot)


def _apply_fill(book: _Book, signed_qty: float, price: float, fee: float) -> None:
    """Average-cost booking of one fill (``signed_qty`` > 0 buys, < 0 sells)."""
    book.touched = True
    book.fees += fee
    book.cash_flow -= signed_qty * price + fee
    qty = book.quantity
    if qty == 0.0 or (qty > 0) == (signed_qty > 0):
        new_qty = qty + signed_qty  # open or add: the average cost moves toward the fill price
        book.avg_cost = (abs(qty) * book.avg_cost + abs(signed_qty) * price) / abs(new_qty)
        book.quantity = new_qty
        return
    direction = 1.0 if qty > 0 else -1.0
    closing = min(abs(signed_qty), abs(qty))
    book.realized_pnl += closing * (price - book.avg_cost) * direction
    remainder = abs(signed_qty) - closing
    if remainder > QTY_EPSILON:  # crossed zero: the rest opens a new position at the fill price
        book.quantity = -direction * remainder
        book.avg_cost = price
        return
    new_qty = qty + signed_qty
    if abs(new_qty) <= QTY_EPSILON:  # closed (float residue is not a position)
        book.quantity = 0.0
        book.avg_cost = 0.0
    else:
        book.quantity = new_qty  # reduced: the average cost of what remains is unchanged


def book_fills(ledger: Ledger, reports: Iterable[ExecutionReport]) -> list[LedgerOutput]:
    """Book a sequence of reports in order; the concatenated outputs (replay and test helper)."""
    out: list[LedgerOutput] = []
    for report in reports:
        out.extend(ledger.on_fill(report))
    return out
