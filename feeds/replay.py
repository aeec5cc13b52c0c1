"""Replaying recorded trade or quote files (Parquet, CSV) as a tick feed.

``ReplayFeed(path, mapping=None, speed=0.0, symbol=None).ticks(start_seq)`` reads the file with
Polars, maps its columns onto the ``tapeflow.v1`` payload through a :class:`ColumnMapping` (given,
named, or auto-detected from the file name, see :mod:`feeds.replay_presets`), sorts it by event time
(stably: rows with equal timestamps keep their file order) and yields one RawTick per row with
``source = f"replay:{file stem}"`` and ``seq`` = position in that sorted order.

Nothing is dropped. A row whose timestamp, price, size or side cannot be read is still emitted with
the raw value in the payload (``None`` for a missing value, the original string for an unparseable
one), so normalize can dead-letter it with a reason. Such a row's ``ts_event`` is borrowed from the
previous readable row in file order, which keeps it at its place in the tape.

Timestamps: integer or numeric-string columns in ``ns``/``us``/``ms``/``s`` since the epoch (UTC);
``datetime`` for strings parsed with ``timestamp_format`` (or inferred). Naive datetimes are taken
as UTC; offsets (``+00:00``) are honoured. A column already typed as a datetime (Parquet) is read as
such whatever the unit says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Literal, Protocol

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, model_validator

from feeds.batching import empty_batch, handovers
from feeds.pacing import Pacer
from feeds.raw import raw_tick
from schemas import RawTick, now_ns
from schemas.columns import QUOTE, RAW_SIDE_CODE, SIDE_NONE, TRADE, RawTickBatch

TimestampUnit = Literal["ns", "us", "ms", "s", "datetime"]
_UNIT_NANOS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")
_CHUNK_ROWS = 65_536  # rows turned into Python objects at a time (bounds memory on large files)
_RAW_SIDE_NAMES = ["buy", "sell", "unknown"]  # the sides a columnar payload may carry
_RAW_SIDE_VALUES = [RAW_SIDE_CODE[name] for name in _RAW_SIDE_NAMES]
UNKNOWN_SYMBOL = "UNKNOWN"  # for a row whose symbol column is empty: the tick still reaches the DLQ


class BarFileError(ValueError):
    """The file holds OHLC bars, not ticks; the tick replay cannot read it."""


class ColumnMapping(BaseModel):
    """How a file's columns map onto a ``tapeflow.v1`` trade or quote.

    Trades need ``price`` and ``size``; the aggressor comes from ``side`` (values buy/sell/unknown,
    any case) or from ``buyer_maker`` (bool or "True"/"False"/1/0: True means the buyer was the
    maker, so the SELLER was the aggressor, side "sell"); with neither, side is "unknown". Without a
    ``trade_id`` column the row number in the file (0-based) is the trade id. Quotes need ``bid`` and
    ``ask``; missing size columns mean sizes 0. The symbol comes from the ``symbol`` column or
    ``fixed_symbol``. CSV options: ``has_header``, ``column_names`` (names for a headerless file, or
    renames in order), ``separator``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["trade", "quote"]
    timestamp: str
    timestamp_unit: TimestampUnit = "ns"
    timestamp_format: str | None = None
    price: str | None = None
    size: str | None = None
    side: str | None = None
    buyer_maker: str | None = None
    trade_id: str | None = None
    bid: str | None = None
    ask: str | None = None
    bid_size: str | None = None
    ask_size: str | None = None
    symbol: str | None = None
    fixed_symbol: str | None = None
    has_header: bool = True
    column_names: tuple[str, ...] | None = None
    separator: str = ","

    @model_validator(mode="after")
    def _complete(self) -> "ColumnMapping":
        needed = ("price", "size") if self.kind == "trade" else ("bid", "ask")
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} mapping needs the {' and '.join(missing)} column(s)")
        if self.side and self.buyer_maker:
            raise ValueError("give either a side column or a buyer_maker column, not both")
        if self.timestamp_format and self.timestamp_unit != "datetime":
            raise ValueError("timestamp_format applies only with timestamp_unit='datetime'")
        return self

    def source_columns(self) -> list[str]:
        """Every file column the mapping reads, in a stable order."""
        names = [self.timestamp]
        if self.kind == "trade":
            names += [self.price, self.size, self.side, self.buyer_maker, self.trade_id]
        else:
            names += [self.bid, self.ask, self.bid_size, self.ask_size]
        names.append(self.symbol)
        return [n for n in names if n is not None]


