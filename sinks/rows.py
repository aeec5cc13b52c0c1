"""Records to warehouse columns: one :class:`TableLayout` per topic table, derived from the models.

A layout is derived from the pydantic model's fields, so a new field shows up here without code
changes; the versioned DDL in ``sinks/ddl`` is written by hand (migrations must be stable files) and
``tests/integration/test_warehouse.py`` asserts that every table's columns equal its layout, so the
two cannot drift apart silently.

Mapping rules, field by field:

- ``run_id`` comes first in every table (it is not a record field; the writer supplies it).
- ints named ``ts_*``, ``bar_start``, ``bar_end``: ns since epoch -> ``DateTime64(9, 'UTC')``. They
  are sent as Arrow ``timestamp[ns, UTC]``; a plain Arrow int64 is *misread* by ClickHouse's Arrow
  input for a DateTime64 column, so the type must be the timestamp one.
- ``schema_version`` -> ``UInt16``; other ints -> ``Int64``.
- floats -> ``Float64``; ``float | None`` (``Order.limit_price``) -> ``Nullable(Float64)``.
- enums, literals and the identifier-like strings in :data:`LOW_CARDINALITY` -> ``LowCardinality(String)``;
  other strings (ids, free text) -> ``String``.
- ``dict`` payloads (``RawTick.payload``) -> ``String`` holding JSON; ``DeadLetter.payload`` is
  already text.
- ``list[str]`` (``RiskReject.reasons``) -> ``Array(LowCardinality(String))``.
- a nested record (``RiskReject.order``) is flattened to ``order_<field>`` columns (a field that
  already starts with ``order_``, like ``order_type``, is not prefixed twice).
- ``FeatureVector.values`` -> one ``Float64`` column per name of the feature set, in its order. A
  feature missing from a vector is stored as NaN (not 0: "not computed" must stay visible); a
  feature the table has no column for raises, because dropping it would lose data silently.

Speed matters: the writer converts every batch, so extraction is one ``map(attrgetter)`` pass per
column (C loops, no per-record Python frames) and Arrow builds each array in one call.
"""

from __future__ import annotations

import enum
import json
import math
import types
import typing
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Literal, Sequence

import numpy as np
import orjson
import pyarrow as pa

from schemas.feature_set import FEATURE_SET_V1
from schemas import FeatureVector, Record
from topics.catalog import TOPICS

TS_TYPE = "DateTime64(9, 'UTC')"
LC_STRING = "LowCardinality(String)"
ARROW_TS = pa.timestamp("ns", tz="UTC")

TIME_FIELDS = frozenset({"bar_start", "bar_end"})

# Identifier-like string fields with few distinct values: dictionary-encoded in ClickHouse.
LOW_CARDINALITY = frozenset({
    "symbol", "source", "payload_format", "account", "strategy", "strategy_version", "model_version",
    "venue", "feature_set", "source_topic", "stage", "reason", "target", "issued_by", "name",
})

Extract = Callable[[Sequence[Any]], pa.Array]


@dataclass(frozen=True)
class Column:
    name: str
    ch_type: str  # as ClickHouse normalizes it in system.columns
    extract: Extract  # records -> one Arrow array


@dataclass(frozen=True)
class TableLayout:
    table: str
    model: type[Record]
    columns: tuple[Column, ...]  # without run_id, which every table has first

    @property
    def column_names(self) -> tuple[str, ...]:
        return ("run_id", *(c.name for c in self.columns))

    @property
    def column_types(self) -> dict[str, str]:
        return {"run_id": LC_STRING, **{c.name: c.ch_type for c in self.columns}}

    def to_arrow(self, records: Sequence[Record], run_id: str) -> pa.Table:
        """Columnar form of ``records`` (all of this layout's model), ready for an Arrow insert."""
        strangers = set(map(type, records)) - {self.model}
        if strangers:
            names = ", ".join(sorted(t.__name__ for t in strangers))
            raise TypeError(f"table {self.table} takes {self.model.__name__} records, not {names}")
        arrays = [_repeat(run_id, len(records))]
        arrays.extend(column.extract(records) for column in self.columns)
        return pa.Table.from_arrays(arrays, names=list(self.column_names))


def _repeat(value: str, n: int) -> pa.Array:
    # One dictionary entry and n zero indices: no n-long list of Python strings.
    return pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([value], pa.string()))


def _values(getter: Callable[[Any], Any]) -> Callable[[Sequence[Any]], list]:
    return lambda records: list(map(getter, records))


def _timestamps(get: Callable[[Sequence[Any]], list]) -> Extract:
    # int64 ns then a zero-copy view as timestamp[ns, UTC]: exact to the nanosecond.
    return lambda records: pa.array(get(records), pa.int64()).view(ARROW_TS)


def _typed(get: Callable[[Sequence[Any]], list], arrow_type: pa.DataType) -> Extract:
    return lambda records: pa.array(get(records), arrow_type)


def _json(get: Callable[[Sequence[Any]], list]) -> Extract:
    return lambda records: pa.array([_json_text(v) for v in get(records)], pa.binary())


