"""One Kafka poll of a tick topic into column batches in bulk, exactly as the per-message path
would decode it.

``md.raw`` decodes into :class:`~schemas.columns.RawTickBatch` es, ``md.trades`` and ``md.quotes``
into :class:`~schemas.columns.TickBatch` es (ids kept as the messages have them, ``seq`` -1). A
message that does not fit the columns, or does not decode, is handed to the caller's
``per_message(i)``, which gives what today's path gives for it (a record, or a dead letter with
:func:`topics.serde.decode`'s reason and detail): so that path's semantics are kept by
construction, not re-implemented. The schema header is that path's business only: it changes a
message's record type on account-keyed topics alone (a StageWatermark), never on these
symbol-keyed ones.

**Order.** The output is in offset order: a batch is a run of consecutive messages that fit the
columns (and, on ``md.raw``, share a source), broken by every message handed to ``per_message``.
Flattening the output (``to_records()`` of each batch) gives the per-message path's output, record
for record and in order, so a stage's per-symbol state sees the same sequence either way.

**Which messages fit** (everything else goes to ``per_message``):

- ``md.trades`` / ``md.quotes``: a JSON object with exactly the record's fields, typed strictly
  (ints as JSON integers within int64, floats as JSON numbers, the aggressor one of its values)
  and within the record's constraints (positive prices, sizes, ``bid < ask``, non-empty strings,
  ``schema_version`` 1). A record is fixed by its field values, so key order, whitespace or escapes
  do not matter; msgspec's typed decoder accepts no JSON that pydantic's parser refuses and reads
  the same values (strings, correctly rounded doubles, the last of duplicate keys), which
  ``tests/unit/topics/test_column_codec.py`` holds over generated and malformed messages.
- ``md.raw``: in addition, the message must be byte for byte msgspec's encoding of what it
  decoded to (the RawTick's keys in order, the payload's ``type`` first), with id
  ``{source}:{seq}`` and the payload's ``ts`` equal to ``ts_event``, as a RawTickBatch's row has
  them. A RawTick's payload is an open dict whose key order and int-versus-float literals are part
  of the record (``{"price": 100}`` is not ``{"price": 100.0}``) and which a typed decoder cannot
  see; the byte comparison sees them. What the serde writes passes it (msgspec and orjson write
  the same JSON) except a float of 1e16 or more, where msgspec writes ``1e16`` and orjson
  ``1e+16``: such a tick (no price or size of a real tape) is decoded on its own.

**Why msgspec.** ``benchmarks/column_codec.py``: 200k ticks of the synthetic tape (140k trades,
60k quotes) as the serde writes them, polls of 5,000, thousands of messages per second of CPU time
on one core of the shared 2-core box (best of 3; the orjson and Arrow rows are their happy paths):

==========================================  ======  =========  =========
path                                        md.raw  md.trades  md.quotes
==========================================  ======  =========  =========
per message: ``serde.decode`` (records)        194        196        206
per message + ``from_records`` (a batch)       135        152        153
orjson per message into columns                250        436        449
Arrow ``read_json`` + re-encode check          310        371        353
msgspec into columns (this module)             410        900        833
==========================================  ======  =========  =========

Arrow's reader builds columns without a Python object per row, but it parses slower than msgspec
here and reads ``100`` into a float column, sees no key order nor duplicate keys, so every poll
must be re-encoded to be checked (about a third of its time); orjson builds a dict per message
and then a type check per column. msgspec's typed decoding checks types and constraints as it
parses, and its C encoder makes the md.raw check cheap.

A poll pays a fixed cost for its columns (some 60 NumPy calls: ~40 us for md.raw, ~18 us for
trades), so a small poll costs more per message than one by one: at 10 messages, 6.5 us a message
on md.raw (2.8 one by one) and 2.8 us on md.trades (2.4); from about 50 (md.raw) and 10
(md.trades, md.quotes) messages on, columns are cheaper. A paced live tape gives a partition a
few messages per batch: ``consume(columnar_min=...)`` leaves those as records.
"""

from __future__ import annotations

from operator import attrgetter, eq
from typing import Annotated, Any, Callable, Literal, Sequence

import msgspec
import numpy as np