def looks_like_bars(columns: list[str]) -> bool:
    lowered = {c.strip().lower() for c in columns}
    return {"open", "high", "low", "close"} <= lowered


TICK_FILE_SUFFIXES = (".parquet", ".csv", ".txt", ".csv.gz", ".csv.zst", ".txt.gz", ".txt.zst")


def file_suffix(path: Path) -> str:
    """The suffix that names the format: ``.csv.gz`` for a compressed CSV, else the last one."""
    last = path.suffix.lower()
    return "".join(path.suffixes[-2:]).lower() if last in (".gz", ".zst") else last


def scan_file(
    path: Path, mapping: ColumnMapping | None = None, *, has_header: bool = True,
    column_names: tuple[str, ...] | None = None, separator: str = ",",
) -> pl.LazyFrame:
    """A lazy frame over the file; CSV columns are read as strings so no value is lost to inference.
    The CSV layout comes from ``mapping`` when given, else from the keyword arguments."""
    suffix = file_suffix(path)
    if mapping is not None:
        has_header, column_names, separator = mapping.has_header, mapping.column_names, mapping.separator
    if suffix == ".parquet":
        return pl.scan_parquet(path)
    if suffix in TICK_FILE_SUFFIXES:
        return pl.scan_csv(
            path, has_header=has_header, new_columns=list(column_names) if column_names else None,
            separator=separator, infer_schema=False,
        )
    raise ValueError(f"{path}: cannot replay a '{suffix}' file; expected .parquet, .csv, .csv.gz or .csv.zst")


def _timestamp_ns(name: str, dtype: pl.DataType, mapping: ColumnMapping) -> pl.Expr:
    return timestamp_ns(name, dtype, mapping.timestamp_unit, mapping.timestamp_format)


def timestamp_ns(name: str, dtype: pl.DataType, unit: TimestampUnit, fmt: str | None = None) -> pl.Expr:
    """Column ``name`` (of ``dtype``) as int ns since the epoch, UTC; null where unreadable."""
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        aware = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
        return aware.dt.epoch("ns")
    if isinstance(dtype, pl.Date):
        return col.cast(pl.Datetime("ns")).dt.epoch("ns")
    if unit == "datetime":
        text = col.cast(pl.String).str.strip_chars()
        parsed = text.str.to_datetime(fmt, strict=False, time_unit="ns", time_zone="UTC")
        return parsed.dt.epoch("ns")
    mult = _UNIT_NANOS[unit]
    whole = col.cast(pl.Int64, strict=False) * mult
    fractional = (col.cast(pl.Float64, strict=False) * mult).round(0).cast(pl.Int64, strict=False)
    return pl.coalesce(whole, fractional)


def _side(mapping: ColumnMapping, schema: pl.Schema) -> pl.Expr:
    """buy/sell/unknown; None/empty -> unknown; anything unreadable passes through raw for the DLQ."""
    if mapping.side:
        raw = pl.col(mapping.side).cast(pl.String)
        word = raw.str.strip_chars().str.to_lowercase()
        return (
            pl.when(raw.is_null() | (word == "")).then(pl.lit("unknown"))
            .when(word.is_in(["buy", "sell", "unknown"])).then(word)
            .otherwise(raw)
        )
    if mapping.buyer_maker:
        col = pl.col(mapping.buyer_maker)
        if schema[mapping.buyer_maker] == pl.Boolean:
            return pl.when(col.is_null()).then(pl.lit("unknown")).when(col).then(pl.lit("sell")).otherwise(pl.lit("buy"))
        raw = col.cast(pl.String)
        word = raw.str.strip_chars().str.to_lowercase()
        return (
            pl.when(raw.is_null() | (word == "")).then(pl.lit("unknown"))
            .when(word.is_in(_TRUE)).then(pl.lit("sell"))  # buyer was maker: the seller hit the bid
            .when(word.is_in(_FALSE)).then(pl.lit("buy"))
            .otherwise(raw)
        )
    return pl.lit("unknown")


