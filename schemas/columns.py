"""Ticks as columns: the form trades and quotes take between the feed, normalize, bars and the sink.

DESIGN §2: columns on the tick path, records at the contract. A batch holds one feed read (or one
Kafka poll) of ticks as NumPy arrays, so a stage validates, aggregates or lands it with array
operations instead of a Python call per tick. The records in :mod:`schemas.market` still define
every field: each batch converts to and from its records losslessly (``from_records`` /
``to_records``; ``tests/unit/schemas/test_columns.py`` holds the round trip to it).

- :class:`RawTickBatch`: ``tapeflow.v1`` RawTicks of one source before any validation. Values may
  be anything a float can hold (NaN, negative, inf): normalize names what is wrong with them. A
  feed row whose payload cannot be a column (a value that is not a number, a missing timestamp)
  stays a RawTick record beside the batch; normalize dead-letters it as ``malformed``.
- :class:`TickBatch`: accepted Trades and Quotes, in normalize's order.

Strings are dictionary-coded: ``symbols`` (and ``sources``) hold each name once and ``symbol`` is an
int32 code per row, so a group-by per symbol is an integer operation. Trades and quotes share one
batch (``kind``), in arrival order, because a quote moves a symbol's watermark between two trades;
the columns a kind does not have hold NaN (floats) or None (trade ids).

Trade ids are numbers on the hot path, text only at the edges (TRADE_NUMBERS below): a feed whose
ids are integers gives ``trade_no`` and no ``trade_id``; the text column is then made on its first
read, which only the record, wire and dead-letter edges do.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterable, Iterator, Sequence

import numpy as np

from schemas.market import Aggressor, Quote, RawTick, Trade
from schemas.trusted import trusted_constructor

TRADE, QUOTE = np.int8(0), np.int8(1)

# Normalized aggressor codes (TickBatch.aggressor).
AGGRESSOR_UNKNOWN, AGGRESSOR_BUY, AGGRESSOR_SELL = 0, 1, 2
AGGRESSORS: tuple[Aggressor, ...] = (Aggressor.UNKNOWN, Aggressor.BUY, Aggressor.SELL)
AGGRESSOR_CODE = {a: i for i, a in enumerate(AGGRESSORS)}

# Raw ``side`` codes (RawTickBatch.side): the payload's side field as the feed wrote it, where
# an absent side (None) and an explicit "unknown" are different payloads.
SIDE_NONE, SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN = 0, 1, 2, 3
RAW_SIDES: tuple[str | None, ...] = (None, "buy", "sell", "unknown")
RAW_SIDE_CODE = {s: i for i, s in enumerate(RAW_SIDES)}
# the aggressor a raw side becomes
SIDE_TO_AGGRESSOR = np.array([AGGRESSOR_UNKNOWN, AGGRESSOR_BUY, AGGRESSOR_SELL, AGGRESSOR_UNKNOWN], dtype=np.int8)

PAYLOAD_FORMAT = "tapeflow.v1"

TRADE_NUMBERS = """``trade_no`` (int64, or None): every trade row's trade id as a number, its ``trade_id`` being
``str(trade_no)`` exactly (so 0 <= trade_no < 2**63: canonical decimal text, no sign, no leading
zero), and -1 on quote rows. A batch built with ``trade_no`` may leave ``trade_id`` None: reading
``batch.trade_id`` then makes the text column once (and keeps it). A batch whose ids are not all
such numbers has ``trade_no`` None and its text ``trade_id``. See :func:`trade_number`."""

_MAX_TRADE_NO_DIGITS = 19  # 2**63 - 1 has 19 digits


def trade_number(trade_id: object) -> int | None:
    """The number a trade id text stands for under TRADE_NUMBERS (``"42"`` -> 42), or None when the
    text is not the canonical decimal form of an int64 >= 0 (``"042"``, ``"-1"``, ``"1e3"``, ``"x"``):
    each number has exactly one text, so a number and a text never name the same trade twice."""
    if type(trade_id) is not str or not trade_id.isascii() or not trade_id.isdigit():
        return None
    if len(trade_id) > _MAX_TRADE_NO_DIGITS or (trade_id[0] == "0" and len(trade_id) > 1):
        return None
    number = int(trade_id)
    return number if number < (1 << 63) else None


def trade_key(trade_id: str) -> int | str:
    """A trade id as what a duplicate window holds: its number when the text is one
    (:func:`trade_number`: one text per number, so no two ids share a key), else the text. A batch
    with ``trade_no`` then checks its ids with no text made at all."""
    number = trade_number(trade_id)
    return trade_id if number is None else number


def trade_keys(trade_ids: list[str]) -> list[int | str]:
    """:func:`trade_key` of each id."""
    return [trade_id if number is None else number
            for trade_id, number in zip(trade_ids, map(trade_number, trade_ids))]


def trade_id_texts(kind: np.ndarray, trade_no: np.ndarray) -> np.ndarray:
    """The ``trade_id`` column of ``trade_no`` (TRADE_NUMBERS): str on trade rows, None on quotes."""
    texts = np.empty(len(kind), dtype=object)
    texts[:] = [str(n) if k == TRADE else None for k, n in zip(kind.tolist(), trade_no.tolist())]
    return texts


class _TextTradeIds:
    """The ``trade_id`` attribute of a batch class: the column as given, else made from ``trade_no``
    on first read and kept (a frozen batch's columns never change, so the cache cannot go stale)."""

    def __get__(self, batch, owner=None):
        if batch is None:
            return self
        texts = batch.__dict__["trade_id"]
        if texts is None:
            texts = batch.__dict__["trade_id"] = trade_id_texts(batch.kind, batch.trade_no)
        return texts

    # Kept under the field's own name in the instance dict (this data descriptor wins over it), so
    # vars(batch) still maps every field to its value.
    def __set__(self, batch, texts) -> None:
        batch.__dict__["trade_id"] = texts


def _check_trade_ids(batch) -> None:
    if batch.trade_no is None and batch.__dict__["trade_id"] is None:
        raise ValueError(f"a {type(batch).__name__} needs trade_id or trade_no")


def take_trade_ids(batch: "RawTickBatch | TickBatch", rows) -> dict:
    """``{"trade_id": ..., "trade_no": ...}`` of the rows ``rows`` (indices, a mask or a slice) for a
    batch constructor, without making the text column if it is not made yet."""
    texts = batch.__dict__["trade_id"]
    return {"trade_id": None if texts is None else texts[rows],
            "trade_no": None if batch.trade_no is None else batch.trade_no[rows]}


def concat_trade_ids(batches: "Sequence[RawTickBatch | TickBatch]") -> dict:
    """``{"trade_id": ..., "trade_no": ...}`` of ``batches`` one after the other: numbers stay
    numbers (the text unmade) when every batch has them, else the texts."""
    if all(b.trade_no is not None for b in batches):
        return {"trade_id": None, "trade_no": np.concatenate([b.trade_no for b in batches])}
    return {"trade_id": np.concatenate([b.trade_id for b in batches]), "trade_no": None}

WATERMARK = """A batch's ``watermark`` (ns, or None): every tick of this stream that comes after the batch,
of any symbol, has ``ts_event >= watermark``. Only a feed that delivers its tape in event-time order
(the synthetic feed, a sorted replay file) can promise that; it sets the watermark to its position,
so a stage may close a bar ``[start, end)`` once ``watermark >= end`` and the trading desk may work
through everything before it, with no lateness window to wait out. Live feeds from the network and
Kafka partitions promise nothing (None) and the stages keep their lateness rules. A batch with no
rows may still carry a watermark: a heartbeat of a quiet tape."""

# The watermark of the empty batch a feed source hands over after a tape's last tick, when the run
# flushes at its end (``flows.source``): no tick comes after it at all, so every open bar closes on
# it and the desk works through the tape up to its next cross-section, in the tape's own data flow.
# The engine's end of input reaches the same state, but it visits one stage after another (measured:
# ~3 ms a step, 12.6 ms from the feed's end to the desk), and an order of the last bar waited for it.
# 2**62 ns (the year 2116): above every event time, and far enough below int64's limit that adding a
# lateness window or an interval to it cannot overflow.
END_OF_TAPE_WATERMARK = 1 << 62
_SCHEMA_VERSION = 1

_new_raw = trusted_constructor(RawTick)
_new_trade = trusted_constructor(Trade)
_new_quote = trusted_constructor(Quote)


def dictionary_codes(names: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """``names`` per row -> (the distinct names in first-seen order, an int32 code per row)."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(n, len(index)) for n in names), dtype=np.int32, count=len(names))
    return tuple(index), codes


@dataclass(frozen=True, eq=False)
class RawTickBatch:
    """``tapeflow.v1`` raw ticks of one ``source`` as columns, in feed order (``seq`` ascending).

    ``ts_event`` is the payload's event time (the synthetic and replay feeds read the tick's
    ``ts_event`` from it). A RawTick's id is ``{source}:{seq}`` and its payload is rebuilt from the
    columns of its kind: trades ``{type, ts, price, size, side, trade_id}``, quotes ``{type, ts, bid,
    ask, bid_size, ask_size}``, in that key order.
    """

    source: str
    symbols: tuple[str, ...]
    symbol: np.ndarray  # int32 codes into ``symbols``
    kind: np.ndarray  # int8: TRADE or QUOTE
    seq: np.ndarray  # int64
    ts_event: np.ndarray  # int64 ns
    ts_ingest: np.ndarray  # int64 ns
    price: np.ndarray  # float64; NaN on quotes
    size: np.ndarray
    side: np.ndarray  # int8 raw side code (SIDE_*); SIDE_NONE on quotes
    trade_id: np.ndarray | None  # object: str on trades, None on quotes; None: made from trade_no
    bid: np.ndarray  # float64; NaN on trades
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    watermark: int | None = None  # see WATERMARK below
    trade_no: np.ndarray | None = None  # int64 or None, see TRADE_NUMBERS

    _PER_BATCH = ("source", "symbols", "watermark", "trade_id", "trade_no")  # take() handles these itself

    def __post_init__(self) -> None:
        _check_trade_ids(self)

    def __len__(self) -> int:
        return len(self.seq)

    def take(self, rows: np.ndarray) -> "RawTickBatch":
        """The rows ``rows`` (indices or a boolean mask), same dictionaries."""
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)
                                 if f.name not in self._PER_BATCH}, **take_trade_ids(self, rows))

    def symbol_names(self) -> np.ndarray:
        return np.asarray(self.symbols, dtype=object)[self.symbol] if self.symbols else np.empty(0, dtype=object)

    def field_dicts(self) -> Iterator[dict]:
        """Each row as its RawTick's field dict, keys in field order (what ``to_records`` builds the
        records from and what orjson writes for the wire)."""
        source, names = self.source, self.symbols
        rows = zip(self.kind.tolist(), self.symbol.tolist(), self.seq.tolist(), self.ts_event.tolist(),
                   self.ts_ingest.tolist(), self.price.tolist(), self.size.tolist(), self.side.tolist(),
                   self.trade_id.tolist(), self.bid.tolist(), self.ask.tolist(), self.bid_size.tolist(),
                   self.ask_size.tolist())
        for kind, sym, seq, ts, ingest, price, size, side, tid, bid, ask, bsz, asz in rows:
            if kind == TRADE:
                payload = {"type": "trade", "ts": ts, "price": price, "size": size, "side": RAW_SIDES[side],
                           "trade_id": tid}
            else:
                payload = {"type": "quote", "ts": ts, "bid": bid, "ask": ask, "bid_size": bsz, "ask_size": asz}
            yield {
                "schema_version": _SCHEMA_VERSION, "id": f"{source}:{seq}", "ts_event": ts, "ts_ingest": ingest,
                "source": source, "symbol": names[sym], "payload_format": PAYLOAD_FORMAT, "payload": payload,
                "seq": seq,
            }

    def to_records(self) -> list[RawTick]:
        return [_new_raw(fields_) for fields_ in self.field_dicts()]

    @classmethod
    def from_records(cls, ticks: Sequence[RawTick]) -> "RawTickBatch":
        """Raw ticks of one source whose payloads have the columns' shape (see :func:`columnar_payload`)."""
        if not ticks:
            raise ValueError("a RawTickBatch needs at least one tick")
        sources = {t.source for t in ticks}
        if len(sources) != 1:
            raise ValueError(f"a RawTickBatch holds one source, got {sorted(sources)}")
        n = len(ticks)
        symbols, codes = dictionary_codes([t.symbol for t in ticks])
        kind = np.empty(n, dtype=np.int8)
        cols = {name: np.full(n, np.nan) for name in ("price", "size", "bid", "ask", "bid_size", "ask_size")}
        side = np.zeros(n, dtype=np.int8)
        trade_id = np.full(n, None, dtype=object)
        for i, t in enumerate(ticks):
            p = t.payload
            if not columnar_payload(t):
                raise ValueError(f"raw tick {t.id} has a payload the columns cannot hold: {p!r}")
            if p["type"] == "trade":
                kind[i] = TRADE
                cols["price"][i], cols["size"][i] = p["price"], p["size"]
                side[i] = RAW_SIDE_CODE[p.get("side")]
                trade_id[i] = p["trade_id"]
            else:
                kind[i] = QUOTE
                for name in ("bid", "ask", "bid_size", "ask_size"):
                    cols[name][i] = p[name]
        return cls(
            source=next(iter(sources)), symbols=symbols, symbol=codes, kind=kind,
            seq=np.fromiter((t.seq for t in ticks), np.int64, n),
            ts_event=np.fromiter((t.payload["ts"] for t in ticks), np.int64, n),
            ts_ingest=np.fromiter((t.ts_ingest for t in ticks), np.int64, n),
            side=side, trade_id=trade_id, **cols,
        )


