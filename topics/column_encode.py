"""Column batches of ticks into Kafka messages in bulk: the same bytes as :func:`topics.serde.encode`
of each record, with no record object per row.

Kafka carries one JSON record per message (DESIGN §2), so a stage that works on a
:class:`~schemas.columns.TickBatch` or :class:`~schemas.columns.RawTickBatch` still writes one
message per tick; this module writes a batch's messages from its columns instead of building a
pydantic record per row and serializing it: a large batch with Polars (``struct.json_encode`` in
Rust), a small one (fewer than :data:`SMALL_BATCH` rows) with orjson over one plain dict per row,
where a Polars call's fixed cost (~0.5 ms) would dominate.

Contract: for every row ``r`` of a batch, the message at ``r`` equals
``topics.serde.encode(topic, record)`` for ``record = batch.to_records()[r]``: topic (a trade on
``md.trades``, a quote on ``md.quotes``, a raw tick on ``md.raw``), key (the symbol), value (byte for
byte) and headers. ``tests/unit/topics/test_column_encode.py`` holds it over generated batches.
Why the bytes agree: orjson and Polars both write floats as the shortest text that reads back to the
same double, in the same notation (``100.0``, ``1e-7``, ``1.2345678901234568e+17``; 3.5 million
random doubles compared, none differed), both write NaN and ±inf as ``null``, and both escape the
same characters in strings; the record's keys are written in its fields' declaration order.

``benchmarks/column_codec.py`` (200k ticks of the synthetic tape, CPU time on one core of the
shared box, thousands of messages per second, this module against ``to_records`` + ``serde.encode``):

=================  ==========  ==========  ==========
batches of         100         1,000       5,000
=================  ==========  ==========  ==========
md.raw             676 / 290   626 / 145   480 / 109
trades and quotes  786 / 308   756 / 178   571 / 122
=================  ==========  ==========  ==========

(The figures move by up to a factor of two with the process's heap: the garbage collector's passes
over the per-row header lists and records are part of both paths.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
import polars as pl

from schemas.columns import AGGRESSORS, PAYLOAD_FORMAT, RAW_SIDES, TRADE, RawTickBatch, TickBatch
from schemas.market import Quote, RawTick, Trade
from topics.serde import HEADER_SCHEMA, HEADER_TS_INGEST, HEADER_VERSION, KafkaMessage

_SCHEMA_VERSION = 1  # what a batch's to_records() writes

# A batch smaller than this is written by orjson, one dict per row (the serde's own encoder over
# the record's fields, so the same bytes): a Polars call costs about 0.5 ms whatever its size,
# which orjson's ~1.3 us a row beats below about 2,000 rows; above, Polars' ~1 us a row wins
# (orjson's slows to ~3.5 us a row once a batch's output outgrows the CPU's caches).
SMALL_BATCH = 2_048

_HEADER_VERSION = (HEADER_VERSION, str(_SCHEMA_VERSION).encode())
_HEADER_OF = {model: (HEADER_SCHEMA, model.__name__.encode()) for model in (RawTick, Trade, Quote)}


@dataclass(frozen=True)
class EncodedBatch:
    """A batch's messages as parallel lists, in row order: ``topic[r]`` (catalog name), ``key[r]``,
    ``value[r]`` and ``headers[r]`` (a list of ``(name, bytes)``, as confluent-kafka takes them)."""

    topic: list[str]
    key: list[bytes]
    value: list[bytes]
    headers: list[list[tuple[str, bytes]]]

    def __len__(self) -> int:
        return len(self.value)

    def messages(self) -> list[KafkaMessage]:
        """As :class:`~topics.serde.KafkaMessage` objects (one per row: for tests and tools, not the hot path)."""
        return [KafkaMessage(t, k, v, tuple(h)) for t, k, v, h in zip(self.topic, self.key, self.value, self.headers)]


def encode_batch(batch: RawTickBatch | TickBatch) -> EncodedBatch:
    """The Kafka messages of a batch's rows (see the module's contract)."""
    if type(batch) is RawTickBatch:
        return _encode_raw(batch)
    if type(batch) is TickBatch:
        return _encode_ticks(batch)
    raise TypeError(f"encode_batch takes a RawTickBatch or a TickBatch, not {type(batch).__name__}")


def raw_values_series(batch: RawTickBatch) -> pl.Series:
    """The ``md.raw`` values of a raw batch's rows as a Polars Binary series, in row order."""
    return _in_row_order(batch.kind == TRADE, lambda rows: _raw_json(batch, rows, trade=True),
                         lambda rows: _raw_json(batch, rows, trade=False))