class ReplayFeed:
    """``ReplayFeed(path, mapping=None, speed=0.0, symbol=None)``: a recorded file as a tick feed.

    ``mapping``: a :class:`ColumnMapping`, a preset name, or None to detect the preset from the file
    name. ``speed``: 0 = as fast as possible, N = N× real time (event-time gaps / N on the wall clock).
    ``symbol`` overrides the mapping's symbol for every row.
    """

    def __init__(
        self,
        path: str | Path,
        mapping: ColumnMapping | str | None = None,
        speed: float = 0.0,
        symbol: str | None = None,
        *,
        pacer_factory: Callable[[float], Pacer] = Pacer,
    ) -> None:
        from feeds.replay_presets import detect_mapping, preset_mapping  # presets import this module

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"replay file not found: {self.path}")
        if isinstance(mapping, str):
            mapping = preset_mapping(mapping)
        elif mapping is None:
            mapping = detect_mapping(self.path)
        self.mapping = mapping
        self.speed = speed
        self.symbol = symbol
        self.source = f"replay:{self.path.stem}"
        self._pacer_factory = pacer_factory
        self._frame: pl.DataFrame | None = None
        self._columns: tuple[pl.DataFrame, tuple[str, ...]] | None = None
        self._schema = self._check_columns()

    def _check_columns(self) -> pl.Schema:
        schema = scan_file(self.path, self.mapping).collect_schema()
        present = schema.names()
        if looks_like_bars(present):
            raise BarFileError(
                f"{self.path.name} holds OHLC bars (columns: {present}), not ticks; "
                "the tick replay cannot read it (replay bars with the bar replay instead)"
            )
        missing = [c for c in self.mapping.source_columns() if c not in schema]
        if missing:
            raise ValueError(
                f"{self.path.name}: {self.mapping.kind} mapping needs column(s) {missing}, "
                f"which the file does not have; columns present: {present}"
            )
        if self.symbol is None and self.mapping.fixed_symbol is None and self.mapping.symbol is None:
            raise ValueError(
                f"{self.path.name}: no symbol: pass symbol=..., or a mapping with a symbol column "
                f"or fixed_symbol; columns present: {present}"
            )
        return schema

    def frame(self) -> pl.DataFrame:
        """The whole replay as typed columns in tape order (cached): what ``ticks`` emits."""
        if self._frame is None:
            self._frame = self._load()
        return self._frame

    def __len__(self) -> int:
        return self.frame().height

    def _load(self) -> pl.DataFrame:
        m, schema = self.mapping, self._schema
        exprs: list[pl.Expr] = [pl.col("_row"), _timestamp_ns(m.timestamp, schema[m.timestamp], m).alias("ts")]
        value_columns = ["price", "size"] if m.kind == "trade" else ["bid", "ask", "bid_size", "ask_size"]
        for field in value_columns:
            name = getattr(m, field)
            if name is None:  # optional quote size: none recorded
                exprs.append(pl.lit(0.0).alias(field))
                continue
            exprs.append(pl.col(name).cast(pl.Float64, strict=False).alias(field))
            exprs.append(pl.col(name).cast(pl.String).alias(f"_raw_{field}"))
        exprs.append(pl.col(m.timestamp).cast(pl.String).alias("_raw_ts"))
        if m.kind == "trade":
            exprs.append(_side(m, schema).alias("side"))
            tid = pl.col(m.trade_id).cast(pl.String) if m.trade_id else pl.col("_row").cast(pl.String)
            exprs.append(tid.alias("trade_id"))
        symbol = self.symbol or m.fixed_symbol
        sym = pl.lit(symbol) if symbol else pl.col(m.symbol).cast(pl.String).fill_null(UNKNOWN_SYMBOL)
        exprs.append(sym.alias("symbol"))

        lazy = scan_file(self.path, m).with_row_index("_row").select(exprs)
        # Unreadable timestamps borrow the previous readable one (file order) so the row keeps its place.
        lazy = lazy.with_columns(
            ts_event=pl.col("ts").forward_fill().backward_fill().fill_null(0)
        ).sort(["ts_event", "_row"])  # explicit tie-break: equal stamps keep file order
        return lazy.collect()

    def ticks(self, start_seq: int = 0) -> Iterator[RawTick]:
        return tape_ticks(self, start_seq)

    def batches(self, start_seq: int = 0, max_rows: int = 2_000) -> Iterator[RawTickBatch | RawTick]:
        """Rows ``start_seq``, ``start_seq + 1``, ... in seq order: see :func:`tape_batches`."""
        return tape_batches(self, start_seq, max_rows)

    def _rows(self, chunk: pl.DataFrame) -> Iterator[tuple[int, str, dict]]:
        """(ts_event, symbol, payload) per row of a slice of the frame, as ``ticks()`` emits them."""
        value_columns = ["price", "size"] if self.mapping.kind == "trade" else ["bid", "ask", "bid_size", "ask_size"]
        cols = {name: _with_raw_fallback(chunk, name) for name in ["ts", *value_columns]}
        ts_event = chunk["ts_event"].to_list()
        symbols = chunk["symbol"].to_list()
        if self.mapping.kind == "trade":
            rows = zip(ts_event, symbols, cols["ts"], cols["price"], cols["size"],
                       chunk["side"].to_list(), chunk["trade_id"].to_list())
            for ts, sym, pts, price, size, side, tid in rows:
                yield ts, sym, {"type": "trade", "ts": pts, "price": price, "size": size, "side": side, "trade_id": tid}
        else:
            rows = zip(ts_event, symbols, cols["ts"], cols["bid"], cols["ask"], cols["bid_size"], cols["ask_size"])
            for ts, sym, pts, bid, ask, bsz, asz in rows:
                yield ts, sym, {"type": "quote", "ts": pts, "bid": bid, "ask": ask, "bid_size": bsz, "ask_size": asz}

    def _batch_columns(self) -> tuple[pl.DataFrame, tuple[str, ...]]:
        """The frame's columns as a RawTickBatch holds them (cached), and the symbol dictionary.

        ``_regular``: every payload value was read, so the row's payload is a columnar one
        (``schemas.columns.columnar_payload``); ``_symbol``: the row's code into the dictionary.
        """
        if self._columns is None:
            frame, trade = self.frame(), self.mapping.kind == "trade"
            symbols = tuple(frame["symbol"].unique(maintain_order=True).to_list())
            values = ["price", "size"] if trade else ["bid", "ask", "bid_size", "ask_size"]
            regular = pl.col("ts").is_not_null() & (pl.col("ts") >= 0)
            for name in values:
                regular = regular & pl.col(name).is_not_null()
            extra = [pl.col("symbol").replace_strict(symbols, list(range(len(symbols))), return_dtype=pl.Int32).alias("_symbol")]
            if trade:
                regular = regular & pl.col("side").is_in(_RAW_SIDE_NAMES) & pl.col("trade_id").is_not_null()
                extra.append(pl.col("side").replace_strict(_RAW_SIDE_NAMES, _RAW_SIDE_VALUES, default=SIDE_NONE,
                                                           return_dtype=pl.Int8).alias("_side"))
            self._columns = (frame.select("ts_event", *values, *(["trade_id"] if trade else []), *extra,
                                          regular.alias("_regular")), symbols)
        return self._columns

    def _batch(self, columns: pl.DataFrame, symbols: tuple[str, ...], lo: int, hi: int, watermark: int) -> RawTickBatch:
        """Regular rows ``[lo, hi)`` as a RawTickBatch (``seq`` = row, the payload ``ts`` = ``ts_event``)."""
        chunk, n = columns.slice(lo, hi - lo), hi - lo
        absent = [np.full(n, np.nan) for _ in range(4)]  # one array per column: a batch shares none
        if self.mapping.kind == "trade":
            kind, side, trade_id = TRADE, chunk["_side"].to_numpy(), chunk["trade_id"].to_numpy()
            values = {"price": chunk["price"].to_numpy(), "size": chunk["size"].to_numpy(),
                      **dict(zip(("bid", "ask", "bid_size", "ask_size"), absent))}
        else:
            kind, side, trade_id = QUOTE, np.full(n, SIDE_NONE, np.int8), np.full(n, None, dtype=object)
            values = {name: chunk[name].to_numpy() for name in ("bid", "ask", "bid_size", "ask_size")}
            values |= {"price": absent[0], "size": absent[1]}
        return RawTickBatch(
            source=self.source, symbols=symbols, symbol=chunk["_symbol"].to_numpy(),
            kind=np.full(n, kind, np.int8), seq=np.arange(lo, hi, dtype=np.int64),
            ts_event=chunk["ts_event"].to_numpy(), ts_ingest=np.full(n, now_ns(), np.int64),
            side=side, trade_id=trade_id, watermark=watermark, **values,
        )