from schemas.columns import (
    AGGRESSOR_CODE,
    QUOTE,
    RAW_SIDE_CODE,
    TRADE,
    RawTickBatch,
    TickBatch,
)
from schemas.market import Aggressor
from topics.serde import MAX_VALUE_BYTES

TICK_TOPICS = frozenset({"md.raw", "md.trades", "md.quotes"})

_NS = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]  # an int64 time or sequence number, not negative
_NAME = Annotated[str, msgspec.Meta(min_length=1)]
_PRICE = Annotated[float, msgspec.Meta(gt=0)]
_QUOTE_SIZE = Annotated[float, msgspec.Meta(ge=0)]
_VERSION = Literal[1]  # the serde refuses versions above the model's, pydantic below 1

# The records as msgspec Structs, with pydantic's constraints. Fields in the records' declaration
# order and the payload's tag first: msgspec encodes in that order, which the md.raw check needs.


class _RawTrade(msgspec.Struct, tag_field="type", tag="trade", forbid_unknown_fields=True, gc=False):
    ts: _NS
    price: float
    size: float
    side: Literal["buy", "sell", "unknown"] | None
    trade_id: str


class _RawQuote(msgspec.Struct, tag_field="type", tag="quote", forbid_unknown_fields=True, gc=False):
    ts: _NS
    bid: float
    ask: float
    bid_size: float
    ask_size: float


class _RawTickMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    schema_version: _VERSION
    id: _NAME
    ts_event: _NS
    ts_ingest: _NS
    source: _NAME
    symbol: _NAME
    payload_format: Literal["tapeflow.v1"]
    payload: _RawTrade | _RawQuote
    seq: _NS


class _TradeMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    schema_version: _VERSION
    id: _NAME
    ts_event: _NS
    ts_ingest: _NS
    symbol: _NAME
    price: _PRICE
    size: _PRICE
    aggressor: Literal["buy", "sell", "unknown"]
    trade_id: _NAME
    source: _NAME
    ts_tick_ingest: _NS


class _QuoteMessage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    schema_version: _VERSION
    id: _NAME
    ts_event: _NS
    ts_ingest: _NS
    symbol: _NAME
    bid_price: _PRICE
    bid_size: _QUOTE_SIZE
    ask_price: _PRICE
    ask_size: _QUOTE_SIZE
    source: _NAME
    ts_tick_ingest: _NS


_DECODERS = {
    "md.raw": msgspec.json.Decoder(_RawTickMessage),
    "md.trades": msgspec.json.Decoder(_TradeMessage),
    "md.quotes": msgspec.json.Decoder(_QuoteMessage),
}
_ENCODE = msgspec.json.Encoder().encode
_AGGRESSOR_OF_TEXT = {a.value: AGGRESSOR_CODE[a] for a in Aggressor}


def decode_ticks(topic: str, values: Sequence[bytes | None], per_message: Callable[[int], Any]) -> list:
    """The values of one poll of ``topic`` (``md.raw``, ``md.trades`` or ``md.quotes``), in offset
    order -> column batches for the runs of messages that fit the columns, and ``per_message(i)``
    for every other message ``i``, all in offset order (see the module's contract)."""
    if topic not in TICK_TOPICS:
        raise ValueError(f"{topic} is not a tick topic; columns decode only {', '.join(sorted(TICK_TOPICS))}")
    n = len(values)
    if n == 0:
        return []
    rows, messages = _parse(_DECODERS[topic].decode, values)
    if topic == "md.raw":
        parts = _raw_batches(rows, messages, values)
    else:
        parts = _tick_batches(rows, messages, trade=topic == "md.trades")
    return _runs(n, parts, per_message)


def _parse(decode: Callable[[bytes], Any], values: Sequence[bytes | None]) -> tuple[np.ndarray, list]:
    """(the rows that msgspec decoded, their messages), in offset order."""
    try:
        # the common poll, every message fine: no Python-level loop
        if max(map(len, values)) <= MAX_VALUE_BYTES:  # a None raises TypeError
            return np.arange(len(values)), list(map(decode, values))
    except (TypeError, msgspec.DecodeError, UnicodeDecodeError):
        pass
    rows: list[int] = []
    messages: list = []
    keep_row, keep = rows.append, messages.append
    for i, value in enumerate(values):
        # None and oversized values are the serde's to name (``empty``, ``oversized``)
        if value is not None and len(value) <= MAX_VALUE_BYTES:
            try:
                keep(decode(value))
            except (msgspec.DecodeError, UnicodeDecodeError):
                continue
            keep_row(i)
    return np.asarray(rows, dtype=np.int64), messages


