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

from schemas import Bar, ExecutionReport, Quote, Record, Trade
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

    def on_bar_close(self, bar: Bar) -> None:
        """A replayed bar's close marks the ledger and risk's reference price (no ticks to do it)."""
        if self.risk is not None:
            self.risk.on_trade(bar.symbol, bar.close, bar.bar_end - 1)
        self.ledger.on_mark(bar.symbol, bar.close, bar.bar_end - 1, bar.ts_tick_ingest)

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

    def book_adoption(self, report: ExecutionReport) -> Iterable[Record]:
        """A position adopted from the broker: snapshotted like a fill, not counted as one."""
        self._filled_since_bar.add(report.symbol)
        return self.ledger.on_adoption(report)


class RunMarks:
    """A run's marks, applied to a :class:`MarkedLedger` as far as a row at a time (:meth:`through`),
    then completely (:meth:`finish`). A short run goes row by row: below ``ROW_BY_ROW_BELOW`` rows
    the array operations' fixed cost is the larger one."""

    ROW_BY_ROW_BELOW = 24

    __slots__ = ("marked", "run", "applied", "_unmarked", "_last_rows")

    def __init__(self, marked: MarkedLedger, run: TickBatch) -> None:
        self.marked = marked
        self.run = run
        self.applied = 0  # rows [0, applied) are in the ledger's marks
        self._last_rows: list[tuple[int, int]] | None = None  # the run's last row per (symbol, kind)
        # Symbols the ledger has no mark for yet, which a quote's mid marks before their first trade.
        self._unmarked: set[int] | None = None

    def through(self, row: int) -> None:
        """The ledger's marks as they were right after ``row`` (a fill there values the book with them)."""
        if row + 1 > self.applied:
            self._apply(row + 1)

    def finish(self) -> None:
        """Every mark of the run: the ledger's, risk's reference prices and the touch."""
        run, marked = self.run, self.marked
        if len(run) < self.ROW_BY_ROW_BELOW:
            self._one_by_one(self.applied, len(run))
            return
        whole = self.applied == 0
        if self.applied < len(run):
            self._apply(len(run))
        last_rows = self._last_rows if whole else _last_rows(run, 0, len(run))
        names, codes, risk, touch = run.symbols, run.symbol, marked.risk, marked.touch
        for stream, row in last_rows:
            if stream & 1:
                touch[names[codes[row]]] = (float(run.bid[row]), float(run.ask[row]))
            elif risk is not None:
                risk.on_trade(names[codes[row]], float(run.price[row]), int(run.ts_event[row]))

    def _apply(self, stop: int) -> None:
        start = self.applied
        self.applied = stop
        if len(self.run) < self.ROW_BY_ROW_BELOW:
            self._one_by_one(start, stop)
            return
        run, ledger = self.run, self.marked.ledger
        names = run.symbols
        prices = run.price[start:stop][run.kind[start:stop] == TRADE]
        valid = (prices > 0) & np.isfinite(prices)
        if not bool(valid.all()):
            raise ValueError(f"a mark must be finite and > 0, got {prices[~valid][0]!r} in a run of ticks")
        if self._unmarked is None:
            mark = ledger.mark
            self._unmarked = {code for code, symbol in enumerate(names) if mark(symbol) is None}
        if self._unmarked:
            self._mark_first_mids(start, stop)
        self._last_rows = _last_rows(run, start, stop, with_prints := [])
        for (stream, row), prints in zip(self._last_rows, with_prints):
            if not stream & 1:
                ledger.on_last_mark(names[run.symbol[row]], float(run.price[row]), int(run.ts_event[row]), prints)

    def _one_by_one(self, start: int, stop: int) -> None:
        """Rows [start, stop) exactly as records: ledger, risk and touch at each."""
        run, marked = self.run, self.marked
        ledger, risk, touch, names = marked.ledger, marked.risk, marked.touch, run.symbols
        columns = (run.kind[start:stop].tolist(), run.symbol[start:stop].tolist(), run.ts_event[start:stop].tolist(),
                   run.price[start:stop].tolist(), run.bid[start:stop].tolist(), run.ask[start:stop].tolist(),
                   run.ts_tick_ingest[start:stop].tolist())
        for kind, code, ts, price, bid, ask, tick in zip(*columns):
            symbol = names[code]
            if kind == TRADE:
                if risk is not None:
                    risk.on_trade(symbol, price, ts)
                ledger.on_mark(symbol, price, ts, tick)
            else:
                touch[symbol] = (bid, ask)
                if ledger.mark(symbol) is None:
                    ledger.on_mark(symbol, (bid + ask) / 2.0, ts, tick)
        self.applied = max(self.applied, stop)

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


def _last_rows(run: TickBatch, start: int, stop: int, prints: list[int] | None = None) -> list[tuple[int, int]]:
    """``(stream, row)`` of the last row of every (symbol, kind) stream in rows [start, stop), where
    stream = 2 * symbol code + (1 for quotes); ``prints`` gets each stream's row count."""
    stream = run.symbol[start:stop].astype(np.int64) * 2 + (run.kind[start:stop] == QUOTE)
    streams, from_end, counts = np.unique(stream[::-1], return_index=True, return_counts=True)
    if prints is not None:
        prints.extend(counts.tolist())
    return list(zip(streams.tolist(), (stop - 1 - from_end).tolist()))