def _json_text(value: Any) -> bytes:
    """orjson's bytes; a payload it cannot write (an int beyond 64 bits, which a producer may send
    and JSON allows) in the standard library's JSON instead of failing the whole insert."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, default=repr, separators=(",", ":")).encode()


def _enum_values(get: Callable[[Sequence[Any]], list]) -> Extract:
    # str-valued enums are str subclasses whose text is the value; Arrow takes them as is.
    return lambda records: pa.array(get(records), pa.string())


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); constraints (``Annotated[float, Gt(0)]``) are dropped."""
    nullable = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            annotation, nullable = args[0], True
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation, nullable


def _field_columns(
    model: type[Record],
    getter: Callable[[Any], Any] | None = None,
    prefix: str = "",
    expanded: dict[str, Callable[[], list[Column]]] | None = None,
) -> list[Column]:
    """Columns for every field of ``model``; ``getter`` reaches the model from the outer record;
    ``expanded`` fields are replaced, in place, by the columns their builder returns."""
    columns: list[Column] = []
    for name, info in model.model_fields.items():
        if expanded and name in expanded:
            columns.extend(expanded[name]())
            continue
        column = name if not prefix or name.startswith(prefix) else prefix + name
        own = attrgetter(name)
        get = own if getter is None else (lambda r, _outer=getter, _own=own: _own(_outer(r)))
        annotation, nullable = _unwrap_optional(info.annotation)
        if nullable and annotation not in (float, int):
            raise TypeError(f"only optional floats and ints are mapped; {model.__name__}.{name} is {info.annotation!r}")
        origin = typing.get_origin(annotation)
        values = _values(get)
        if isinstance(annotation, type) and issubclass(annotation, Record):
            columns.extend(_field_columns(annotation, get, f"{name}_"))
        elif annotation is int and (name.startswith("ts_") or name in TIME_FIELDS):
            columns.append(Column(column, TS_TYPE, _timestamps(values)))
        elif annotation is int:
            ch_type, arrow_type = ("UInt16", pa.uint16()) if name == "schema_version" else ("Int64", pa.int64())
            ch_type = f"Nullable({ch_type})" if nullable else ch_type
            columns.append(Column(column, ch_type, _typed(values, arrow_type)))
        elif annotation is float:
            ch_type = "Nullable(Float64)" if nullable else "Float64"
            columns.append(Column(column, ch_type, _typed(values, pa.float64())))
        elif isinstance(annotation, type) and issubclass(annotation, enum.Enum) or origin is Literal:
            columns.append(Column(column, LC_STRING, _enum_values(values)))
        elif annotation is str:
            ch_type = LC_STRING if name in LOW_CARDINALITY else "String"
            columns.append(Column(column, ch_type, _typed(values, pa.string())))
        elif origin is dict:
            columns.append(Column(column, "String", _json(values)))
        elif origin is list and typing.get_args(annotation) == (str,):
            columns.append(Column(column, f"Array({LC_STRING})", _typed(values, pa.list_(pa.string()))))
        else:
            raise TypeError(f"no warehouse column mapping for {model.__name__}.{name}: {info.annotation!r}")
    return columns


def _feature_columns(feature_names: Sequence[str]) -> list[Column]:
    known = frozenset(feature_names)
    nan = math.nan

    def check(records: Sequence[FeatureVector]) -> list[dict[str, float]]:
        vectors = [r.values for r in records]
        for vector in vectors:
            # Fast path: a full vector has exactly the known keys.
            if vector.keys() != known and not known.issuperset(vector):
                unknown = sorted(set(vector) - known)
                raise ValueError(f"features table has no column for {unknown}; add a DDL migration first")
        return vectors

    def column(name: str, first: bool) -> Column:
        # The first feature column validates every vector; the others trust it.
        def extract(records: Sequence[FeatureVector]) -> pa.Array:
            vectors = check(records) if first else [r.values for r in records]
            return pa.array([v.get(name, nan) for v in vectors], pa.float64())

        return Column(name, "Float64", extract)

    return [column(name, i == 0) for i, name in enumerate(feature_names)]


# Fields stored in some other shape than the generic rules give; expanded by their own columns.
EXPANDED: dict[type[Record], dict[str, Callable[[], list[Column]]]] = {
    FeatureVector: {"values": lambda: _feature_columns(FEATURE_SET_V1)},
}


def layout_of(table: str, model: type[Record]) -> TableLayout:
    columns = _field_columns(model, expanded=EXPANDED.get(model))
    return TableLayout(table, model, tuple(columns))


LAYOUTS: dict[str, TableLayout] = {t.table: layout_of(t.table, t.model) for t in TOPICS}


def layout(table: str) -> TableLayout:
    try:
        return LAYOUTS[table]
    except KeyError:
        raise KeyError(f"no warehouse table {table!r}; the tables are: {', '.join(LAYOUTS)}") from None


def to_arrow(table: str, records: Sequence[Record], run_id: str) -> pa.Table:
    return layout(table).to_arrow(records, run_id)