def _codes(names: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """:func:`schemas.columns.dictionary_codes` (distinct names in first-seen order, an int32 code
    per row) with the per-row work in C: a poll holds a handful of symbols and one source."""
    distinct = tuple(dict.fromkeys(names))
    if len(distinct) == 1:
        return distinct, np.zeros(len(names), dtype=np.int32)
    index = {name: code for code, name in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, names), np.int32, len(names))


def _floats(messages: list, name: str) -> np.ndarray:
    return np.fromiter(map(attrgetter(name), messages), np.float64, len(messages))


def _ints(messages: list, name: str) -> np.ndarray:
    return np.fromiter(map(attrgetter(name), messages), np.int64, len(messages))


def _objects(items) -> np.ndarray:
    items = list(items)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _tick_batches(rows: np.ndarray, messages: list, trade: bool) -> list[tuple[np.ndarray, TickBatch]]:
    """``[(the rows that fit, their batch)]`` for md.trades or md.quotes."""
    n = len(messages)
    if n == 0:
        return []
    symbols, symbol = _codes(list(map(attrgetter("symbol"), messages)))
    sources, source = _codes(list(map(attrgetter("source"), messages)))
    nan = np.full(n, np.nan)
    if trade:
        price, size = _floats(messages, "price"), _floats(messages, "size")
        aggressor = np.fromiter(map(_AGGRESSOR_OF_TEXT.__getitem__, map(attrgetter("aggressor"), messages)), np.int8, n)
        trade_id = _objects(map(attrgetter("trade_id"), messages))
        bid = ask = bid_size = ask_size = nan
        fits = np.isfinite(price) & np.isfinite(size)  # msgspec refuses an overflow; checked all the same
    else:
        bid, ask = _floats(messages, "bid_price"), _floats(messages, "ask_price")
        bid_size, ask_size = _floats(messages, "bid_size"), _floats(messages, "ask_size")
        price = size = nan
        aggressor = np.zeros(n, np.int8)
        trade_id = np.full(n, None, dtype=object)
        # the Quote model refuses a crossed or locked book: such a message goes to per_message
        fits = np.isfinite(bid) & np.isfinite(ask) & np.isfinite(bid_size) & np.isfinite(ask_size) & (bid < ask)
    batch = TickBatch(
        symbols=symbols, symbol=symbol, sources=sources, source=source,
        kind=np.full(n, TRADE if trade else QUOTE, np.int8), seq=np.full(n, -1, np.int64),
        ts_event=_ints(messages, "ts_event"), ts_ingest=_ints(messages, "ts_ingest"),
        ts_tick_ingest=_ints(messages, "ts_tick_ingest"), price=price, size=size, aggressor=aggressor,
        trade_id=trade_id, bid=bid, ask=ask, bid_size=bid_size, ask_size=ask_size,
        ids=_objects(map(attrgetter("id"), messages)),
    )
    if not fits.all():
        keep = np.flatnonzero(fits)
        batch, rows = batch.take(keep), rows[keep]
    return [(rows, batch)]


