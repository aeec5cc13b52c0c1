"""Bars: event-time tumbling OHLCV bars per symbol (default 1s and 1m) from Trades.

Windows: bar ``[start, end)`` with ``start = ts - ts % interval`` (epoch-aligned, UTC). A bar exists
only if at least one trade fell in it: an interval with no trades emits nothing (no flat bars).

Watermark: per symbol, the max ``ts_event`` the builder has seen (trades, and quotes via
:meth:`BarBuilder.advance`). A bar closes once ``watermark >= end + lateness_ns``; until then
out-of-order trades still land in it. A trade is late (dead-lettered with reason ``late``, stage
``bars``, source topic ``md.trades``) when ``ts < watermark - lateness_ns`` or when its bar has
already been emitted (possible only after :meth:`BarBuilder.flush`). In the fused topology
normalize already refuses such ticks; in the split topology Kafka partitions can reorder, hence the
check here too.

Aggregation: volume, buy/sell volume and the VWAP numerator are plain float accumulators added in
trade arrival order, so a reference that sums in the same order matches to the last bit. Open and
close follow event time, not arrival: open is the earliest trade (first arrival among equal
timestamps), close the latest (last arrival among equal timestamps); for in-order data that is
simply the first and the last trade. Unknown aggressors count in ``volume`` but in neither side.

Output order: bars closed by one call come out sorted by ``(bar_end, interval)``, intervals in the
configured order (by default 1s before 1m, so a minute's last 1s bar precedes the 1m bar);
:meth:`BarBuilder.flush` and :meth:`BarBuilder.on_batch` sort by ``(bar_end, symbol, interval)``.

Column batches: :meth:`BarBuilder.on_batch` folds a whole :class:`schemas.columns.TickBatch` with
NumPy group-bys (``market/bars_columns.py``) into the same bars, dead letters and state as these
per-tick methods, and closes bars on the feed's watermark when the batch carries one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.trusted import trusted_constructor
from schemas.base import now_ns
from schemas.control import DeadLetter
from schemas.market import INTERVAL_NANOS, Aggressor, Bar, BarInterval, Trade

if TYPE_CHECKING:
    from schemas.columns import TickBatch

__all__ = ["BarConfig", "BarBuilder", "OpenBar", "REASON_LATE", "SOURCE_TOPIC", "STAGE"]

SOURCE_TOPIC = "md.trades"
STAGE = "bars"
REASON_LATE = "late"

_NEVER = 1 << 63  # "no bar to close": larger than any ns timestamp
_NEITHER, _BUY, _SELL = 0, 1, 2  # aggressor as a small int: compared per interval in the hot loop

_new_bar = trusted_constructor(Bar)
_new_dead_letter = trusted_constructor(DeadLetter)


class BarConfig(BaseModel):
    """Bar intervals and lateness; intervals are limited to what ``Bar.interval`` accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intervals: tuple[BarInterval, ...] = ("1s", "1m")
    lateness_ns: int = Field(default=500_000_000, ge=0)

    @field_validator("intervals")
    @classmethod
    def _distinct_and_known(cls, intervals: tuple[str, ...]) -> tuple[str, ...]:
        if not intervals:
            raise ValueError("at least one bar interval is required")
        if len(set(intervals)) != len(intervals):
            raise ValueError(f"duplicate bar intervals: {intervals}")
        unknown = [i for i in intervals if i not in INTERVAL_NANOS]
        if unknown:
            raise ValueError(f"unknown bar intervals {unknown}; known: {sorted(INTERVAL_NANOS)}")
        return intervals


class OpenBar:
    """Running aggregate of one bar; slots keep it small and picklable.

    Updates happen inline in :meth:`BarBuilder.on_trade` (a method call per interval per trade is
    a measurable share of the per-tick budget); this class only holds the numbers.
    """

    __slots__ = (
        "start", "end", "open", "open_ts", "high", "low", "close", "close_ts",
        "volume", "notional", "trade_count", "buy_volume", "sell_volume", "last_tick_ingest",
    )

    def __init__(self, start: int, end: int, ts: int, price: float, size: float, side: int, tick_ingest: int):
        self.start = start
        self.end = end
        self.open = self.high = self.low = self.close = price
        self.open_ts = self.close_ts = ts
        self.volume = size
        self.notional = price * size
        self.trade_count = 1
        self.buy_volume = size if side == _BUY else 0.0
        self.sell_volume = size if side == _SELL else 0.0
        self.last_tick_ingest = tick_ingest


class _SymbolBars:
    """One symbol's watermark and open bars; one dict lookup per trade reaches all of it."""

    __slots__ = ("watermark", "open_bars", "closed_until", "max_closed_until", "next_close")

    def __init__(self, watermark: int, n_intervals: int):
        self.watermark = watermark
        # per interval (config order): bar_start -> OpenBar; more than one only while out-of-order
        # trades keep an older bar within the lateness window
        self.open_bars: list[dict[int, OpenBar]] = [{} for _ in range(n_intervals)]
        # per interval: end of the newest emitted bar; a trade before it would reopen an emitted bar
        self.closed_until: list[int] = [0] * n_intervals
        self.max_closed_until = 0
        # smallest end + lateness over open bars: the watermark must reach it before a scan is useful
        self.next_close = _NEVER


