"""Column batches of ticks straight to their warehouse tables' Arrow form: no Python call per row.

:func:`tick_tables` lands a :class:`~schemas.columns.TickBatch` in ``md_trades`` and ``md_quotes``;
:func:`raw_table` lands a :class:`~schemas.columns.RawTickBatch` in ``md_raw``. The contract is
exact: each table equals, column for column and type for type, what :mod:`sinks.rows` gives for the
batch's records (``layout(table).to_arrow(batch.to_records(), run_id)``);
``tests/unit/sinks/test_columns.py`` holds that with hypothesis. So the warehouse cannot tell which
path a row took.

How the record-only parts are matched without records:

- Times stay int64 ns and are viewed as Arrow ``timestamp[ns, UTC]`` (zero copy): ClickHouse
  misreads a plain int64 for a DateTime64 column (see :mod:`sinks.rows`).
- Dictionary-coded names (symbol, source, aggressor, raw side) become dense strings by Arrow's
  dictionary decode, a C loop.
- Record ids follow normalize's rule (see :meth:`TickBatch.record_ids`), built by Polars string
  concatenation; a batch that carries its own ``ids`` keeps them. Trade ids given as numbers
  (``trade_no``) become text by Arrow's cast, never through Python strings.
- ``md_raw.payload`` is the JSON text ``orjson.dumps`` writes for the record's payload dict, built by
  Polars' ``struct.json_encode``. Both format a float as its shortest round-trip text (``100.0``,
  ``1e-7``, ``1.2345678901234568e+17``) and write NaN and inf as ``null``, and both escape strings
  alike; the property test compares the bytes, NaN, inf and quotes and backslashes included.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from schemas.columns import AGGRESSORS, PAYLOAD_FORMAT, RAW_SIDES, TRADE, RawTickBatch, TickBatch
from sinks.rows import ARROW_TS, layout

_SCHEMA_VERSION = 1  # the version TickBatch.to_records and RawTickBatch.to_records write
_AGGRESSOR_NAMES = pa.array([a.value for a in AGGRESSORS], pa.string())
_RAW_SIDE_NAMES = pa.array(list(RAW_SIDES), pa.string())  # index 0 (no side) is null


def tick_tables(batch: TickBatch, run_id: str) -> dict[str, pa.Table]:
    """``{"md_trades": ..., "md_quotes": ...}`` for ``batch``, each in row order; a table with no
    row of the batch is left out."""
    trade = batch.kind == TRADE
    out: dict[str, pa.Table] = {}
    if trade.any():
        out["md_trades"] = _trades(batch, np.flatnonzero(trade), run_id)
    if not trade.all():
        out["md_quotes"] = _quotes(batch, np.flatnonzero(~trade), run_id)
    return out


def raw_table(batch: RawTickBatch, run_id: str) -> pa.Table:
    """The ``md_raw`` rows of ``batch``, in row order."""
    n = len(batch)
    seq = pa.array(batch.seq, pa.int64())
    source = _constant(batch.source, n)
    ids = pl.concat_str([pl.lit(f"{batch.source}:"), pl.col("seq").cast(pl.String)])
    columns = {
        "run_id": _run_ids(run_id, n),
        "schema_version": _schema_versions(n),
        "id": _select(ids, n, pl.DataFrame([pl.from_arrow(seq).alias("seq")])),
        "ts_event": _timestamps(batch.ts_event),
        "ts_ingest": _timestamps(batch.ts_ingest),
        "source": source,
        "symbol": _decode(batch.symbol, batch.symbols),
        "payload_format": _constant(PAYLOAD_FORMAT, n),
        "payload": _payloads(batch),
        "seq": seq,
    }
    return _table("md_raw", columns)


# -- md_trades and md_quotes -----------------------------------------------------------------------


def _trades(batch: TickBatch, rows: np.ndarray, run_id: str) -> pa.Table:
    n = len(rows)
    trade_id = _trade_id_texts(batch, rows)
    symbol = _decode(batch.symbol[rows], batch.symbols)
    source = _decode(batch.source[rows], batch.sources)
    columns = {
        "run_id": _run_ids(run_id, n),
        "schema_version": _schema_versions(n),
        "id": _ids(batch, rows, source, symbol, ":t:", trade_id),
        "ts_event": _timestamps(batch.ts_event[rows]),
        "ts_ingest": _timestamps(batch.ts_ingest[rows]),
        "symbol": symbol,
        "price": pa.array(batch.price[rows], pa.float64()),
        "size": pa.array(batch.size[rows], pa.float64()),
        "aggressor": _decode(batch.aggressor[rows], _AGGRESSOR_NAMES),
        "trade_id": trade_id,
        "source": source,
        "ts_tick_ingest": _timestamps(batch.ts_tick_ingest[rows]),
    }
    return _table("md_trades", columns)


def _quotes(batch: TickBatch, rows: np.ndarray, run_id: str) -> pa.Table:
    n = len(rows)
    symbol = _decode(batch.symbol[rows], batch.symbols)
    source = _decode(batch.source[rows], batch.sources)
    seq = pa.array(batch.seq[rows], pa.int64()).cast(pa.string())
    columns = {
        "run_id": _run_ids(run_id, n),
        "schema_version": _schema_versions(n),
        "id": _ids(batch, rows, source, symbol, ":q:", seq),
        "ts_event": _timestamps(batch.ts_event[rows]),
        "ts_ingest": _timestamps(batch.ts_ingest[rows]),
        "symbol": symbol,
        "bid_price": pa.array(batch.bid[rows], pa.float64()),
        "bid_size": pa.array(batch.bid_size[rows], pa.float64()),
        "ask_price": pa.array(batch.ask[rows], pa.float64()),
        "ask_size": pa.array(batch.ask_size[rows], pa.float64()),
        "source": source,
        "ts_tick_ingest": _timestamps(batch.ts_tick_ingest[rows]),
    }
    return _table("md_quotes", columns)


def _ids(batch: TickBatch, rows: np.ndarray, source: pa.Array, symbol: pa.Array, tag: str, key: pa.Array) -> pa.Array:
    """Normalize's record id, ``{source}:{symbol}{tag}{key}``, unless the batch carries its ids."""
    if batch.ids is not None:
        return _texts(batch.ids[rows])
    frame = pl.DataFrame([pl.from_arrow(source).alias("source"), pl.from_arrow(symbol).alias("symbol"),
                          pl.from_arrow(key).alias("key")])
    return _select(pl.concat_str([pl.col("source"), pl.lit(":"), pl.col("symbol"), pl.lit(tag), pl.col("key")]),
                   len(rows), frame)


