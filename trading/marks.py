"""The account's view of the tape: what the desk and the split risk and pnl stages keep from the
trades and quotes besides the venue's own state.

- the ledger's **marks**: the last trade price, or the mid before a symbol's first trade;
- risk's **reference prices** (the collar and marks of pre-trade risk): the last trade price;
- the **touch** per symbol, the last quote's bid and ask, where passive execution rests its orders;
- the symbols **filled since their last bar snapshot**, which get one at the next bar end even when
  flat.

A run of ticks (a :class:`schemas.columns.TickBatch` slice in event order, see
:mod:`trading.sequencer`) is applied with array operations: only the last trade per symbol moves a
mark, only the last quote the touch. Risk's prices and the touch are read only when orders are
built, never inside a run, so they are set once at its end; the ledger's marks are also read by
the P&L snapshot a fill books, so :class:`RunMarks` brings them up to any row of the run first.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from schemas import ExecutionReport, Quote, Record, Trade
from schemas.columns import QUOTE, TRADE, TickBatch
from trading.ledger import Ledger
from trading.risk import RiskState
from trading.sequencer import BarEnd


class MarkedLedger:
    """A ledger kept marked to the tape (and, given one, risk's reference prices with it)."""

    def __init__(self, ledger: Ledger, risk: RiskState | None = None) -> None:
        self.ledger = ledger
        self.risk = risk
        self.touch: dict[str, tuple[float, float]] = {}  # symbol -> (bid, ask) of its last quote
        self.fills = 0
        self._filled_since_bar: set[str] = set()

    def on_trade(self, trade: Trade) -> None:
        if self.risk is not None:
            self.risk.on_trade(trade.symbol, trade.price, trade.ts_event)
        self.ledger.on_mark(trade.symbol, trade.price, trade.ts_event, trade.ts_tick_ingest)

    def on_quote(self, quote: Quote) -> None:
        self.touch[quote.symbol] = (quote.bid_price, quote.ask_price)
        if self.ledger.mark(quote.symbol) is None:  # before the first trade the mid is the best mark
            self.ledger.on_mark(quote.symbol, quote.mid, quote.ts_event, quote.ts_tick_ingest)

    def on_run(self, run: TickBatch) -> None:
        """A run of ticks in event order: the same state as :meth:`on_trade` / :meth:`on_quote` row by row."""
        RunMarks(self, run).finish()

    def bar_snapshot(self, bar: BarEnd) -> Iterable[Record]:
        """Position and P&L at a bar end of a symbol that filled in the bar or holds a position."""
        symbol = bar.symbol
        if symbol in self._filled_since_bar or self.ledger.position(symbol) != 0.0:
            self._filled_since_bar.discard(symbol)
            return self.ledger.snapshot(bar.bar_end, bar.ts_tick_ingest, {symbol})
        return ()

    def book_fill(self, report: ExecutionReport) -> Iterable[Record]:
        self.fills += 1
        self._filled_since_bar.add(report.symbol)
        return self.ledger.on_fill(report)


class RunMarks:
    """A run's marks, applied to a :class:`MarkedLedger` as far as a row at a time (:meth:`through`),
    then completely (:meth:`finish`)."""

    __slots__ = ("marked", "run", "applied", "_unmarked")

    def __init__(self, marked: MarkedLedger, run: TickBatch) -> None:
        self.marked = marked
        self.run = run
        self.applied = 0  # rows [0, applied) are in the ledger's marks
        mark = marked.ledger.mark
        # Symbols the ledger has no mark for yet, which a quote's mid marks before their first trade.
        self._unmarked = {code for code, symbol in enumerate(run.symbols) if mark(symbol) is None}

    def through(self, row: int) -> None:
        """The ledger's marks as they were right after ``row`` (a fill there values the book with them)."""
        if row + 1 > self.applied:
            self._mark(self.applied, row + 1)
            self.applied = row + 1

    def finish(self) -> None:
        """Every mark of the run: the ledger's, risk's reference prices and the touch."""
        run, marked = self.run, self.marked
        if self.applied < len(run):
            self._mark(self.applied, len(run))
            self.applied = len(run)
        names, codes = run.symbols, run.symbol
        if marked.risk is not None:
            on_trade = marked.risk.on_trade
            for row in _last_per_code(codes, run.kind == TRADE):
                on_trade(names[codes[row]], float(run.price[row]), int(run.ts_event[row]))
        touch = marked.touch
        for row in _last_per_code(codes, run.kind == QUOTE):
            touch[names[codes[row]]] = (float(run.bid[row]), float(run.ask[row]))

    def _mark(self, start: int, stop: int) -> None:
        run, ledger = self.run, self.marked.ledger
        names = run.symbols
        codes, kind = run.symbol[start:stop], run.kind[start:stop]
        trades = kind == TRADE
        prices = run.price[start:stop][trades]
        if len(prices) and not bool(((prices > 0) & np.isfinite(prices)).all()):
            bad = prices[~((prices > 0) & np.isfinite(prices))][0]
            raise ValueError(f"a mark must be finite and > 0, got {bad!r} in a run of ticks")
        if self._unmarked:
            self._mark_first_mids(start, stop)
        rows = _last_per_code(codes, trades)
        if rows:
            prints = np.bincount(codes[trades], minlength=len(names))
            for row in rows:
                at, code = start + row, int(codes[row])
                ledger.on_last_mark(names[code], float(run.price[at]), int(run.ts_event[at]), int(prints[code]))

    def _mark_first_mids(self, start: int, stop: int) -> None:
        """A symbol with no mark yet is marked to the mid of its first quote, unless a trade came first."""
        run, ledger = self.run, self.marked.ledger
        codes = run.symbol[start:stop]
        for code in sorted(self._unmarked):
            rows = np.flatnonzero(codes == code)
            if len(rows) == 0:
                continue
            self._unmarked.discard(code)
            first = start + int(rows[0])
            if run.kind[first] == QUOTE:
                mid = (float(run.bid[first]) + float(run.ask[first])) / 2.0
                ledger.on_mark(run.symbols[code], mid, int(run.ts_event[first]), int(run.ts_tick_ingest[first]))


def _last_per_code(codes: np.ndarray, mask: np.ndarray) -> list[int]:
    """The row of the last ``mask`` row of every code present, in code order."""
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        return []
    reversed_rows = rows[::-1]
    _, first = np.unique(codes[reversed_rows], return_index=True)
    return reversed_rows[first].tolist()
