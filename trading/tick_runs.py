"""A TickBatch in the sequencer's heap (:mod:`trading.sequencer`): its rows sorted by their event
key, released as runs no other queued event falls inside.

One heap entry per batch, not per row: the entry's key is its first row's, and when another entry's
key (or the horizon) falls inside the batch, the rows before it are released as one run and the rest
goes back into the heap under its own first row's key. The rows come out in exactly the order one
heap entry per row would have given them.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from schemas.columns import TickBatch, concat_tick_batches, concat_trade_ids, take_trade_ids

TICK = 2  # a market event's priority among the events at one time (trading.sequencer has the others)


class QueuedTicks:
    """A TickBatch's accepted rows waiting in the heap, sorted by their event key; ``arrival`` is
    each row's arrival number (the tie-break among one symbol's events at one time)."""

    __slots__ = ("ticks", "arrival")

    def __init__(self, ticks: TickBatch, arrival: np.ndarray) -> None:
        self.ticks = ticks
        self.arrival = arrival

    def key(self) -> tuple[int, int, str, int]:
        ticks = self.ticks
        return (int(ticks.ts_event[0]), TICK, ticks.symbols[ticks.symbol[0]], int(self.arrival[0]))

    def rows_before(self, bound: tuple | None) -> int:
        """How many leading rows have a key strictly below ``bound`` (a horizon or a queue key)."""
        ts = self.ticks.ts_event
        if bound is None:
            return len(ts)
        at, priority = bound[0], bound[1]
        if priority != TICK or len(bound) == 2:
            return int(np.searchsorted(ts, at, "right" if priority > TICK else "left"))
        lo, hi = int(np.searchsorted(ts, at, "left")), int(np.searchsorted(ts, at, "right"))
        names, codes, arrival = self.ticks.symbols, self.ticks.symbol, self.arrival
        for row in range(lo, hi):  # ties on the event time: rare, row by row
            if (names[codes[row]], int(arrival[row])) >= bound[2:4]:
                return row
        return hi

    def split(self, rows: int) -> tuple[TickBatch, "QueuedTicks | None"]:
        if rows == len(self.arrival):
            return self.ticks, None
        rest = QueuedTicks(_rows(self.ticks, slice(rows, None)), self.arrival[rows:])
        return _rows(self.ticks, slice(0, rows)), rest


_PER_ROW = tuple(f.name for f in fields(TickBatch)
                 if f.name not in ("symbols", "sources", "ids", "watermark", "trade_id", "trade_no"))


def _rows(batch: TickBatch, rows: slice) -> TickBatch:
    """``batch.take(rows)`` for a slice: views of the columns, without dataclasses.replace's cost."""
    columns = {name: getattr(batch, name)[rows] for name in _PER_ROW} | take_trade_ids(batch, rows)
    ids = None if batch.ids is None else batch.ids[rows]
    return TickBatch(symbols=batch.symbols, sources=batch.sources, ids=ids, watermark=batch.watermark, **columns)


def joined(batches: list[TickBatch]) -> TickBatch:
    """``batches`` as one, in order, with the highest watermark any of them carries."""
    watermarks = [b.watermark for b in batches if b.watermark is not None]
    watermark = max(watermarks) if watermarks else None
    first = batches[0]
    explicit = first.ids is not None
    if all(b.symbols == first.symbols and b.sources == first.sources and (b.ids is not None) == explicit
           for b in batches):  # one feed's batches share their dictionaries: plain concatenation
        columns = {name: np.concatenate([getattr(b, name) for b in batches]) for name in _PER_ROW}
        columns |= concat_trade_ids(batches)
        ids = np.concatenate([b.ids for b in batches]) if explicit else None
        return TickBatch(symbols=first.symbols, sources=first.sources, ids=ids, watermark=watermark, **columns)
    return replace(concat_tick_batches(batches), watermark=watermark)