def columnar_payload(tick: RawTick) -> bool:
    """Whether a raw tick fits a :class:`RawTickBatch` exactly: ``tapeflow.v1``, an int ``ts`` equal
    to the tick's ``ts_event``, float values, a known side, a str trade id, and no other keys."""
    p = tick.payload
    if tick.payload_format != PAYLOAD_FORMAT or type(p) is not dict or tick.id != f"{tick.source}:{tick.seq}":
        return False
    ts = p.get("ts")
    if type(ts) is not int or ts != tick.ts_event or not 0 <= ts < (1 << 63):
        return False
    kind = p.get("type")
    if kind == "trade":
        return (
            list(p) == ["type", "ts", "price", "size", "side", "trade_id"]
            and type(p["price"]) is float and type(p["size"]) is float
            and p["side"] in RAW_SIDE_CODE and type(p["trade_id"]) is str
        )
    if kind == "quote":
        return list(p) == ["type", "ts", "bid", "ask", "bid_size", "ask_size"] and all(
            type(p[k]) is float for k in ("bid", "ask", "bid_size", "ask_size"))
    return False


@dataclass(frozen=True, eq=False)
class TickBatch:
    """Accepted Trades and Quotes as columns, in arrival order (normalize's output order).

    ``ids`` holds each record's id. Normalize leaves it None and it is derived on demand by
    :meth:`record_ids` from the deterministic rule (``{source}:{symbol}:t:{trade_id}`` for a trade,
    ``{source}:{symbol}:q:{seq}`` for a quote, see ``market/normalize.py``); a batch made from records
    keeps the ids they had. ``seq`` is the raw tick's feed position (-1 where unknown).
    """

    symbols: tuple[str, ...]
    symbol: np.ndarray  # int32 codes into ``symbols``
    sources: tuple[str, ...]
    source: np.ndarray  # int32 codes into ``sources``
    kind: np.ndarray  # int8: TRADE or QUOTE
    seq: np.ndarray  # int64; -1 where unknown
    ts_event: np.ndarray  # int64 ns
    ts_ingest: np.ndarray  # int64 ns
    ts_tick_ingest: np.ndarray  # int64 ns
    price: np.ndarray  # float64; NaN on quotes
    size: np.ndarray
    aggressor: np.ndarray  # int8 AGGRESSOR_* code; 0 on quotes
    trade_id: np.ndarray | None  # object: str on trades, None on quotes; None: made from trade_no
    bid: np.ndarray  # float64; NaN on trades
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    ids: np.ndarray | None = None  # object: str per row; None: derived by record_ids()
    watermark: int | None = None  # see WATERMARK below
    trade_no: np.ndarray | None = None  # int64 or None, see TRADE_NUMBERS

    _PER_BATCH = ("symbols", "sources", "watermark", "trade_id", "trade_no")  # take() handles these itself

    def __post_init__(self) -> None:
        _check_trade_ids(self)

    def __len__(self) -> int:
        return len(self.kind)

    @classmethod
    def empty(cls) -> "TickBatch":
        f, i, o = np.empty(0), np.empty(0, np.int64), np.empty(0, dtype=object)
        return cls((), np.empty(0, np.int32), (), np.empty(0, np.int32), np.empty(0, np.int8), i, i, i, i,
                   f, f, np.empty(0, np.int8), o, f, f, f, f)

    def take(self, rows: np.ndarray) -> "TickBatch":
        """The rows ``rows`` (indices or a boolean mask), same dictionaries."""
        skip = self._PER_BATCH
        return replace(self, **{
            f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[rows])
            for f in fields(self) if f.name not in skip
        }, **take_trade_ids(self, rows))

    @property
    def is_trade(self) -> np.ndarray:
        return self.kind == TRADE

    def symbol_names(self) -> np.ndarray:
        """The symbol of every row as an object array of str."""
        return np.asarray(self.symbols, dtype=object)[self.symbol] if len(self) else np.empty(0, dtype=object)

    def record_ids(self) -> np.ndarray:
        """Every row's record id (object array of str)."""
        if self.ids is not None:
            return self.ids
        n = len(self)
        if n == 0:
            return np.empty(0, dtype=object)
        sources = np.asarray(self.sources, dtype=object)[self.source]
        symbols = self.symbol_names()
        prefix = sources + ":" + symbols  # object arrays: one C-level loop per operation
        trade = self.kind == TRADE
        tail = np.where(trade, ":t:", ":q:").astype(object)
        if self.trade_no is not None:  # one int -> text conversion for both kinds
            key = np.where(trade, self.trade_no, self.seq).astype(str).astype(object)
        else:
            key = np.where(trade, self.trade_id, self.seq.astype(str).astype(object))
        return prefix + tail + key

    def field_dicts(self) -> Iterator[dict]:
        """Each row as its Trade's or Quote's field dict, keys in field order (what ``to_records``
        builds the records from and what orjson writes for the wire)."""
        symbols, sources = self.symbols, self.sources
        rows = zip(self.kind.tolist(), self.record_ids().tolist(), self.symbol.tolist(), self.source.tolist(),
                   self.ts_event.tolist(), self.ts_ingest.tolist(), self.ts_tick_ingest.tolist(),
                   self.price.tolist(), self.size.tolist(), self.aggressor.tolist(), self.trade_id.tolist(),
                   self.bid.tolist(), self.ask.tolist(), self.bid_size.tolist(), self.ask_size.tolist())
        for kind, rid, sym, src, ts, ingest, tick_ingest, price, size, aggr, tid, bid, ask, bsz, asz in rows:
            if kind == TRADE:
                yield {
                    "schema_version": _SCHEMA_VERSION, "id": rid, "ts_event": ts, "ts_ingest": ingest,
                    "symbol": symbols[sym], "price": price, "size": size, "aggressor": AGGRESSORS[aggr],
                    "trade_id": tid, "source": sources[src], "ts_tick_ingest": tick_ingest,
                }
            else:
                yield {
                    "schema_version": _SCHEMA_VERSION, "id": rid, "ts_event": ts, "ts_ingest": ingest,
                    "symbol": symbols[sym], "bid_price": bid, "bid_size": bsz, "ask_price": ask, "ask_size": asz,
                    "source": sources[src], "ts_tick_ingest": tick_ingest,
                }

    def to_records(self) -> list[Trade | Quote]:
        """The batch as records, in row order."""
        return [(_new_trade if kind == TRADE else _new_quote)(fields_)
                for kind, fields_ in zip(self.kind.tolist(), self.field_dicts())]

    @classmethod
    def from_records(cls, records: Sequence[Trade | Quote]) -> "TickBatch":
        """Trades and quotes (any mix, any symbols and sources) as one batch; ids kept as given."""
        n = len(records)
        if n == 0:
            return cls.empty()
        symbols, symbol = dictionary_codes([r.symbol for r in records])
        sources, source = dictionary_codes([r.source for r in records])
        kind = np.fromiter((QUOTE if type(r) is Quote else TRADE for r in records), np.int8, n)
        strangers = {type(r).__name__ for r in records if type(r) not in (Trade, Quote)}
        if strangers:
            raise TypeError(f"a TickBatch holds trades and quotes, not {', '.join(sorted(strangers))}")
        nan = float("nan")
        trade = [type(r) is Trade for r in records]

        def column(get, quote_value, dtype):
            return np.fromiter((get(r) if t else quote_value for r, t in zip(records, trade)), dtype, n)

        def quote_column(get):
            return np.fromiter((nan if t else get(r) for r, t in zip(records, trade)), np.float64, n)

        trade_id = np.empty(n, dtype=object)
        trade_id[:] = [r.trade_id if t else None for r, t in zip(records, trade)]
        ids = np.empty(n, dtype=object)
        ids[:] = [r.id for r in records]
        return cls(
            symbols=symbols, symbol=symbol, sources=sources, source=source, kind=kind,
            seq=np.full(n, -1, np.int64),
            ts_event=np.fromiter((r.ts_event for r in records), np.int64, n),
            ts_ingest=np.fromiter((r.ts_ingest for r in records), np.int64, n),
            ts_tick_ingest=np.fromiter((r.ts_tick_ingest for r in records), np.int64, n),
            price=column(lambda r: r.price, nan, np.float64),
            size=column(lambda r: r.size, nan, np.float64),
            aggressor=column(lambda r: AGGRESSOR_CODE[r.aggressor], 0, np.int8),
            trade_id=trade_id,
            bid=quote_column(lambda r: r.bid_price), ask=quote_column(lambda r: r.ask_price),
            bid_size=quote_column(lambda r: r.bid_size), ask_size=quote_column(lambda r: r.ask_size),
            ids=ids,
        )


