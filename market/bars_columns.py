"""Bars from column batches: :meth:`market.bars.BarBuilder.on_batch` folds a whole TickBatch.

Contract (tests/unit/market/test_bars_batch.py holds it with hypothesis): the rows of a batch
(trades and quotes of any symbols, arrival order) leave the builder in the same state and give the
same records as feeding them one at a time (trades to ``on_trade``, quotes to ``advance(symbol,
ts_event, ts_tick_ingest)``), every field identical except a bar's wall-clock ``ts_ingest``, and
per symbol in the same order. Across symbols one call's output is sorted by ``(bar_end, symbol,
interval order)``, the order :meth:`BarBuilder.flush` uses; a dead letter keeps its place in its
own symbol's sequence: right after the bar of that symbol emitted before it (first of all when
none was). Per symbol that is the per-tick order, because a symbol's bars close in increasing
``bar_end`` (an accepted trade lies past every bar closed before it).

Common case, vectorized: a symbol whose trades in the batch each lie at or past the symbol's
running watermark (its rows in event-time order; quotes may lag, they only move the watermark) and
past its ``closed_until``. Rows are grouped per (symbol, bar start) per interval as runs of a
stable sort by symbol; high/low by ``np.maximum/minimum.reduceat``; the running watermark by one
``np.maximum.accumulate`` over per-symbol offset keys; the tick that closes a bar by
``np.searchsorted`` on it. Float sums keep arrival order: numpy's ``add.reduce``/``add.reduceat``
sum pairwise (``1e16 + 1.0 + 1.0`` gives ``1e16 + 2.0``, the per-tick path gives ``1e16``), so the
sums come from ``np.cumsum`` (sequential by definition) over segments padded with zeros.
Any other symbol (a trade behind its watermark, late or not, or in an emitted bar) goes through
the per-tick methods for its rows of this batch: exact by construction, and rare. A batch of at most
``SMALL_BATCH_ROWS`` rows (a paced feed's millisecond) goes through them whole, its in-order trades
straight from the columns: the vectorized fold's fixed cost is larger than the rows' own.

Feed watermark (``TickBatch.watermark``, see ``schemas.columns.WATERMARK``): after the rows,
every open bar of every symbol with ``bar_end <= watermark`` closes and its end is recorded in
``closed_until``, so a trade that still came for it is dead-lettered as late. Bar contents do not
change, only when bars come out; symbol watermarks do not move. Such a bar's ``ts_tick_ingest`` is
the batch's newest ``ts_tick_ingest``: the bar closes because this batch arrived and the promise
is as recent as its newest tick, as a per-tick close carries the closing tick's. An empty batch (a
heartbeat of a quiet tape) has no tick, so the bar keeps its last trade's, as ``flush`` does.
"""

from __future__ import annotations

from operator import itemgetter

import numpy as np

from market.bars import _NEVER, BarBuilder, OpenBar, _SymbolBars
from schemas.base import now_ns
from schemas.columns import AGGRESSOR_BUY, AGGRESSOR_SELL, TRADE, TickBatch
from schemas.control import DeadLetter
from schemas.market import Bar

__all__ = ["fold_batch", "ordered_sums"]

# The fast path adds timestamps, lateness and per-symbol key offsets in int64; beyond these bounds
# (never met by real ns timestamps, ~2^60.6 today) the batch goes through the per-tick methods.
_TS_LIMIT = 1 << 62
_LATENESS_LIMIT = 1 << 60
_KEY_LIMIT = float(1 << 61)

_BY_KEY = itemgetter(0)

# Up to this many rows a batch is folded row by row from its columns: the vectorized fold costs
# ~50 NumPy calls whatever the batch's size (~240 us for a live millisecond's 10 rows, a quarter
# of the dataflow thread at 10,000 ticks/s), a row ~2 us.
SMALL_BATCH_ROWS = 64
_Keyed = tuple[tuple[int, str, int, int], "Bar | DeadLetter"]


def fold_batch(builder: BarBuilder, batch: TickBatch) -> list[Bar | DeadLetter]:
    """The implementation of :meth:`BarBuilder.on_batch` (see this module's docstring)."""
    keyed: list[_Keyed] = []
    now = now_ns()
    if len(batch) > SMALL_BATCH_ROWS:
        _fold_rows(builder, batch, now, keyed)
    elif len(batch):
        _fold_per_tick(builder, batch, None, keyed)
    if batch.watermark is not None:
        newest = int(batch.ts_tick_ingest.max()) if len(batch) else None
        _close_through(builder, batch.watermark, newest, now, keyed)
    keyed.sort(key=_BY_KEY)
    return [record for _, record in keyed]


