"""How the simulated venue prices, sizes and charges a fill.

Kept apart from the order book so the pricing rules can be read (and tested) in one place:

- :class:`Increment` rounds to the instrument's price/quantity/fee grid in integer units, so
  cumulative quantities never drift (``cum_qty + leaves_qty == order_qty`` exactly).
- :class:`RecentVolume` is the symbol's traded volume over a trailing window of event time, the
  denominator of market impact.
- :class:`FillModel` turns (side, reference price, half spread, quantity, recent volume) into a fill
  price, and (quantity, price) into a fee.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right

import numpy as np

from venues.sim_config import SimVenueConfig


class Increment:
    """A rounding grid (tick size, lot size): values become integer multiples of ``step``.

    Integers are exact where floats are not, so the venue does all quantity bookkeeping in units
    and converts back to float only when it writes a report.
    """

    __slots__ = ("step", "_per_unit", "_whole")

    def __init__(self, step: float) -> None:
        self.step = step
        # 1/n grids convert back by dividing by n (one correctly rounded division gives the
        # nearest double to the decimal, e.g. 1234567 / 1e6 -> 1.234567); whole grids multiply.
        self._whole = step >= 1
        self._per_unit = round(step) if self._whole else round(1 / step)

    def _ratio(self, value: float) -> float:
        return value / self._per_unit if self._whole else value * self._per_unit

    @staticmethod
    def _slack(ratio: float) -> float:
        # x / step carries float noise (0.29 / 0.01 = 28.999999999999996); forgive a relative
        # 1e-14 (dozens of ulps, far below one unit up to 1e13 units) so a value that is on the grid
        # is never pushed one unit off it.
        return max(1e-9, abs(ratio) * 1e-14)

    def floor(self, value: float) -> int:
        ratio = self._ratio(value)
        return math.floor(ratio + self._slack(ratio))

    def ceil(self, value: float) -> int:
        ratio = self._ratio(value)
        return math.ceil(ratio - self._slack(ratio))

    def nearest(self, value: float) -> int:
        # Half-up rather than Python's banker's rounding: what a trader expects of a price grid.
        return math.floor(self._ratio(value) + 0.5)

    def to_float(self, units: int) -> float:
        return float(units * self._per_unit) if self._whole else units / self._per_unit

    def round(self, value: float) -> float:
        return self.to_float(self.nearest(value))


class RecentVolume:
    """Traded volume per symbol over the trailing window ``(ts - window_ns, ts]`` of event time.

    Two running sums per symbol, of every print recorded and of every print evicted, each added up
    in print order, keep recording and reading O(1) amortized, and make the volume a function of
    the prints alone: recorded one at a time or as columns (:meth:`record_many`), read often or
    rarely, the same prints give the same float. (One sum updated as prints come and go would
    depend on when reads evict.) A print whose window holds none of the earlier prints starts both
    sums afresh, so a symbol that pauses longer than the window sheds its history. Eviction
    assumes each symbol's tape arrives in event-time order, which normalize's lateness window
    guarantees up to its bound.

    Columns are appended as they come and added up when the volume is read (rarely: only where an
    order can fill) or every ``_SETTLE_AFTER`` prints, so a symbol that never fills holds about one
    window of prints, not its whole tape.

    The prints live in two flat arrays per symbol (event times, sizes) rather than a deque of
    tuples: a 60 s window at thousands of trades a second is some 200,000 prints, and the desk's
    recovery snapshot pickles them every epoch (as tuples that took some 30 ms, blocking the stage).

    Snapshots are incremental, as :class:`market.recent_ids.RecentTradeIds`'s are: each packs only
    the prints recorded since the previous one into a sealed piece (:func:`_packed`) and reuses the
    pieces still in the window, so its cost follows the prints of one epoch, not the window's. Packing
    the whole window at every epoch's end took 10-20 ms of the split trading stage's thread at 5,000
    ticks/s, a pause the orders of that moment waited out.
    """

    __slots__ = ("window_ns", "_times", "_sizes", "_head", "_added", "_evicted", "_last", "_summed",
                 "_origin", "_pieces")

    _SETTLE_AFTER = 4_096

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._times: dict[str, array] = {}
        self._sizes: dict[str, array] = {}
        self._head: dict[str, int] = {}  # index of the oldest print still in the window
        self._added: dict[str, float] = {}  # every print summed since the last fresh start
        self._evicted: dict[str, float] = {}  # those of them out of the window
        self._last: dict[str, int] = {}  # the newest summed print's event time
        self._summed: dict[str, int] = {}  # prints [0, summed) are in the sums
        # For incremental snapshots: the position of each symbol's index 0 among every print recorded
        # since its last fresh start, and its sealed pieces (first position, packed times, packed sizes,
        # count), which cover the positions from the first one's to the newest print's at the last snapshot.
        self._origin: dict[str, int] = {}
        self._pieces: dict[str, list[tuple]] = {}

    def record(self, symbol: str, ts_event: int, size: float) -> None:
        times = self._times.get(symbol)
        if times is not None and self._summed[symbol] < len(times):
            self._settle(symbol)
        if times is None or self._last[symbol] <= ts_event - self.window_ns:
            times = self._start(symbol)
        times.append(ts_event)
        self._sizes[symbol].append(size)
        self._added[symbol] += size
        self._last[symbol] = ts_event
        self._summed[symbol] = len(times)
        self._evict(symbol, ts_event - self.window_ns)

    def record_many(self, symbol: str, ts_events: np.ndarray, sizes: np.ndarray) -> None:
        """A symbol's prints in event order: the state :meth:`record` one by one leaves."""
        if len(ts_events) == 0:
            return
        times = self._times.get(symbol)
        if times is None:
            times = self._start(symbol)
            self._last[symbol] = int(ts_events[0])  # nothing before the first print: not a fresh start
        times.frombytes(np.ascontiguousarray(ts_events, dtype=np.int64).tobytes())
        self._sizes[symbol].frombytes(np.ascontiguousarray(sizes, dtype=np.float64).tobytes())
        if len(times) - self._summed[symbol] > self._SETTLE_AFTER:
            self._settle(symbol)

    def volume(self, symbol: str, ts_event: int) -> float:
        times = self._times.get(symbol)
        if times is None:
            return 0.0
        if self._summed[symbol] < len(times):
            self._settle(symbol)
        if self._evict(symbol, ts_event - self.window_ns):
            return self._added[symbol] - self._evicted[symbol]
        return 0.0  # an emptied window is exactly zero, not the residue of float subtraction

    def _start(self, symbol: str) -> array:
        times = self._times[symbol] = array("q")
        self._sizes[symbol] = array("d")
        self._head[symbol] = self._summed[symbol] = self._origin[symbol] = 0
        self._pieces[symbol] = []
        self._added[symbol] = self._evicted[symbol] = 0.0
        return times

    def _settle(self, symbol: str) -> None:
        """Sum the prints appended as columns, as :meth:`record` would have one by one."""
        times, sizes = self._times[symbol], self._sizes[symbol]
        summed, end = self._summed[symbol], len(times)
        window = self.window_ns
        new_times = np.frombuffer(times, dtype=np.int64)[summed:end]
        previous = np.empty(end - summed, dtype=np.int64)
        previous[0] = self._last[symbol]
        previous[1:] = new_times[:-1]
        fresh = np.flatnonzero(previous <= new_times - window)
        last = int(new_times[-1])
        del new_times, previous  # no view may outlive a resize of the arrays
        if len(fresh):
            # A print whose window holds none of the earlier ones: start afresh from the last such.
            first = summed + int(fresh[-1])
            self._head[symbol], summed = first, first
            self._added[symbol] = self._evicted[symbol] = 0.0
        self._added[symbol] = _add_in_order(self._added[symbol], np.frombuffer(sizes, dtype=np.float64)[summed:end])
        self._summed[symbol] = end
        self._last[symbol] = last
        self._evict(symbol, last - window)

    def _evict(self, symbol: str, horizon: int) -> bool:
        """Evict the summed prints at/before ``horizon``; whether any print is left in the window."""
        times = self._times[symbol]
        head, end = self._head[symbol], len(times)
        if head >= end:
            return False
        if times[head] > horizon:
            return True
        stop = bisect_right(times, horizon, head, end)  # prints are in event order
        sizes = self._sizes[symbol]
        if stop - head <= 32:
            evicted = self._evicted[symbol]
            for index in range(head, stop):
                evicted += sizes[index]
        else:
            evicted = _add_in_order(self._evicted[symbol], np.frombuffer(sizes, dtype=np.float64)[head:stop])
        self._evicted[symbol] = evicted
        head = stop
        if head > 4_096 and head * 2 > end:  # drop the evicted front now and then, not per print
            del times[:head], sizes[:head]
            self._origin[symbol] += head
            self._summed[symbol] -= head
            end -= head
            head = 0
        self._head[symbol] = head
        return head < end

    def __getstate__(self) -> tuple:
        """``(window_ns, {symbol: (skip, pieces)}, added, evicted, last)``: a symbol's live prints are
        those of its pieces in order, after the first ``skip`` (already evicted)."""
        live = {}
        for symbol, times in self._times.items():
            if self._summed[symbol] < len(times):
                self._settle(symbol)
            live[symbol] = self._sealed(symbol)
        return self.window_ns, live, dict(self._added), dict(self._evicted), dict(self._last)

    def _sealed(self, symbol: str) -> tuple[int, list[tuple]]:
        """Seal the prints recorded since the last snapshot into a new piece, drop the pieces the
        window has left behind; ``(skip, pieces)``."""
        times, origin = self._times[symbol], self._origin[symbol]
        pieces = self._pieces[symbol]
        sealed_to = pieces[-1][0] + pieces[-1][3] if pieces else origin
        if sealed_to < origin:  # older than every print kept: nothing of them is live
            pieces.clear()
            sealed_to = origin
        newest = origin + len(times)
        if newest > sealed_to:
            pieces.append((sealed_to, *_packed(times, self._sizes[symbol], sealed_to - origin)))
        oldest_live = origin + self._head[symbol]
        while pieces and pieces[0][0] + pieces[0][3] <= oldest_live:
            del pieces[0]
        if len(pieces) > _MAX_PIECES:  # many short epochs: the oldest half joined into one (rare)
            half = len(pieces) // 2
            pieces[:half] = [(pieces[0][0], *_packed(*_joined_pieces(pieces[:half]), 0))]
        return (oldest_live - pieces[0][0] if pieces else 0), list(pieces)

    def __setstate__(self, state: tuple) -> None:
        self.window_ns, live, self._added, self._evicted, self._last = state
        self._times, self._sizes, self._summed, self._origin, self._pieces = {}, {}, {}, {}, {}
        for symbol, packed in live.items():
            if type(packed[1]) is list:  # (skip, pieces)
                skip, pieces = packed
                times, sizes = _joined_pieces(pieces)
                del times[:skip], sizes[:skip]
                self._pieces[symbol] = list(pieces)
                self._origin[symbol] = (pieces[0][0] if pieces else 0) + skip
            else:  # a snapshot from before the pieces: one packed window, or (times, sizes) bytes
                times, sizes = _unpacked(*packed)
                self._pieces[symbol], self._origin[symbol] = [], 0
            self._times[symbol], self._sizes[symbol] = times, sizes
            self._summed[symbol] = len(times)
        self._head = {symbol: 0 for symbol in live}