def _with_raw_fallback(chunk: pl.DataFrame, name: str) -> list:
    """The parsed column as a list, with the raw text put back wherever parsing failed (for the DLQ)."""
    values = chunk[name].to_list()
    raw_name = f"_raw_{name}"
    if raw_name not in chunk.columns:
        return values
    failed = chunk.select((pl.col(name).is_null() & pl.col(raw_name).is_not_null()).arg_true()).to_series()
    if failed.len():
        raw = chunk[raw_name]
        for i in failed.to_list():
            values[i] = raw[i]
    return values


class ReplayTape(Protocol):
    """What :func:`tape_ticks` and :func:`tape_batches` read: a tape sorted by ``ts_event`` whose
    row ``i`` is seq ``i``; ``_rows`` turns a slice of ``frame()`` into (ts_event, symbol, payload)
    and ``_batch`` rows ``[lo, hi)`` of ``_batch_columns()`` into a RawTickBatch."""

    source: str
    speed: float
    _pacer_factory: Callable[[float], Pacer]

    def frame(self) -> pl.DataFrame: ...
    def _rows(self, chunk: pl.DataFrame) -> Iterator[tuple[int, str, dict]]: ...
    def _batch_columns(self) -> tuple[pl.DataFrame, tuple[str, ...]]: ...
    def _batch(self, columns: pl.DataFrame, symbols: tuple[str, ...], lo: int, hi: int, watermark: int) -> RawTickBatch: ...


