"""Tape watermarks: a symbol's normalized tape vouching for both of its topics at once.

Normalize lets no event of a symbol through that is older than the symbol's newest accepted event
(trades and quotes together) minus the lateness window. In the split topology the trades go to
``md.trades`` and the quotes to ``md.quotes``, and a reader of both (the desk) can only bound each
topic by what it has read from it. So when a symbol's dense trades closed a bar, the desk still
waited for that symbol's next quote (or the other way round) before the bar's cross-section was
final. :class:`TapeWatermarks` follows the normalized records on their way to Kafka and, when a
symbol's bound passes a bar boundary, adds a :class:`schemas.TapeWatermark` of that symbol for each
topic after the records: on each partition, every record it vouches for is already before it.

One pair per symbol per bar interval (8 symbols at 1 s: 16 messages a second, against thousands of
ticks), and only where it can matter: when the bound passes a bar boundary, the desk's cross-sections
and bar ends are final up to that boundary. The state is not snapshotted: after a restart the first
crossing of each symbol repeats a watermark, and a reader keeps the maximum.
"""

from __future__ import annotations

import numpy as np

from schemas.columns import TickBatch
from schemas.control import TapeWatermark
from schemas.market import Quote, Trade

_NONE = np.iinfo(np.int64).min


class TapeWatermarks:
    """``after(pairs)``: ``(topic or table, record)`` pairs of a normalize stage in their order, with
    ``("md.trades", TapeWatermark)`` and ``("md.quotes", TapeWatermark)`` appended for each symbol
    whose bound (its newest event in these pairs minus ``lateness_ns``) passed a multiple of
    ``interval_ns`` in them."""

    def __init__(self, interval_ns: int, lateness_ns: int):
        if interval_ns <= 0:
            raise ValueError(f"interval_ns must be positive, not {interval_ns}")
        self.interval_ns = interval_ns
        self.lateness_ns = lateness_ns
        self._newest: dict[str, int] = {}
        self._passed: dict[str, int] = {}  # the latest bar boundary strictly below each symbol's bound

    def after(self, pairs: list) -> list:
        newest = self._newest
        moved: set[str] = set()
        for _, record in pairs:
            kind = type(record)
            if kind is TickBatch:
                if len(record):
                    self._newest_of_batch(record, moved)
            elif kind is Trade or kind is Quote:
                symbol, ts = record.symbol, record.ts_event
                if ts > newest.get(symbol, _NONE):
                    newest[symbol] = ts
                    moved.add(symbol)
        if not moved:
            return pairs
        out = list(pairs)
        interval, passed = self.interval_ns, self._passed
        for symbol in sorted(moved):
            bound = newest[symbol] - self.lateness_ns
            boundary = (bound - 1) // interval * interval  # the cross-section at it is final below `bound`
            if boundary > passed.get(symbol, _NONE):
                passed[symbol] = boundary
                out.append(("md.trades", TapeWatermark(symbol, bound, "trade")))
                out.append(("md.quotes", TapeWatermark(symbol, bound, "quote")))
        return out

    def _newest_of_batch(self, batch: TickBatch, moved: set[str]) -> None:
        newest, names = self._newest, batch.symbols
        if len(names) == 1:  # normalize keys by symbol: the usual batch
            highest = {names[0]: int(batch.ts_event.max())}
        else:
            per_code = np.full(len(names), _NONE, dtype=np.int64)
            np.maximum.at(per_code, batch.symbol, batch.ts_event)
            highest = {name: ts for name, ts in zip(names, per_code.tolist()) if ts != _NONE}
        for symbol, ts in highest.items():
            if ts > newest.get(symbol, _NONE):
                newest[symbol] = ts
                moved.add(symbol)