def concat_tick_batches(batches: Iterable[TickBatch]) -> TickBatch:
    """One batch of ``batches`` in order, with merged dictionaries and the last one's watermark."""
    batches = list(batches)
    watermark = batches[-1].watermark if batches else None
    batches = [b for b in batches if len(b)]
    if not batches:
        return replace(TickBatch.empty(), watermark=watermark)
    if len(batches) == 1:
        return batches[0]

    def merge(name: str, codes: str) -> tuple[tuple[str, ...], np.ndarray]:
        shared = getattr(batches[0], name)
        if all(getattr(b, name) == shared for b in batches):  # one feed's batches: one dictionary
            return shared, np.concatenate([getattr(b, codes) for b in batches])
        index: dict[str, int] = {}
        parts = []
        for b in batches:
            remap = np.fromiter((index.setdefault(s, len(index)) for s in getattr(b, name)), np.int32)
            parts.append(remap[getattr(b, codes)])
        return tuple(index), np.concatenate(parts)

    symbols, symbol = merge("symbols", "symbol")
    sources, source = merge("sources", "source")
    columns = {
        f.name: np.concatenate([getattr(b, f.name) for b in batches])
        for f in fields(TickBatch)
        if f.name not in ("symbols", "symbol", "sources", "source", "ids", "watermark", "trade_id", "trade_no")
    }
    ids = None
    if any(b.ids is not None for b in batches):
        ids = np.concatenate([b.record_ids() for b in batches])
    columns.update(concat_trade_ids(batches))
    return TickBatch(symbols=symbols, symbol=symbol, sources=sources, source=source, ids=ids,
                     watermark=watermark, **columns)


for _batch_class in (RawTickBatch, TickBatch):
    _batch_class.trade_id = _TextTradeIds()  # after @dataclass: a default here would be a field default


def rows_by_code(codes: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(code, the indices of its rows in row order)`` for every distinct value of ``codes``
    (dictionary codes such as ``TickBatch.symbol``), in code order: a group-by as one stable sort."""
    if len(codes) == 0:
        return
    first = int(codes[0])
    if bool((codes == first).all()):
        yield first, np.arange(len(codes))
        return
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], len(order))
    for start, end in zip(starts.tolist(), ends.tolist()):
        yield int(ordered[start]), order[start:end]