_INT32_MAX = 2**31 - 1
_MAX_PIECES = 64  # sealed pieces per symbol before the oldest half is joined


def _packed(times: array, sizes: array, head: int) -> tuple:
    """A symbol's live prints for a snapshot, half their size where that loses nothing: event times
    as the first one and int32 steps (prints less than ~2.1 s apart), sizes as float32 when every
    one is exact in it. The window is the desk's largest state (60 s of prints), pickled and written
    by Bytewax on the stage's thread at every epoch's end. ``(times, sizes)`` bytes as before when
    a step or a size does not fit."""
    ts = np.frombuffer(times, dtype=np.int64)[head:]
    qty = np.frombuffer(sizes, dtype=np.float64)[head:]
    packed_ts = ts.tobytes()
    if len(ts) > 1:
        steps = np.diff(ts)
        if int(steps.min()) >= 0 and int(steps.max()) <= _INT32_MAX:
            packed_ts = (int(ts[0]), steps.astype(np.int32).tobytes())
    narrow = qty.astype(np.float32)
    packed_qty = narrow.tobytes() if np.array_equal(narrow, qty) else qty.tobytes()
    return packed_ts, packed_qty, len(ts)


def _unpacked(packed_ts: bytes | tuple, packed_qty: bytes, count: int | None = None) -> tuple[array, array]:
    """:func:`_packed`'s inverse (also of the plain ``(times, sizes)`` bytes of older snapshots)."""
    if type(packed_ts) is tuple:
        first, steps = packed_ts
        ts = np.empty(len(steps) // 4 + 1, dtype=np.int64)
        ts[0] = first
        np.cumsum(np.frombuffer(steps, dtype=np.int32), dtype=np.int64, out=ts[1:])
        ts[1:] += first
        times = array("q", ts.tobytes())
    else:
        times = array("q", packed_ts)
    if count is not None and len(packed_qty) == 4 * count and count:
        sizes = array("d", np.frombuffer(packed_qty, dtype=np.float32).astype(np.float64).tobytes())
    else:
        sizes = array("d", packed_qty)
    return times, sizes


def _joined_pieces(pieces: list[tuple]) -> tuple[array, array]:
    """The prints of sealed pieces, in order."""
    parts = [_unpacked(packed_ts, packed_qty, count) for _, packed_ts, packed_qty, count in pieces]
    return array("q", b"".join(t.tobytes() for t, _ in parts)), array("d", b"".join(q.tobytes() for _, q in parts))


def _add_in_order(total: float, values: np.ndarray) -> float:
    """``total + values[0] + values[1] + ...`` left to right, as a Python loop would add them
    (an accumulate is sequential; a NumPy sum is pairwise and rounds differently)."""
    if len(values) == 0:
        return total
    return float(np.add.accumulate(np.concatenate(([total], values)))[-1])


class FillModel:
    """Fill prices and fees.

    Market orders pay to cross: ``price = reference + side * (half_spread + impact)`` with
    ``impact = min(impact_coef * qty / recent_volume, max_impact_bps / 1e4) * reference``, rounded
    to the tick *against* the order (buys up, sells down) so rounding never flatters a backtest, and
    never below one tick. An empty volume window means no evidence of liquidity: impact is the cap.

    Limit orders are passive: they fill at their own limit price, with no spread and no impact.
    """

    __slots__ = ("config", "price_grid", "qty_grid", "fee_grid", "_impact_cap", "_fee_rate")

    def __init__(self, config: SimVenueConfig) -> None:
        self.config = config
        self.price_grid = Increment(config.price_increment)
        self.qty_grid = Increment(config.qty_increment)
        self.fee_grid = Increment(config.fee_increment)
        self._impact_cap = config.max_impact_bps / 1e4
        self._fee_rate = config.fee_bps / 1e4

    def impact_fraction(self, qty: float, recent_volume: float) -> float:
        """Impact as a fraction of the reference price."""
        if self.config.impact_coef == 0.0:
            return 0.0
        if recent_volume <= 0.0:
            return self._impact_cap
        return min(self.config.impact_coef * qty / recent_volume, self._impact_cap)

    def market_price(self, sign: int, reference: float, half_spread: float, qty: float, recent_volume: float) -> float:
        raw = reference + sign * (half_spread + self.impact_fraction(qty, recent_volume) * reference)
        ticks = self.price_grid.ceil(raw) if sign > 0 else self.price_grid.floor(raw)
        return self.price_grid.to_float(max(ticks, 1))

    def bar_price(self, sign: int, open_price: float) -> float:
        """A market fill from a bar: its open moved ``bar_slippage_bps`` against the order, rounded
        to the price grid away from the order's favour (never below one tick)."""
        raw = open_price * (1.0 + sign * self.config.bar_slippage_bps / 1e4)
        ticks = self.price_grid.ceil(raw) if sign > 0 else self.price_grid.floor(raw)
        return self.price_grid.to_float(max(ticks, 1))

    def available_units(self, displayed_size: float) -> int:
        """What the venue's orders may take from one print or one displayed quote, in qty units."""
        return self.qty_grid.floor(self.config.participation * displayed_size)

    def fee(self, qty: float, price: float) -> float:
        return self.fee_grid.round(qty * price * self._fee_rate + qty * self.config.fee_per_share)