def _encode_raw(batch: RawTickBatch) -> EncodedBatch:
    n = len(batch)
    small = n < SMALL_BATCH
    return EncodedBatch(
        topic=["md.raw"] * n,
        key=_keys(batch.symbols, batch.symbol),
        value=_dumped(batch, RawTickBatch.field_dicts) if small else raw_values_series(batch).to_list(),
        headers=_headers(batch.ts_ingest, [_HEADER_OF[RawTick]] * n),
    )


def _dumped(batch, rows_of) -> list[bytes]:
    """orjson over the rows' dicts, a slice at a time (a whole large batch as Python lists ran at
    half the speed, out of the CPU's caches)."""
    n = len(batch)
    if n <= _SLICE:
        return list(map(orjson.dumps, rows_of(batch)))
    out: list[bytes] = []
    for start in range(0, n, _SLICE):
        out.extend(map(orjson.dumps, rows_of(batch.take(np.arange(start, min(start + _SLICE, n))))))
    return out


_SLICE = 512


def _in_row_order(trade: np.ndarray, encode_trades, encode_quotes) -> pl.Series:
    """Trades and quotes are encoded apart (their JSON differs in shape), then put back in row
    order with one gather."""
    trades, quotes = np.flatnonzero(trade), np.flatnonzero(~trade)
    parts = [encode(rows) for rows, encode in ((trades, encode_trades), (quotes, encode_quotes)) if len(rows)]
    if not parts:
        return pl.Series([], dtype=pl.Binary)
    if len(parts) == 1:
        return parts[0]
    order = np.argsort(np.concatenate((trades, quotes)), kind="stable")
    return pl.concat(parts).gather(order)


_TRADE_PAYLOAD = pl.struct(pl.lit("trade").alias("type"), pl.col("ts_event").alias("ts"), "price", "size", "side",
                           "trade_id").alias("payload")
_QUOTE_PAYLOAD = pl.struct(pl.lit("quote").alias("type"), pl.col("ts_event").alias("ts"), "bid", "ask", "bid_size",
                           "ask_size").alias("payload")


def _raw_json(batch: RawTickBatch, rows: np.ndarray, trade: bool) -> pl.Series:
    """The values of raw ticks ``rows``, all trades or all quotes, in the RawTick's key order."""
    columns = {
        "seq": batch.seq[rows], "ts_event": batch.ts_event[rows], "ts_ingest": batch.ts_ingest[rows],
        "symbol": _names(batch.symbols, batch.symbol[rows]),
    }
    if trade:
        columns.update(price=batch.price[rows], size=batch.size[rows],
                       side=pl.Series(RAW_SIDES, dtype=pl.String).gather(batch.side[rows]),
                       trade_id=_strings(batch.trade_id[rows]))
    else:
        columns.update({name: getattr(batch, name)[rows] for name in ("bid", "ask", "bid_size", "ask_size")})
    source = batch.source
    record = pl.struct(
        pl.lit(_SCHEMA_VERSION, dtype=pl.Int64).alias("schema_version"),
        pl.concat_str(pl.lit(f"{source}:"), pl.col("seq").cast(pl.String)).alias("id"),
        "ts_event", "ts_ingest", pl.lit(source, dtype=pl.String).alias("source"), "symbol",
        pl.lit(PAYLOAD_FORMAT).alias("payload_format"), _TRADE_PAYLOAD if trade else _QUOTE_PAYLOAD, "seq",
    )
    return pl.DataFrame(columns).select(record.struct.json_encode().cast(pl.Binary)).to_series()