def tape_ticks(tape: "ReplayTape", start_seq: int = 0) -> Iterator[RawTick]:
    """One RawTick per row of ``tape.frame()`` from ``start_seq``, paced by ``tape.speed``."""
    if start_seq < 0:
        raise ValueError(f"start_seq must be >= 0, got {start_seq}")
    frame, source = tape.frame(), tape.source
    pacer = tape._pacer_factory(tape.speed)
    paced, wait_until = pacer.paced, pacer.wait_until
    for lo in range(start_seq, frame.height, _CHUNK_ROWS):
        seq = lo
        for ts, sym, payload in tape._rows(frame.slice(lo, _CHUNK_ROWS)):
            if paced:
                wait_until(ts)
            yield raw_tick(source, seq, ts, now_ns(), sym, payload)
            seq += 1


def tape_batches(tape: "ReplayTape", start_seq: int = 0, max_rows: int = 2_000) -> Iterator[RawTickBatch | RawTick]:
    """A replay tape (a :class:`ReplayFeed`, or a merge of several, :mod:`feeds.replay_merge`) as
    handovers: rows ``start_seq``, ``start_seq + 1``, ... in seq order: runs of regular rows (every value
    read) as RawTickBatches of at most ``max_rows`` rows, each irregular row (a value missing or
    unreadable, a timestamp before 1970) as the RawTick ``ticks()`` makes of it, between them.

    Flattened (``to_records`` of each batch), the items are ``ticks(start_seq)`` but for the
    wall-clock ``ts_ingest`` (one reading per batch, at hand-over). Watermarks (the file is
    sorted by ``ts_event``, ties kept): unpaced, a batch's last ``ts_event``; paced, as
    :mod:`feeds.batching` (empty heartbeat batches through quiet stretches). A range of the
    schedule that ends on an irregular row is followed by an empty batch carrying its watermark
    when that watermark is above the last one handed over.
    """
    if start_seq < 0:
        raise ValueError(f"start_seq must be >= 0, got {start_seq}")
    columns, symbols = tape._batch_columns()
    source, regular = tape.source, columns["_regular"].to_numpy()
    ts_event = columns["ts_event"].to_numpy()
    schedule = handovers([(ts_event[start_seq:], start_seq)], tape._pacer_factory(tape.speed), max_rows,
                         strictly_increasing=False)
    last_watermark: int | None = None
    for handover in schedule:
        if handover.segment is None:
            last_watermark = handover.watermark
            yield empty_batch(source, symbols, handover.watermark)
            continue
        lo, hi = handover.segment + handover.lo, handover.segment + handover.hi
        run = lo
        for bad in (np.flatnonzero(~regular[lo:hi]) + lo).tolist():
            if bad > run:
                last_watermark = int(ts_event[bad - 1])
                yield tape._batch(columns, symbols, run, bad, last_watermark)
            ts, sym, payload = next(tape._rows(tape.frame().slice(bad, 1)))
            yield raw_tick(source, bad, ts, now_ns(), sym, payload)
            run = bad + 1
        if run < hi:
            last_watermark = handover.watermark
            yield tape._batch(columns, symbols, run, hi, handover.watermark)
        elif last_watermark is None or handover.watermark > last_watermark:
            last_watermark = handover.watermark
            yield empty_batch(source, symbols, handover.watermark)