# -- md_raw payloads -------------------------------------------------------------------------------


def _payloads(batch: RawTickBatch) -> pa.Array:
    """The JSON of every row's payload, trades and quotes in their own key order (see
    :class:`RawTickBatch`), as the binary column :mod:`sinks.rows` makes of ``orjson.dumps``."""
    trade = batch.kind == TRADE
    trades, quotes = np.flatnonzero(trade), np.flatnonzero(~trade)
    trade_json = _encode("trade", {
        "ts": pl.Series(batch.ts_event[trades]),
        "price": pl.Series(batch.price[trades]),
        "size": pl.Series(batch.size[trades]),
        "side": pl.from_arrow(_decode(batch.side[trades], _RAW_SIDE_NAMES)),
        "trade_id": pl.from_arrow(_trade_id_texts(batch, trades)),
    })
    quote_json = _encode("quote", {
        name: pl.Series(getattr(batch, name)[quotes]) for name in ("bid", "ask", "bid_size", "ask_size")
    } | {"ts": pl.Series(batch.ts_event[quotes])}, order=("ts", "bid", "ask", "bid_size", "ask_size"))
    # trades then quotes, put back in row order by one take
    position = np.empty(len(batch), np.int64)
    position[np.concatenate([trades, quotes])] = np.arange(len(batch))
    both = pa.concat_arrays([trade_json, quote_json])
    return both.take(pa.array(position)).cast(pa.binary())


def _encode(kind: str, values: dict[str, pl.Series], order: tuple[str, ...] | None = None) -> pa.Array:
    """``{"type": kind, **values}`` per row as JSON text, keys in ``order`` (default: as given)."""
    order = order or tuple(values)
    frame = pl.DataFrame([values[name].alias(name) for name in order])
    if frame.height == 0:
        return pa.array([], pa.string())
    encoded = frame.select(pl.struct(pl.lit(kind).alias("type"), *order).struct.json_encode())
    return _string(encoded.to_series().to_arrow())


# -- shared pieces ---------------------------------------------------------------------------------


def _table(table: str, columns: dict[str, pa.Array]) -> pa.Table:
    expected = layout(table).column_names
    if tuple(columns) != expected:  # a field added to the model must be added here too
        raise AssertionError(f"{table} columns {tuple(columns)} differ from its layout {expected}")
    return pa.Table.from_arrays(list(columns.values()), names=list(expected))


def _run_ids(run_id: str, n: int) -> pa.Array:
    # the dictionary form sinks.rows gives run_id: one entry, n zero indices
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([run_id], pa.string()))


def _schema_versions(n: int) -> pa.Array:
    return pa.array(np.full(n, _SCHEMA_VERSION, np.uint16), pa.uint16())


def _timestamps(ns: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ns, np.int64), pa.int64()).view(ARROW_TS)


def _decode(codes: np.ndarray, names: tuple[str, ...] | pa.Array) -> pa.Array:
    """Dictionary codes -> the dense string column of their names."""
    dictionary = names if isinstance(names, pa.Array) else pa.array(list(names), pa.string())
    indices = pa.array(np.asarray(codes, np.int32), pa.int32())
    return pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode()


def _trade_id_texts(batch: TickBatch | RawTickBatch, rows: np.ndarray) -> pa.Array:
    """The trade id texts of trade rows ``rows``: Arrow's int -> text cast of ``trade_no`` when the
    batch has numbers (the same text as ``str``, see ``schemas.columns.TRADE_NUMBERS``)."""
    if batch.trade_no is not None:
        return pa.array(batch.trade_no[rows], pa.int64()).cast(pa.string())
    return _texts(batch.trade_id[rows])


def _texts(values: np.ndarray) -> pa.Array:
    """An object array of str as a string column. Through a list: pyarrow converts a NumPy object
    array element by element through NumPy (~1 us a row), a list of str some 30 times faster."""
    return pa.array(values.tolist(), pa.string())


def _constant(value: str, n: int) -> pa.Array:
    return _decode(np.zeros(n, np.int32), (value,))


def _select(expression: pl.Expr, n: int, frame: pl.DataFrame) -> pa.Array:
    """``expression`` over ``frame`` (``n`` rows) as a string column."""
    if n == 0:
        return pa.array([], pa.string())
    return _string(frame.select(expression.alias("_")).to_series().to_arrow())


def _string(array: pa.Array) -> pa.Array:
    # Polars hands strings out as large_string or string_view; the layouts use string
    return array if array.type == pa.string() else array.cast(pa.string())