def ordered_sums(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, init: np.ndarray) -> np.ndarray:
    """Per segment ``g``: ``init[:, g] + values[:, starts[g]] + values[:, starts[g] + 1] + ...``, left to right.

    ``values`` is ``(f, n)``: f non-negative columns, segments are contiguous ranges of them;
    ``init`` is ``(f, segments)``. Segments are padded with zeros (``x + 0.0 == x`` exactly for
    ``x >= 0``) to the longest one, or, where lengths differ widely, to the longest of their bucket
    of equal bit length, so padding at most doubles the work; ``np.cumsum`` along the padded axis
    (contiguous: the fast one) then adds in order.
    """
    out = np.array(init, dtype=np.float64, copy=True)
    if not len(lengths):
        return out
    width, n = values.shape
    padded = np.zeros((width, n + 1))  # column n: the zero pad
    padded[:, :n] = values
    if len(lengths) * int(lengths.max()) <= 2 * n + 64:  # alike lengths: one block
        buckets = [np.arange(len(lengths))]
    else:
        bucket = np.frexp(lengths.astype(np.float64))[1]
        buckets = [np.flatnonzero(bucket == b) for b in np.unique(bucket).tolist()]
    for chosen in buckets:
        longest = int(lengths[chosen].max())
        step = np.arange(longest)
        rows = np.where(step < lengths[chosen, None], starts[chosen, None] + step, n)
        stack = np.empty((width, len(chosen), longest + 1))
        stack[:, :, 0] = out[:, chosen]
        stack[:, :, 1:] = padded[:, rows]
        out[:, chosen] = np.cumsum(stack, axis=2)[:, :, -1]
    return out


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """Indices where a run of equal ``keys`` (rows compared across all of them) begins."""
    new = np.empty(len(keys[0]), bool)
    new[:1] = True
    np.not_equal(keys[0][1:], keys[0][:-1], out=new[1:])
    for key in keys[1:]:
        new[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(new)


# -- rows --------------------------------------------------------------------------------------


def _fold_rows(builder: BarBuilder, batch: TickBatch, now: int, keyed: list[_Keyed]) -> None:
    n = len(batch)
    codes = batch.symbol
    if len(batch.symbols) <= 1 << 15:  # a stable sort of 16-bit keys is a radix sort: ~4x faster
        codes = codes.astype(np.int16)
    order = np.argsort(codes, kind="stable")  # per symbol, arrival order kept
    code = batch.symbol[order]
    ts = batch.ts_event[order]
    first = _run_starts(code)
    lengths = np.diff(first, append=n)
    names = [batch.symbols[c] for c in code[first].tolist()]
    books = [builder._symbols.get(name) for name in names]
    # a new symbol's first row sets its watermark: no floor below the batch's own rows (ts >= 0)
    carried = [0 if book is None else book.watermark for book in books]
    closed_floor = [0 if book is None else min(book.max_closed_until, _TS_LIMIT) for book in books]

    def per_tick(symbols) -> None:
        for s in symbols:
            _fold_per_tick(builder, batch, order[first[s]:first[s] + lengths[s]], keyed)

    lateness = builder._lateness_ns
    if not (0 <= int(ts.min()) and int(ts.max()) < _TS_LIMIT and max(carried) < _TS_LIMIT
            and lateness < _LATENESS_LIMIT):
        return per_tick(range(len(first)))
    seg = np.repeat(np.arange(len(first)), lengths)
    # v: the watermark each row proposes (a row behind the carried watermark does not move it)
    v = np.maximum(ts, np.array(carried, np.int64)[seg])
    low = np.minimum.reduceat(v, first)
    span = np.maximum.reduceat(v, first) - low
    if float(span.astype(np.float64).sum()) + 2.0 * len(first) >= _KEY_LIMIT:
        return per_tick(range(len(first)))
    # symbol s's keys lie in [offset[s], offset[s] + span[s]], below the next symbol's: one running
    # max over the keys is every symbol's running watermark
    offset = np.cumsum(span + 2) - (span + 2)
    running_key = np.maximum.accumulate(offset[seg] + (v - low[seg]))
    watermark = running_key - offset[seg] + low[seg]

    trade = batch.kind[order] == TRADE
    # a trade at its symbol's running watermark was behind no earlier row: not late, in order
    behind = trade & ((ts != watermark) | (ts < np.array(closed_floor, np.int64)[seg]))
    exact = np.zeros(len(first), bool)
    exact[seg[behind]] = True
    per_tick(np.flatnonzero(exact).tolist())
    if exact.all():
        return
    if exact.any():
        keep = ~exact[seg]
        order, seg, ts, running_key, watermark, trade = (
            a[keep] for a in (order, seg, ts, running_key, watermark, trade))

    fast = np.flatnonzero(~exact).tolist()
    for s in fast:
        if books[s] is None:  # as on the per-tick path, a symbol's first row creates its book
            books[s] = builder._symbols[names[s]] = _SymbolBars(0, len(builder._intervals))

    def closing_rows(symbol: np.ndarray, close_at: np.ndarray) -> np.ndarray:
        """The row whose watermark first reaches ``close_at`` (symbol's own rows); -1: none."""
        target = offset[symbol] + np.clip(close_at - low[symbol], 0, span[symbol] + 1)
        row = np.searchsorted(running_key, target)
        found = row < len(running_key)
        found[found] = seg[row[found]] == symbol[found]
        return np.where(found, row, -1)

    rows = np.flatnonzero(trade)
    trades = _Trades(ts[rows], seg[rows], batch.ts_tick_ingest[order[rows]], batch.price[order[rows]],
                     batch.size[order[rows]], batch.aggressor[order[rows]])
    fold = _Fold(builder, names, books, fast, now, keyed, closing_rows, batch.ts_tick_ingest[order])
    for index, name, nanos in builder._intervals:
        fold.interval(index, name, nanos, trades)

    last = np.append(_run_starts(seg)[1:], len(seg)) - 1
    for s, mark in zip(seg[last].tolist(), watermark[last].tolist()):
        book = books[s]
        book.watermark = mark
        book.max_closed_until = max(book.closed_until)
        book.next_close = min((bar.end + lateness for bars in book.open_bars for bar in bars.values()),
                              default=_NEVER)


class _Trades:
    """The fast symbols' trades, per symbol in arrival (= event-time) order, and their sum columns."""

    def __init__(self, ts, seg, tick_ingest, price, size, side):
        self.ts, self.seg, self.tick_ingest, self.price = ts, seg, tick_ingest, price
        self.values = values = np.zeros((4, len(ts)))  # what OpenBar accumulates, in its order:
        values[0] = size  # volume
        np.multiply(price, size, out=values[1])  # notional
        np.copyto(values[2], size, where=side == AGGRESSOR_BUY)  # buy volume
        np.copyto(values[3], size, where=side == AGGRESSOR_SELL)  # sell volume


class _Fold:
    """One batch's fast symbols: merge their trades' groups into open bars, close what the rows close."""

    def __init__(self, builder, names, books, fast, now, keyed, closing_rows, tick_ingest):
        self.builder, self.names, self.books, self.fast = builder, names, books, fast
        self.now, self.keyed, self.closing_rows, self.tick_ingest = now, keyed, closing_rows, tick_ingest

    def interval(self, index: int, name: str, nanos: int, trades: _Trades) -> None:
        lateness = self.builder._lateness_ns
        books = self.books
        # open bars from earlier batches; trades at or past the watermark reach only the one holding
        # the watermark, and only as their symbol's first group
        waiting = {id(bar): (s, bar) for s in self.fast for bar in books[s].open_bars[index].values()}
        m = len(trades.ts)
        if m:
            ts, seg = trades.ts, trades.seg
            start = ts - ts % nanos
            g_first = _run_starts(seg, start)
            g_last = np.append(g_first[1:], m) - 1
            g_seg, g_start = seg[g_first], start[g_first]
            high = np.maximum.reduceat(trades.price, g_first).tolist()
            low = np.minimum.reduceat(trades.price, g_first).tolist()
            open_, open_ts = trades.price[g_first].tolist(), ts[g_first].tolist()
            count = (g_last - g_first + 1).tolist()
            init = np.zeros((len(trades.values), len(g_first)))
            bars: list[OpenBar] = [OpenBar.__new__(OpenBar) for _ in count]
            for g in g_first.searchsorted(_run_starts(seg)).tolist():  # each symbol's first group
                bar = books[g_seg[g]].open_bars[index].get(int(g_start[g]))
                if bar is not None:
                    del waiting[id(bar)]
                    bars[g] = bar
                    init[:, g] = (bar.volume, bar.notional, bar.buy_volume, bar.sell_volume)
                    high[g] = max(high[g], bar.high)
                    low[g] = min(low[g], bar.low)
                    open_[g], open_ts[g] = bar.open, bar.open_ts
                    count[g] += bar.trade_count
            sums = ordered_sums(trades.values, g_first, g_last - g_first + 1, init).T.tolist()
            closer = self.closing_rows(g_seg, g_start + (nanos + lateness)).tolist()
            close, close_ts = trades.price[g_last].tolist(), ts[g_last].tolist()
            last_ingest = trades.tick_ingest[g_last].tolist()
            for g, (s, bar_start, bar) in enumerate(zip(g_seg.tolist(), g_start.tolist(), bars)):
                bar.start, bar.end = bar_start, bar_start + nanos
                bar.open, bar.open_ts, bar.high, bar.low = open_[g], open_ts[g], high[g], low[g]
                bar.close, bar.close_ts = close[g], close_ts[g]
                bar.volume, bar.notional, bar.buy_volume, bar.sell_volume = sums[g]
                bar.trade_count, bar.last_tick_ingest = count[g], last_ingest[g]
                if closer[g] < 0:
                    books[s].open_bars[index][bar_start] = bar
                else:
                    books[s].open_bars[index].pop(bar_start, None)
                    self.closed(s, index, name, bar, closer[g])
        if waiting:
            rest = list(waiting.values())
            symbol = np.array([s for s, _ in rest])
            close_at = np.array([bar.end + lateness for _, bar in rest], np.int64)
            for (s, bar), row in zip(rest, self.closing_rows(symbol, close_at).tolist()):
                if row >= 0:
                    del books[s].open_bars[index][bar.start]
                    self.closed(s, index, name, bar, row)

    def closed(self, s: int, index: int, name: str, bar: OpenBar, row: int) -> None:
        _closed(self.builder, self.keyed, self.books[s], self.names[s], index, name, bar,
                int(self.tick_ingest[row]), self.now)


def _closed(builder, keyed, book, symbol, index, name, bar, tick_ingest, now) -> None:
    if bar.end > book.closed_until[index]:
        book.closed_until[index] = bar.end
    keyed.append(((bar.end, symbol, index, 0), builder._emit(symbol, name, bar, tick_ingest, now)))


# -- the exact per-tick path ---------------------------------------------------------------------


def _fold_per_tick(builder: BarBuilder, batch: TickBatch, rows: np.ndarray | None, keyed: list[_Keyed]) -> None:
    """``rows`` of the batch (None: all of them), in arrival order, through the per-tick logic:
    a trade that is neither behind its symbol's watermark by more than the lateness nor in a closed
    bar goes to ``BarBuilder._add_trade`` from the columns, any other through ``on_trade`` as a
    record (its dead letter carries the trade), a quote to ``advance``. Each result is keyed where
    its symbol's sequence puts it: a dead letter right after the bar that symbol emitted before it."""
    if rows is not None:
        batch = batch.take(rows)
    position = {name: index for index, name, _ in builder._intervals}
    books, symbols, lateness = builder._symbols, batch.symbols, builder._lateness_ns
    n_intervals = len(builder._intervals)
    anchors: dict[str, tuple[tuple[int, str, int], int]] = {}  # symbol -> (last bar's key, dead letters after it)
    columns = (batch.symbol.tolist(), batch.kind.tolist(), batch.ts_event.tolist(), batch.price.tolist(),
               batch.size.tolist(), batch.aggressor.tolist(), batch.ts_tick_ingest.tolist())
    for row, (code, kind, ts, price, size, side, tick_ingest) in enumerate(zip(*columns)):
        symbol = symbols[code]
        if kind != TRADE:
            out = builder.advance(symbol, ts, tick_ingest)
        else:
            book = books.get(symbol)
            if book is None:  # as on_trade: a symbol's first trade sets its watermark
                book = books[symbol] = _SymbolBars(ts, n_intervals)
            if ts < book.watermark - lateness or ts < book.max_closed_until:
                out = builder.on_trade(batch.take(np.array([row])).to_records()[0])
            else:
                out = builder._add_trade(symbol, book, ts, price, size, side, tick_ingest)
        if not out:
            continue
        anchor, after = anchors.get(symbol, ((-1, symbol, -1), 0))
        for result in out:
            if type(result) is DeadLetter:
                after += 1
                keyed.append((anchor + (after,), result))
            else:
                anchor, after = (result.bar_end, symbol, position[result.interval]), 0
                keyed.append((anchor + (0,), result))
        anchors[symbol] = (anchor, after)


# -- the feed's watermark -----------------------------------------------------------------------


def _close_through(builder: BarBuilder, watermark: int, newest_ingest: int | None, now: int,
                   keyed: list[_Keyed]) -> None:
    """Close every open bar ending at or before the feed watermark: no later tick can fall in it."""
    lateness = builder._lateness_ns
    for symbol, book in builder._symbols.items():
        if book.next_close - lateness > watermark:  # next_close - lateness: the earliest open end
            continue
        next_close = _NEVER
        for index, name, _nanos in builder._intervals:
            bars = book.open_bars[index]
            for start in [s for s, bar in bars.items() if bar.end <= watermark]:
                bar = bars.pop(start)
                ingest = bar.last_tick_ingest if newest_ingest is None else newest_ingest
                _closed(builder, keyed, book, symbol, index, name, bar, ingest, now)
            for bar in bars.values():
                next_close = min(next_close, bar.end + lateness)
        book.next_close = next_close
        book.max_closed_until = max(book.closed_until)
