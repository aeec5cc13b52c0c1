"""Several recorded files (trades and quotes, of one or many symbols) replayed as one tape.

``MergedReplayFeed(feeds, speed=0.0)`` takes :class:`feeds.replay.ReplayFeed` objects, each with its
own mapping and symbol, and replays the union of their rows in event time: sorted by ``ts_event``,
ties broken by the order the files were given, then by file order (so a quote and a trade with the
same stamp come in a stable, documented order). ``seq`` is the position in the merged tape and
``source`` is ``replay:`` + the file stems joined by ``+`` (one file: that file's own source, so a
merge of one file is that file's replay, tick for tick).

Nothing is dropped here either: a row the replay would emit raw for normalize to dead-letter is
emitted raw in the merge, at its place in event time.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np
import polars as pl

from feeds.pacing import Pacer
from feeds.replay import (
    _RAW_SIDE_NAMES,
    _RAW_SIDE_VALUES,
    ReplayFeed,
    _with_raw_fallback,
    tape_batches,
    tape_ticks,
)
from schemas import RawTick, now_ns
from schemas.columns import QUOTE, SIDE_NONE, TRADE, RawTickBatch

_FLOATS = ("price", "size", "bid", "ask", "bid_size", "ask_size")
_TEXT = ("side", "trade_id", "_raw_ts", *(f"_raw_{name}" for name in _FLOATS))


class MergedReplayFeed:
    """``MergedReplayFeed(feeds, speed=0.0)``: the files of ``feeds`` as one tape in event time.

    ``speed``: 0 = as fast as possible, N = N x real time (the feeds' own speeds are not used).
    ``market_streams``: the kinds the files hold ("trade", "quote"), what the desk waits for.
    """

    def __init__(self, feeds: Sequence[ReplayFeed], speed: float = 0.0, *,
                 pacer_factory: Callable[[float], Pacer] = Pacer) -> None:
        if not feeds:
            raise ValueError("a merged replay needs at least one file")
        self.feeds = tuple(feeds)
        self.speed = speed
        self.source = feeds[0].source if len(feeds) == 1 else "replay:" + "+".join(f.path.stem for f in feeds)
        self.market_streams = tuple(k for k in ("trade", "quote") if any(f.mapping.kind == k for f in feeds))
        self._pacer_factory = pacer_factory
        self._frame: pl.DataFrame | None = None
        self._columns: tuple[pl.DataFrame, tuple[str, ...]] | None = None

    def frame(self) -> pl.DataFrame:
        """Every file's rows in merged tape order (cached), with ``_kind`` (TRADE/QUOTE) and ``_part``
        (the file's position in ``feeds``); a column a file's kind lacks is null."""
        if self._frame is None:
            parts = [
                feed.frame().with_columns(pl.lit(i, pl.Int32).alias("_part"),
                                          pl.lit(TRADE if feed.mapping.kind == "trade" else QUOTE, pl.Int8).alias("_kind"))
                for i, feed in enumerate(self.feeds)
            ]
            frame = pl.concat(parts, how="diagonal_relaxed")
            absent = [pl.lit(None, pl.Float64).alias(c) for c in _FLOATS if c not in frame.columns]
            absent += [pl.lit(None, pl.String).alias(c) for c in _TEXT if c not in frame.columns]
            self._frame = frame.with_columns(absent).sort(["ts_event", "_part", "_row"])
        return self._frame

    def __len__(self) -> int:
        return self.frame().height

    def ticks(self, start_seq: int = 0) -> Iterator[RawTick]:
        return tape_ticks(self, start_seq)

    def batches(self, start_seq: int = 0, max_rows: int = 2_000) -> Iterator[RawTickBatch | RawTick]:
        """As :meth:`feeds.replay.ReplayFeed.batches`, over the merged tape (batches mix kinds)."""
        return tape_batches(self, start_seq, max_rows)

    def _rows(self, chunk: pl.DataFrame) -> Iterator[tuple[int, str, dict]]:
        cols = {name: _with_raw_fallback(chunk, name) for name in ("ts", *_FLOATS)}
        rows = zip(chunk["_kind"].to_list(), chunk["ts_event"].to_list(), chunk["symbol"].to_list(), cols["ts"],
                   cols["price"], cols["size"], chunk["side"].to_list(), chunk["trade_id"].to_list(),
                   cols["bid"], cols["ask"], cols["bid_size"], cols["ask_size"])
        for kind, ts, sym, pts, price, size, side, tid, bid, ask, bsz, asz in rows:
            if kind == TRADE:
                yield ts, sym, {"type": "trade", "ts": pts, "price": price, "size": size, "side": side, "trade_id": tid}
            else:
                yield ts, sym, {"type": "quote", "ts": pts, "bid": bid, "ask": ask, "bid_size": bsz, "ask_size": asz}

    def _batch_columns(self) -> tuple[pl.DataFrame, tuple[str, ...]]:
        if self._columns is None:
            frame = self.frame()
            symbols = tuple(frame["symbol"].unique(maintain_order=True).to_list())
            trade_ok = (pl.col("price").is_not_null() & pl.col("size").is_not_null()
                        & pl.col("side").is_in(_RAW_SIDE_NAMES) & pl.col("trade_id").is_not_null())
            quote_ok = pl.all_horizontal(pl.col(c).is_not_null() for c in ("bid", "ask", "bid_size", "ask_size"))
            regular = (pl.col("ts").is_not_null() & (pl.col("ts") >= 0)
                       & pl.when(pl.col("_kind") == TRADE).then(trade_ok).otherwise(quote_ok))
            side = (pl.when(pl.col("_kind") == TRADE)
                    .then(pl.col("side").replace_strict(_RAW_SIDE_NAMES, _RAW_SIDE_VALUES, default=SIDE_NONE,
                                                        return_dtype=pl.Int8))
                    .otherwise(pl.lit(SIDE_NONE, pl.Int8)))
            code = pl.col("symbol").replace_strict(symbols, list(range(len(symbols))), return_dtype=pl.Int32)
            self._columns = (frame.select(
                "ts_event", "_kind", "trade_id", *(pl.col(c).fill_null(np.nan) for c in _FLOATS),
                code.alias("_symbol"), side.fill_null(SIDE_NONE).alias("_side"), regular.alias("_regular"),
            ), symbols)
        return self._columns

    def _batch(self, columns: pl.DataFrame, symbols: tuple[str, ...], lo: int, hi: int, watermark: int) -> RawTickBatch:
        chunk, n = columns.slice(lo, hi - lo), hi - lo
        trade_id = np.asarray(chunk["trade_id"].to_list(), dtype=object)
        return RawTickBatch(
            source=self.source, symbols=symbols, symbol=chunk["_symbol"].to_numpy(), kind=chunk["_kind"].to_numpy(),
            seq=np.arange(lo, hi, dtype=np.int64), ts_event=chunk["ts_event"].to_numpy(),
            ts_ingest=np.full(n, now_ns(), np.int64), side=chunk["_side"].to_numpy(), trade_id=trade_id,
            watermark=watermark, **{c: chunk[c].to_numpy() for c in _FLOATS},
        )