def tick_values_series(batch: TickBatch) -> pl.Series:
    """The ``md.trades`` / ``md.quotes`` values of a batch's rows as a Polars Binary series, in row order."""
    ids = batch.record_ids()
    return _in_row_order(batch.kind == TRADE, lambda rows: _tick_json(batch, rows, ids[rows], Trade),
                         lambda rows: _tick_json(batch, rows, ids[rows], Quote))


def _encode_ticks(batch: TickBatch) -> EncodedBatch:
    schema = (batch.kind != TRADE).view(np.int8)  # 0: a trade, 1: a quote
    return EncodedBatch(
        topic=_pick(("md.trades", "md.quotes"), schema),
        key=_keys(batch.symbols, batch.symbol),
        value=_dumped(batch, TickBatch.field_dicts) if len(batch) < SMALL_BATCH else tick_values_series(batch).to_list(),
        headers=_headers(batch.ts_ingest, _pick((_HEADER_OF[Trade], _HEADER_OF[Quote]), schema)),
    )


def _tick_json(batch: TickBatch, rows: np.ndarray, ids: np.ndarray, model: type) -> pl.Series:
    cols = {
        "schema_version": np.full(len(rows), _SCHEMA_VERSION, np.int64),
        "id": _strings(ids), "ts_event": batch.ts_event[rows], "ts_ingest": batch.ts_ingest[rows],
        "symbol": _names(batch.symbols, batch.symbol[rows]),
    }
    if model is Trade:
        cols.update(price=batch.price[rows], size=batch.size[rows],
                     aggressor=pl.Series([a.value for a in AGGRESSORS], dtype=pl.String).gather(batch.aggressor[rows]),
                     trade_id=_strings(batch.trade_id[rows]))
    else:
        cols.update(bid_price=batch.bid[rows], bid_size=batch.bid_size[rows], ask_price=batch.ask[rows],
                    ask_size=batch.ask_size[rows])
    cols.update(source=_names(batch.sources, batch.source[rows]), ts_tick_ingest=batch.ts_tick_ingest[rows])
    return pl.DataFrame(cols).select(pl.struct(pl.all()).struct.json_encode().cast(pl.Binary)).to_series()


def _names(names: tuple[str, ...], codes: np.ndarray) -> pl.Series:
    """Dictionary codes as a String column (one gather, no Python str per row)."""
    return pl.Series(names, dtype=pl.String).gather(codes) if len(codes) else pl.Series([], dtype=pl.String)


def _strings(values: np.ndarray) -> pl.Series:
    """An object array of str (or None) as a String column."""
    return pl.Series(values.tolist(), dtype=pl.String)


def _keys(symbols: tuple[str, ...], codes: np.ndarray) -> list[bytes]:
    # the catalog keys market data by symbol: str(symbol).encode(), one encode per distinct symbol
    return _pick([s.encode() for s in symbols], codes)


def _pick(choices, index: np.ndarray) -> list:
    """``[choices[i] for i in index]`` as one NumPy gather (a choice may be a tuple)."""
    table = np.empty(len(choices), dtype=object)
    for i, choice in enumerate(choices):  # per choice, not per row
        table[i] = choice
    return table[index].tolist()


def _headers(ts_ingest: np.ndarray, schema: list[tuple[str, bytes]]) -> list[list[tuple[str, bytes]]]:
    if len(ts_ingest) < SMALL_BATCH:
        ingest = list(map(str.encode, map(str, ts_ingest.tolist())))
    else:
        ingest = pl.Series(ts_ingest, dtype=pl.Int64).cast(pl.String).cast(pl.Binary).to_list()
    version = _HEADER_VERSION
    return [[s, version, (HEADER_TS_INGEST, i)] for s, i in zip(schema, ingest)]
