"""Replaying OHLC(V) bar files as the pipeline's bars (``tapeflow run --feed bars``).

``BarFileFeed(files, speed=0.0)`` reads one or more bar files (CSV, CSV.gz/.zst, Parquet; ``files``
is ``[(path, symbol or None)]``) and hands over :class:`schemas.Bar` records in event order (by
``bar_end``, then symbol), as if the bar stage had built them: ``id`` = ``symbol:interval:bar_start``,
``ts_event`` = ``bar_end``; ``ts_ingest`` and ``ts_tick_ingest`` are the wall clock at hand-over (so
bar-to-order latency is measured from there).

Columns, detected by name (case and punctuation ignored): the bar's start time (``bar_start``,
``timestamp``, ``ts``, ``time``, ``datetime``, ``date``, ``open_time``; a vendor's timestamp is
taken as the bar's *start*), ``open``/``high``/``low``/``close`` (or ``o``/``h``/``l``/``c``), and
where the file has them ``volume``, ``vwap``, ``trade_count``, ``buy_volume``, ``sell_volume``,
``symbol`` and ``interval``. A column the file lacks stays None in every bar: nothing is invented
(the FX bars in ``data/real`` have no volume, and their volume features are NaN). The symbol comes
from a symbol column or from ``path@SYMBOL``.

The interval is the ``interval`` column's value, else the most common spacing of a symbol's bar
starts; it must be one the pipeline knows (``schemas.INTERVAL_NANOS``: 1s, 1m). Timestamps in
s/ms/us/ns or ISO text, as :mod:`feeds.replay_columns` guesses them.

Bad rows are refused when the file is opened, with the file, the line and what is wrong: an
unreadable time, price, volume, vwap or trade count (an empty cell of an optional column is a missing
value, None), NaN or infinity, OHLC out of order (low above open/close or high below them), a price
or vwap not above 0, a negative volume, a trade count below 1, two bars of one symbol at one start.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

import polars as pl

from feeds.pacing import Pacer
from feeds.replay import looks_like_bars, scan_file, timestamp_ns
from feeds.replay_columns import CANDIDATES, guess_unit
from schemas import INTERVAL_NANOS, Bar, now_ns

BAR_CANDIDATES: dict[str, tuple[str, ...]] = {
    "bar_start": ("bar_start", "timestamp", "ts", "time", "datetime", "date", "open_time", "start", "date_time"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "vwap": ("vwap",),
    "trade_count": ("trade_count", "trades", "n_trades", "num_trades", "count"),
    "buy_volume": ("buy_volume", "taker_buy_volume", "buy_vol"),
    "sell_volume": ("sell_volume", "taker_sell_volume", "sell_vol"),
    "symbol": CANDIDATES["symbol"],
    "interval": ("interval",),
}
REQUIRED = ("bar_start", "open", "high", "low", "close")
OPTIONAL_FLOATS = ("volume", "vwap", "buy_volume", "sell_volume")
_INTERVAL_OF_NANOS = {nanos: name for name, nanos in INTERVAL_NANOS.items()}


class BarFileError(ValueError):
    """A bar file the bar replay cannot read; the message names the file and what is wrong."""


def _canonical(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def detect_bar_columns(columns: list[str]) -> dict[str, str]:
    """role -> file column for every role of :data:`BAR_CANDIDATES` a column name gives away."""
    by_name: dict[str, str] = {}
    for column in columns:
        by_name.setdefault(_canonical(column), column)
    found: dict[str, str] = {}
    for role, names in BAR_CANDIDATES.items():
        match = next((by_name[n] for n in names if n in by_name and by_name[n] not in found.values()), None)
        if match is not None:
            found[role] = match
    return found


def read_bar_file(path: Path, symbol: str | None = None) -> tuple[pl.DataFrame, str, str]:
    """The file's bars as columns (``symbol``, ``bar_start`` ns, OHLC, and the optional fields, null
    where the file has none), its interval, and a line saying how its columns were read."""
    if not path.is_file():
        raise FileNotFoundError(f"bar file not found: {path}")
    lazy = scan_file(path)
    schema = lazy.collect_schema()
    columns = schema.names()
    roles = detect_bar_columns(columns)
    missing = [r for r in REQUIRED if r not in roles]
    if symbol is None and "symbol" not in roles:
        missing.append("symbol (a symbol/ticker/instrument column, or PATH@SYMBOL)")
    if missing:
        hint = "" if looks_like_bars(columns) else " (a tick file? replay it with --feed replay)"
        raise BarFileError(f"{path.name}: not a bar file the bar replay can read{hint}: missing {', '.join(missing)}; "
                           f"columns found: {columns}")
    start = roles["bar_start"]
    dtype = schema[start]
    unit = "ns" if isinstance(dtype, (pl.Datetime, pl.Date)) else guess_unit(
        lazy.select(start).head(100).collect().to_series())
    exprs = [pl.lit(symbol).alias("symbol") if symbol else pl.col(roles["symbol"]).cast(pl.String).alias("symbol"),
             timestamp_ns(start, dtype, unit).alias("bar_start"),
             *(pl.col(roles[r]).cast(pl.Float64, strict=False).alias(r) for r in ("open", "high", "low", "close"))]
    for role in OPTIONAL_FLOATS:
        source = pl.col(roles[role]).cast(pl.Float64, strict=False) if role in roles else pl.lit(None, pl.Float64)
        exprs.append(source.alias(role))
    count = pl.col(roles["trade_count"]).cast(pl.Int64, strict=False) if "trade_count" in roles else pl.lit(None, pl.Int64)
    exprs.append(count.alias("trade_count"))
    # a value the file has but that does not parse is an error, not a missing value
    exprs += [pl.col(roles[r]).cast(pl.String).str.strip_chars().alias(f"_raw_{r}")
              for r in (*OPTIONAL_FLOATS, "trade_count") if r in roles]
    if "interval" in roles:
        exprs.append(pl.col(roles["interval"]).cast(pl.String).alias("interval"))
    frame = lazy.with_row_index("_row").select(pl.col("_row"), *exprs).collect()
    _check_rows(path, frame, roles)
    interval = _interval(path, frame)
    frame = frame.drop("interval", *(c for c in frame.columns if c.startswith("_raw_")), strict=False)
    found = ", ".join(f"{role}={roles[role]}" for role in BAR_CANDIDATES if role in roles and role != "interval")
    absent = [r for r in (*OPTIONAL_FLOATS, "trade_count") if r not in roles]
    line = (f"bars {path}{f' as {symbol}' if symbol else ''}: {interval} bars, {found} (bar_start unit {unit})"
            + (f"; not in the file, left empty: {', '.join(absent)}" if absent else ""))
    return frame, interval, line


def _check_rows(path: Path, frame: pl.DataFrame, roles: dict[str, str]) -> None:
    ohlc = [pl.col(c) for c in ("open", "high", "low", "close")]
    unparsed = [pl.col(f"_raw_{r}").is_not_null() & (pl.col(f"_raw_{r}") != "") & pl.col(r).is_null()
                for r in (*OPTIONAL_FLOATS, "trade_count") if r in roles]
    values = [pl.col(c) for c in (*("open", "high", "low", "close"), *OPTIONAL_FLOATS)]
    checks = [
        (pl.col("bar_start").is_null(), f"unreadable time in column {roles['bar_start']!r}"),
        (pl.any_horizontal(c.is_null() for c in ohlc), "an unreadable or missing open/high/low/close"),
        (pl.any_horizontal(unparsed) if unparsed else pl.lit(False), "an unreadable volume, vwap or trade count"),
        (pl.any_horizontal(c.is_nan() | c.is_infinite() for c in values), "a NaN or infinite value"),
        ((pl.col("vwap") <= 0) | (pl.col("trade_count") < 1), "a vwap not above 0 or a trade count below 1"),
        (pl.any_horizontal(c <= 0 for c in ohlc), "a price not above 0"),
        ((pl.col("low") > pl.min_horizontal("open", "close")) | (pl.col("high") < pl.max_horizontal("open", "close")),
         "OHLC out of order (low above open/close or high below them)"),
        (pl.any_horizontal(pl.col(c) < 0 for c in ("volume", "buy_volume", "sell_volume")), "a negative volume"),
        (~pl.struct("symbol", "bar_start").is_first_distinct(), "a second bar of its symbol at the same start"),
    ]
    header = 2 if path.suffix.lower() != ".parquet" else 1  # 1-based file line of row 0
    for bad, what in checks:
        rows = frame.filter(bad.fill_null(False))["_row"]
        if rows.len():
            raise BarFileError(f"{path.name}: {rows.len():,} bar(s) with {what}, the first on line "
                               f"{int(rows[0]) + header}; fix or remove them")


def _interval(path: Path, frame: pl.DataFrame) -> str:
    if "interval" in frame.columns:
        named = frame["interval"].drop_nulls().unique().to_list()
        if len(named) != 1 or named[0] not in INTERVAL_NANOS:
            raise BarFileError(f"{path.name}: interval column holds {named}; one of {sorted(INTERVAL_NANOS)} expected")
        return named[0]
    gaps = (frame.sort("symbol", "bar_start")
            .select(pl.col("bar_start").diff().over("symbol").alias("gap"))
            .filter(pl.col("gap") > 0)["gap"])
    if gaps.len() == 0:
        raise BarFileError(f"{path.name}: cannot tell the bar interval from a single bar per symbol")
    spacing = int(gaps.mode().min())
    if spacing not in _INTERVAL_OF_NANOS:
        raise BarFileError(f"{path.name}: bars are {spacing / 1e9:g} s apart; the pipeline knows "
                           f"{', '.join(f'{k} ({v / 1e9:g} s)' for k, v in INTERVAL_NANOS.items())}")
    return _INTERVAL_OF_NANOS[spacing]


class BarFileFeed:
    """``BarFileFeed(files, speed=0.0)``: bar files as Bar records in event order.

    ``bars(start=0, max_bars=...)`` yields lists of Bars, bar ``i`` of the tape being the ``i``-th
    overall, so a run resumes at any index; every list ends at a ``bar_end`` boundary (the bars of
    one instant are handed over together). Paced (``speed`` > 0), a list is handed over when its
    ``bar_end`` is due. ``frame()``: the whole tape as columns (``symbol`` among them).
    """

    market_streams = ("bar",)

    def __init__(self, files: Sequence[tuple[Path, str | None]], speed: float = 0.0, *,
                 pacer_factory: Callable[[float], Pacer] = Pacer) -> None:
        if not files:
            raise ValueError("a bar replay needs at least one file")
        frames, intervals, self.lines = [], set(), []
        for path, symbol in files:
            frame, interval, line = read_bar_file(Path(path), symbol)
            frames.append(frame.drop("_row"))
            intervals.add(interval)
            self.lines.append(line)
        if len(intervals) > 1:
            raise BarFileError(f"bar files of different intervals in one run: {sorted(intervals)}")
        self.interval = intervals.pop()
        nanos = INTERVAL_NANOS[self.interval]
        frame = pl.concat(frames).with_columns((pl.col("bar_start") + nanos).alias("bar_end"))
        duplicated = frame.select(pl.struct("symbol", "bar_start").is_duplicated().any()).item()
        if duplicated:
            raise BarFileError("two files hold a bar of the same symbol at the same start")
        self._frame = frame.sort("bar_end", "symbol")
        self.speed = speed
        self.source = "bars:" + "+".join(Path(p).stem for p, _ in files)
        self._pacer_factory = pacer_factory

    def frame(self) -> pl.DataFrame:
        return self._frame

    def __len__(self) -> int:
        return self._frame.height

    def bars(self, start: int = 0, max_bars: int = 2_000) -> Iterator[list[Bar]]:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        frame, interval = self._frame, self.interval
        pacer = self._pacer_factory(self.speed)
        ends = frame["bar_end"]
        lo = start
        while lo < frame.height:
            # Paced, one instant at a time (its bars are due together); else up to max_bars, whole instants.
            hi = lo + 1 if pacer.paced else min(lo + max_bars, frame.height)
            last = ends[hi - 1]
            while hi < frame.height and ends[hi] == last:
                hi += 1
            if pacer.paced:
                pacer.wait_until(int(last))
            yield _bars(frame.slice(lo, hi - lo), interval)
            lo = hi


def _bars(chunk: pl.DataFrame, interval: str) -> list[Bar]:
    ingest = now_ns()
    return [
        Bar(id=f"{row['symbol']}:{interval}:{row['bar_start']}", ts_event=row["bar_end"], ts_ingest=ingest,
            symbol=row["symbol"], interval=interval, bar_start=row["bar_start"], bar_end=row["bar_end"],
            open=row["open"], high=row["high"], low=row["low"], close=row["close"], volume=row["volume"],
            vwap=row["vwap"], trade_count=row["trade_count"], buy_volume=row["buy_volume"],
            sell_volume=row["sell_volume"], ts_tick_ingest=ingest)
        for row in chunk.iter_rows(named=True)
    ]
