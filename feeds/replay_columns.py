"""Which column of a user's tick file is which: detection, ``--columns`` specs and mapping files.

:func:`resolve_mapping` turns a file and what the user said about it into a :class:`ColumnMapping`
and a sentence saying where each part came from. Sources, strongest first:

1. ``overrides``: fields a user named (``--columns ts=time:ms,price=px``, :func:`parse_columns_spec`),
   laid over whatever base the next sources give, so naming one odd column is enough;
2. the base: a preset by name (``--preset tardis-trades``), else a mapping file
   (:func:`load_mapping_file`), else a preset whose file pattern matches the file name, else
   detection from the file's column names (:data:`CANDIDATES`, case and punctuation ignored).

Timestamps: a unit a user gave wins; a column typed as a datetime (Parquet) needs none; otherwise the
first rows decide: text that is not a number is a date-time string (ISO 8601, offsets honoured,
naive = UTC), numbers are s/ms/us/ns since the epoch by magnitude (see :func:`guess_unit`).

A file that cannot be mapped raises :class:`MappingError` at once, naming the columns found and the
roles still missing. An OHLC bar file raises :class:`feeds.replay.BarFileError` (``--feed bars``).
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from feeds.replay import BarFileError, ColumnMapping, looks_like_bars, scan_file

# role -> column names that mean it, in order of preference (compared after _canonical)
CANDIDATES: dict[str, tuple[str, ...]] = {
    "timestamp": ("timestamp", "ts", "time", "datetime", "date_time", "ts_event", "transact_time", "event_time"),
    "price": ("price", "px", "trade_price", "last_price"),
    "size": ("size", "qty", "quantity", "amount", "volume", "trade_size", "last_qty"),
    "side": ("side", "aggressor", "aggressor_side", "taker_side"),
    "buyer_maker": ("is_buyer_maker", "buyer_maker", "isbuyermaker"),
    "trade_id": ("trade_id", "tradeid", "id", "tid", "match_id"),
    "symbol": ("symbol", "ticker", "instrument", "instrument_id", "sym"),
    "bid": ("bid", "bid_price", "bid_px", "best_bid", "bidprice"),
    "ask": ("ask", "ask_price", "ask_px", "best_ask", "askprice", "offer"),
    "bid_size": ("bid_size", "bid_qty", "bid_sz", "bidsize", "bid_quantity", "bid_amount", "bid_volume"),
    "ask_size": ("ask_size", "ask_qty", "ask_sz", "asksize", "ask_quantity", "ask_amount", "ask_volume"),
}
TRADE_ROLES = ("price", "size", "side", "buyer_maker", "trade_id")
QUOTE_ROLES = ("bid", "ask", "bid_size", "ask_size")
# --columns keys: the roles above, ts as a short name for timestamp, and the file-layout options
SPEC_KEYS = {"ts": "timestamp", **{role: role for role in CANDIDATES}, "kind": "kind"}
UNITS = {"s": "s", "ms": "ms", "us": "us", "ns": "ns", "iso": "datetime", "datetime": "datetime"}
_SAMPLE_ROWS = 100


class MappingError(ValueError):
    """A file whose columns cannot be mapped onto trades or quotes; the message says what is missing."""


@dataclass(frozen=True)
class ResolvedMapping:
    mapping: ColumnMapping
    origin: str  # where the mapping came from, for the run's log line


def _canonical(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def parse_columns_spec(spec: str) -> dict[str, Any]:
    """``"ts=time:ms,price=px,size=qty"`` -> ColumnMapping fields.

    Keys: ``ts`` (or ``timestamp``), ``price``, ``size``, ``side``, ``buyer_maker``, ``trade_id``,
    ``symbol``, ``bid``, ``ask``, ``bid_size``, ``ask_size``, ``kind`` (trade | quote). A timestamp
    may carry its unit after a colon: ``s``, ``ms``, ``us``, ``ns``, ``iso``, or a strftime format
    (``ts=when:%Y%m%d %H%M%S%3f``). An unknown key or a malformed item raises ValueError.
    """
    fields: dict[str, Any] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise ValueError(f"--columns item {item!r} is not ROLE=COLUMN")
        if key not in SPEC_KEYS:
            raise ValueError(f"--columns: unknown role {key!r}; roles: {', '.join(SPEC_KEYS)}")
        role = SPEC_KEYS[key]
        if role == "kind":
            if value not in ("trade", "quote"):
                raise ValueError(f"--columns kind must be trade or quote, not {value!r}")
            fields["kind"] = value
        elif role == "timestamp" and ":" in value:
            column, unit = (s.strip() for s in value.split(":", 1))
            fields["timestamp"] = column
            if unit.lower() in UNITS:
                fields["timestamp_unit"] = UNITS[unit.lower()]
            elif "%" in unit:
                fields["timestamp_unit"], fields["timestamp_format"] = "datetime", unit
            else:
                raise ValueError(f"--columns: timestamp unit {unit!r} is none of s, ms, us, ns, iso or a %-format")
        else:
            fields[role] = value
    return fields


@dataclass(frozen=True)
class MappingFile:
    """A TOML mapping: top-level keys are :class:`ColumnMapping` fields for every file; a table
    ``[files."GLOB"]`` holds the fields for files whose name matches GLOB (first match wins)."""

    path: Path
    default: dict[str, Any]
    by_glob: tuple[tuple[str, dict[str, Any]], ...]

    def fields_for(self, file: Path) -> dict[str, Any]:
        for glob, fields in self.by_glob:
            if fnmatch.fnmatch(file.name, glob):
                return {**self.default, **fields}
        return dict(self.default)


def load_mapping_file(path: Path) -> MappingFile:
    if not path.is_file():
        raise FileNotFoundError(f"mapping file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    files = data.pop("files", {})
    allowed = set(ColumnMapping.model_fields)
    tables = [("(top level)", data)] + [(f"files.{glob!r}", f) for glob, f in files.items()]
    for where, fields in tables:
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ValueError(f"{path} {where}: unknown key(s) {unknown}; keys: {sorted(allowed)}")
        if "column_names" in fields:
            fields["column_names"] = tuple(fields["column_names"])
    return MappingFile(path, data, tuple(files.items()))


def detect_roles(columns: list[str]) -> dict[str, str]:
    """role -> the file column that plays it, for every role a column name gives away."""
    by_name: dict[str, str] = {}
    for column in columns:
        by_name.setdefault(_canonical(column), column)
    found = {}
    for role, names in CANDIDATES.items():
        match = next((by_name[n] for n in names if n in by_name), None)
        if match is not None and match not in found.values():
            found[role] = match
    if "side" in found and "buyer_maker" in found:
        del found["buyer_maker"]  # an explicit aggressor beats the inferred one
    return found


def guess_unit(sample: pl.Series) -> str:
    """The timestamp unit of a column's first values: ``datetime`` for text that is not a number;
    for numbers the magnitude of the largest: >= 1e17 ns, >= 1e14 us, >= 1e11 ms, else s (each
    bound is the year 1973 in the finer unit and beyond 5000 in the coarser)."""
    values = sample.drop_nulls()
    if values.dtype == pl.String:
        values = values.str.strip_chars().filter(values.str.strip_chars() != "")
        numbers = values.cast(pl.Float64, strict=False)
        if values.len() == 0 or numbers.null_count() > 0:
            return "datetime"
        values = numbers
    if values.len() == 0:
        return "ns"
    largest = float(values.cast(pl.Float64).abs().max())
    return "ns" if largest >= 1e17 else "us" if largest >= 1e14 else "ms" if largest >= 1e11 else "s"


def _layout(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: fields[k] for k in ("has_header", "column_names", "separator") if k in fields}


def resolve_mapping(
    path: Path,
    *,
    preset: str | None = None,
    mapping_file: MappingFile | None = None,
    overrides: dict[str, Any] | None = None,
    symbol: str | None = None,
) -> ResolvedMapping:
    """The mapping for ``path`` (see the module docstring for the order of sources). ``symbol``: the
    symbol the user gave the file (``path@SYMBOL``), which makes a symbol column optional."""
    from feeds.replay_presets import PRESETS, preset_for_file, preset_mapping

    overrides = dict(overrides or {})
    if preset is not None:
        base, origin = preset_mapping(preset).model_dump(exclude_unset=True), f"preset {preset}"
    elif mapping_file is not None:
        base, origin = mapping_file.fields_for(path), f"mapping file {mapping_file.path.name}"
    elif (named := preset_for_file(path)) is not None:
        base, origin = PRESETS[named].mapping.model_dump(exclude_unset=True), f"preset {named} (file name)"
    else:
        base, origin = {}, "detected from column names"
    schema = scan_file(path, **_layout({**base, **overrides})).collect_schema()
    columns = schema.names()
    if looks_like_bars(columns):
        raise BarFileError(f"{path.name} holds OHLC bars (columns: {columns}), not ticks: replay it with --feed bars")
    if not base:
        base = detect_roles(columns)
    if overrides:
        origin += f", with --columns {', '.join(sorted(overrides))}"
    fields = _merge(base, overrides)
    missing = _missing_roles(fields, symbol)
    if missing:
        raise MappingError(
            f"{path.name}: cannot map its columns onto {fields.get('kind', 'trades or quotes')}: missing "
            f"{'; '.join(missing)}. Columns found: {columns}. Name them with --columns (e.g. "
            f"--columns ts=COL:ms,price=COL,size=COL), a --mapping file, a --preset ({', '.join(PRESETS)}), "
            f"or PATH@SYMBOL for the symbol"
        )
    absent = [c for c in _named_columns(fields) if c not in schema]
    if absent:
        raise MappingError(f"{path.name}: the mapping names column(s) {absent} the file does not have; "
                           f"columns found: {columns}")
    if "timestamp_unit" not in fields and not isinstance(schema[fields["timestamp"]], (pl.Datetime, pl.Date)):
        sample = scan_file(path, **_layout(fields)).select(fields["timestamp"]).head(_SAMPLE_ROWS).collect()
        fields["timestamp_unit"] = guess_unit(sample.to_series())
        origin += f", timestamp unit {fields['timestamp_unit']} from its values"
    try:
        mapping = ColumnMapping(**fields)
    except ValueError as exc:
        raise MappingError(f"{path.name}: {exc}; columns found: {columns}") from None
    return ResolvedMapping(mapping, origin)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the user's fields on top; the kind follows what is named (bid/ask make a quote
    file), and the roles of the other kind are dropped so a quote mapping names no trade column."""
    fields = {**base, **overrides}
    kind = overrides.get("kind")
    if kind is None:
        named_quote = any(r in overrides for r in QUOTE_ROLES)
        named_trade = any(r in overrides for r in TRADE_ROLES)
        if named_quote != named_trade:
            kind = "quote" if named_quote else "trade"
        else:
            kind = base.get("kind") or ("trade" if "price" in fields else "quote" if "bid" in fields else None)
    if kind is not None:
        fields["kind"] = kind
        for role in QUOTE_ROLES if kind == "trade" else TRADE_ROLES:
            fields.pop(role, None)
    if "side" in overrides:
        fields.pop("buyer_maker", None)
    elif "buyer_maker" in overrides:
        fields.pop("side", None)
    return fields