class BarBuilder:
    """Event-time OHLCV bars for any number of symbols; picklable for Bytewax recovery."""

    def __init__(
        self,
        config: BarConfig | None = None,
        *,
        intervals: tuple[str, ...] | None = None,
        lateness_ns: int | None = None,
    ):
        """``BarBuilder(config)`` or ``BarBuilder(intervals=..., lateness_ns=...)``; defaults: 1s + 1m, 500 ms."""
        if config is None:
            overrides = {"intervals": intervals, "lateness_ns": lateness_ns}
            config = BarConfig(**{k: v for k, v in overrides.items() if v is not None})
        elif intervals is not None or lateness_ns is not None:
            raise TypeError("pass either a BarConfig or intervals/lateness_ns, not both")
        self.config = config
        self._symbols: dict[str, _SymbolBars] = {}
        self._bars_emitted = 0
        self._late = 0
        self._cache_config()

    def _cache_config(self) -> None:
        self._intervals: tuple[tuple[int, str, int], ...] = tuple(
            (index, name, INTERVAL_NANOS[name]) for index, name in enumerate(self.config.intervals)
        )
        self._interval_nanos: tuple[int, ...] = tuple(INTERVAL_NANOS[name] for name in self.config.intervals)
        self._lateness_ns = self.config.lateness_ns

    def __getstate__(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "symbols": self._symbols,
            "bars_emitted": self._bars_emitted,
            "late": self._late,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._symbols = state["symbols"]
        self._bars_emitted = state["bars_emitted"]
        self._late = state["late"]
        self._cache_config()

    # -- public API ---------------------------------------------------------------------------

    def on_trade(self, trade: Trade) -> list[Bar | DeadLetter]:
        """Add a trade to its open bars; return the bars its watermark advance closed, or a dlq record."""
        symbol = trade.symbol
        ts = trade.ts_event
        book = self._symbols.get(symbol)
        if book is None:
            book = self._symbols[symbol] = _SymbolBars(ts, len(self._intervals))
        watermark = book.watermark
        if ts < watermark - self._lateness_ns:
            return [self._late_trade(
                trade,
                f"ts_event={ts} is {(watermark - ts) / 1e6:.3f} ms behind the {symbol} bar watermark "
                f"{watermark} (lateness {self._lateness_ns / 1e6:g} ms)",
            )]
        if ts < book.max_closed_until:
            for index, name, nanos in self._intervals:
                start = ts - ts % nanos
                if start < book.closed_until[index]:
                    return [self._late_trade(
                        trade, f"ts_event={ts} falls in the {symbol} {name} bar [{start}, {start + nanos}) "
                        "which was already emitted",
                    )]

        aggressor = trade.aggressor
        side = _BUY if aggressor == Aggressor.BUY else _SELL if aggressor == Aggressor.SELL else _NEITHER
        return self._add_trade(symbol, book, ts, trade.price, trade.size, side, trade.ts_tick_ingest)

    def _add_trade(self, symbol: str, book: _SymbolBars, ts: int, price: float, size: float, side: int,
                   tick_ingest: int) -> list[Bar]:
        """A trade that is not late into its open bars (``side``: ``_BUY``, ``_SELL``, ``_NEITHER``,
        the codes of ``TickBatch.aggressor``); the bars its watermark advance closed."""
        for bars, nanos in zip(book.open_bars, self._interval_nanos):
            start = ts - ts % nanos
            bar = bars.get(start)
            if bar is None:
                bars[start] = OpenBar(start, start + nanos, ts, price, size, side, tick_ingest)
                close_at = start + nanos + self._lateness_ns
                if close_at < book.next_close:
                    book.next_close = close_at
                continue
            # open/close by event time; ties: first arrival opens, last arrival closes
            if ts < bar.open_ts:
                bar.open = price
                bar.open_ts = ts
            if ts >= bar.close_ts:
                bar.close = price
                bar.close_ts = ts
            if price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            bar.volume += size
            bar.notional += price * size
            bar.trade_count += 1
            if side == _BUY:
                bar.buy_volume += size
            elif side == _SELL:
                bar.sell_volume += size
            bar.last_tick_ingest = tick_ingest

        if ts > book.watermark:
            book.watermark = ts
            if ts >= book.next_close:
                return self._close_ready(symbol, book, tick_ingest)
        return []

    def on_batch(self, batch: "TickBatch") -> list[Bar | DeadLetter]:
        """Fold a batch of trades and quotes (arrival order); return the bars it closed and dead letters.

        Same records (but a bar's wall-clock ``ts_ingest``), per symbol in the same order, and same
        state after as feeding the rows one at a time (trades to :meth:`on_trade`, quotes to
        :meth:`advance` with their ``ts_tick_ingest``). Across symbols the output is sorted by
        ``(bar_end, symbol, interval)``; a dead letter follows the bar its symbol emitted before it.
        With ``batch.watermark`` set, every open bar ending at or before it then closes too,
        carrying the batch's newest ``ts_tick_ingest`` (its last trade's for a batch with no rows);
        a trade still arriving for such a bar is late. Details: ``market/bars_columns.py``.
        """
        # deferred: bars_columns builds on this module's classes
        from market.bars_columns import fold_batch

        return fold_batch(self, batch)

    def advance(self, symbol: str, ts_event: int, ts_tick_ingest: int | None = None) -> list[Bar]:
        """Move ``symbol``'s watermark without a trade (e.g. on a quote); return the bars that closes.

        ``ts_tick_ingest`` is the ingest time of the tick driving the advance; without it, each
        closed bar carries its last trade's.
        """
        book = self._symbols.get(symbol)
        if book is None:
            self._symbols[symbol] = _SymbolBars(ts_event, len(self._intervals))
            return []
        if ts_event > book.watermark:
            book.watermark = ts_event
            if ts_event >= book.next_close:
                return self._close_ready(symbol, book, ts_tick_ingest)
        return []

    def flush(self) -> list[Bar]:
        """Close every open bar (end of stream), ordered by ``(bar_end, symbol, interval)``."""
        closing: list[tuple[int, str, int, str, OpenBar]] = []
        for symbol, book in self._symbols.items():
            for index, name, _nanos in self._intervals:
                bars = book.open_bars[index]
                for bar in bars.values():
                    closing.append((bar.end, symbol, index, name, bar))
                    if bar.end > book.closed_until[index]:
                        book.closed_until[index] = bar.end
                bars.clear()
            book.max_closed_until = max(book.closed_until)
            book.next_close = _NEVER
        closing.sort(key=lambda item: item[:3])
        now = now_ns()
        return [self._emit(symbol, name, bar, bar.last_tick_ingest, now) for _, symbol, _, name, bar in closing]

    def watermark(self, symbol: str) -> int | None:
        book = self._symbols.get(symbol)
        return None if book is None else book.watermark

    def stats(self) -> dict[str, int]:
        open_bars = sum(len(bars) for book in self._symbols.values() for bars in book.open_bars)
        return {"bars_emitted": self._bars_emitted, "open_bars": open_bars, "late": self._late}

    # -- internals ----------------------------------------------------------------------------

    def _close_ready(self, symbol: str, book: _SymbolBars, tick_ingest: int | None) -> list[Bar]:
        watermark = book.watermark
        lateness = self._lateness_ns
        ready: list[tuple[int, int, str, OpenBar]] = []
        next_close = _NEVER
        for index, name, _nanos in self._intervals:
            bars = book.open_bars[index]
            for start in [s for s, bar in bars.items() if bar.end + lateness <= watermark]:
                bar = bars.pop(start)
                ready.append((bar.end, index, name, bar))
                if bar.end > book.closed_until[index]:
                    book.closed_until[index] = bar.end
            for bar in bars.values():
                if bar.end + lateness < next_close:
                    next_close = bar.end + lateness
        book.next_close = next_close
        book.max_closed_until = max(book.closed_until)
        ready.sort(key=lambda item: item[:2])
        now = now_ns()
        return [
            self._emit(symbol, name, bar, bar.last_tick_ingest if tick_ingest is None else tick_ingest, now)
            for _, _, name, bar in ready
        ]

    def _emit(self, symbol: str, interval: str, bar: OpenBar, tick_ingest: int, now: int) -> Bar:
        self._bars_emitted += 1
        return _new_bar({
            "schema_version": 1,
            "id": f"{symbol}:{interval}:{bar.start}",
            "ts_event": bar.end,
            "ts_ingest": now,
            "symbol": symbol,
            "interval": interval,
            "bar_start": bar.start,
            "bar_end": bar.end,
            "open": bar.open,
            "high": bar.high,
            "low": bar.low,
            "close": bar.close,
            "volume": bar.volume,
            "vwap": bar.notional / bar.volume,
            "trade_count": bar.trade_count,
            "buy_volume": bar.buy_volume,
            "sell_volume": bar.sell_volume,
            "ts_tick_ingest": tick_ingest,
        })

    def _late_trade(self, trade: Trade, detail: str) -> DeadLetter:
        self._late += 1
        return _new_dead_letter({
            "schema_version": 1,
            "id": f"dlq:{STAGE}:{trade.id}",
            "ts_event": trade.ts_event,
            "ts_ingest": trade.ts_ingest,
            "source_topic": SOURCE_TOPIC,
            "stage": STAGE,
            "reason": REASON_LATE,
            "detail": detail,
            "symbol": trade.symbol,
            "payload": trade.to_json().decode(),
        })