def _raw_batches(rows: np.ndarray, messages: list, values: Sequence[bytes]) -> list[tuple[np.ndarray, RawTickBatch]]:
    """``[(the rows that fit, their batch)]`` for md.raw, a batch per source."""
    n = len(messages)
    if n == 0:
        return []
    fits = _canonical(rows, messages, values)
    payloads = _objects(map(attrgetter("payload"), messages))
    trade = np.fromiter(map(type, payloads), dtype=object, count=n) == _RawTrade
    trades, quotes = payloads[trade], payloads[~trade]
    symbols, symbol = _codes(list(map(attrgetter("symbol"), messages)))
    sources, source = _codes(list(map(attrgetter("source"), messages)))
    seq, ts_event = _ints(messages, "seq"), _ints(messages, "ts_event")
    # The batch's record has id ``{source}:{seq}`` and its payload's ``ts`` is ts_event.
    fits &= ts_event == _ints(payloads, "ts")
    fits &= _ids_match(list(map(attrgetter("id"), messages)), sources, source, seq)

    def trade_column(name: str) -> np.ndarray:
        column = np.full(n, np.nan)
        column[trade] = np.fromiter(map(attrgetter(name), trades), np.float64, len(trades))
        return column

    def quote_column(name: str) -> np.ndarray:
        column = np.full(n, np.nan)
        column[~trade] = np.fromiter(map(attrgetter(name), quotes), np.float64, len(quotes))
        return column

    side = np.zeros(n, np.int8)
    side[trade] = np.fromiter(map(RAW_SIDE_CODE.__getitem__, map(attrgetter("side"), trades)), np.int8, len(trades))
    trade_id = np.full(n, None, dtype=object)
    trade_id[trade] = _objects(map(attrgetter("trade_id"), trades))
    columns = dict(
        symbol=symbol, kind=np.where(trade, TRADE, QUOTE).astype(np.int8), seq=seq, ts_event=ts_event,
        ts_ingest=_ints(messages, "ts_ingest"), price=trade_column("price"), size=trade_column("size"),
        side=side, trade_id=trade_id, bid=quote_column("bid"), ask=quote_column("ask"),
        bid_size=quote_column("bid_size"), ask_size=quote_column("ask_size"),
    )
    if len(sources) == 1 and fits.all():  # the common poll: one feed, every message canonical
        return [(rows, RawTickBatch(source=sources[0], symbols=symbols, **columns))]
    out = []
    for code, name in enumerate(sources):
        mine = np.flatnonzero(fits & (source == code))
        if len(mine):
            rows_of_source = {k: v[mine] for k, v in columns.items()}
            out.append((rows[mine], RawTickBatch(source=name, symbols=symbols, **rows_of_source)))
    return out


def _ids_match(ids: list[str], sources: tuple[str, ...], source: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Whether each id is ``{source}:{seq}`` (string work in C, through ``map``)."""
    prefixes = [f"{name}:" for name in sources]
    if len(prefixes) == 1:
        expected = list(map(prefixes[0].__add__, map(str, seq.tolist())))
    else:
        expected = list(map(str.__add__, map(prefixes.__getitem__, source.tolist()), map(str, seq.tolist())))
    if expected == ids:
        return np.ones(len(ids), dtype=bool)
    return np.fromiter(map(eq, expected, ids), dtype=bool, count=len(ids))


def _canonical(rows: np.ndarray, messages: list, values: Sequence[bytes]) -> np.ndarray:
    """Which raw messages are byte for byte msgspec's encoding of what they decoded to.

    Such a message reads, in pydantic as in msgspec, into a payload with the batch's key order,
    floats written as floats (msgspec always writes a ``.`` or an exponent) and the same values,
    so its record is the batch row's. Anything else (an int where the batch has a float, another
    key order, spacing) is left to the per-message path. msgspec writes a large exponent as
    ``1e16`` where orjson writes ``1e+16``: such a value (no price or size of a real tape) takes
    the per-message path too."""
    offered = values if len(rows) == len(values) and type(values) is list else [values[i] for i in rows.tolist()]
    encoded = list(map(_ENCODE, messages))
    if encoded == offered:  # one comparison for the common poll
        return np.ones(len(rows), dtype=bool)
    return np.fromiter(map(eq, encoded, offered), dtype=bool, count=len(rows))


def _runs(n: int, parts: list[tuple[np.ndarray, Any]], per_message: Callable[[int], Any]) -> list:
    """Offset order: each maximal run of consecutive rows of one batch as those rows of it, and
    ``per_message(i)`` for every row ``i`` of no batch."""
    if len(parts) == 1 and len(parts[0][0]) == n:  # every row in one batch (rows are distinct and < n)
        return [parts[0][1]]
    owner = -1 - np.arange(n, dtype=np.int64)  # a row of no batch: a run of its own
    at = np.zeros(n, dtype=np.int64)  # a row's position in its batch
    for b, (rows, _) in enumerate(parts):
        owner[rows] = b
        at[rows] = np.arange(len(rows))
    starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
    out = []
    for start, end in zip(starts.tolist(), [*starts[1:].tolist(), n]):
        b = int(owner[start])
        if b < 0:
            out.append(per_message(start))
            continue
        batch = parts[b][1]
        lo, hi = int(at[start]), int(at[end - 1]) + 1
        out.append(batch if lo == 0 and hi == len(batch) else batch.take(np.arange(lo, hi)))
    return out