def _missing_roles(fields: dict[str, Any], symbol: str | None) -> list[str]:
    missing = []
    if "timestamp" not in fields:
        missing.append("a timestamp column (timestamp/ts/time)")
    kind = fields.get("kind")
    if kind is None:
        missing.append("price and size columns (trades) or bid and ask columns (quotes)")
    elif kind == "trade":
        missing += [f"a {role} column ({'/'.join(CANDIDATES[role][:4])})" for role in ("price", "size")
                    if role not in fields]
    else:
        missing += [f"an {role} column" if role == "ask" else f"a {role} column" for role in ("bid", "ask")
                    if role not in fields]
    if symbol is None and "symbol" not in fields and "fixed_symbol" not in fields:
        missing.append("a symbol (a symbol/ticker/instrument column, or PATH@SYMBOL)")
    return missing


def _named_columns(fields: dict[str, Any]) -> list[str]:
    roles = ("timestamp", *TRADE_ROLES, *QUOTE_ROLES, "symbol")
    return [fields[r] for r in roles if fields.get(r) is not None]


def describe_mapping(mapping: ColumnMapping) -> str:
    """The mapping in ``--columns`` syntax, so a user can copy it and change one part."""
    unit = {"datetime": mapping.timestamp_format or "iso"}.get(mapping.timestamp_unit, mapping.timestamp_unit)
    parts = [f"kind={mapping.kind}", f"ts={mapping.timestamp}:{unit}"]
    roles = TRADE_ROLES if mapping.kind == "trade" else QUOTE_ROLES
    parts += [f"{role}={getattr(mapping, role)}" for role in (*roles, "symbol") if getattr(mapping, role)]
    return ",".join(parts) + (f" (symbol {mapping.fixed_symbol})" if mapping.fixed_symbol else "")
