"""The base every tapeflow record shares.

Times are integers: nanoseconds since the Unix epoch, UTC. Integers keep venue stamps exact (a
float loses nanoseconds, a ``datetime`` microseconds), map one to one onto ClickHouse
``DateTime64(9, 'UTC')`` and compare cheaply in the hot path.

- ``ts_event``: when it happened at the venue (for derived records: the event time they describe).
- ``ts_ingest``: wall-clock time when tapeflow first saw or created this record.
- ``ts_tick_ingest``: the ``ts_ingest`` of the market tick that caused the record, so tick-to-X
  latency can be measured at any stage (``ts_ingest - ts_tick_ingest``).

The two wall-clock fields are the only ones that differ between two runs over the same input;
:func:`content_hash` leaves them out so reproducibility can be asserted byte for byte.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, ClassVar, Iterable

import orjson
from pydantic import BaseModel, ConfigDict, Field

WALL_CLOCK_FIELDS = frozenset({"ts_ingest", "ts_tick_ingest"})

NANOS_PER_SECOND = 1_000_000_000


def now_ns() -> int:
    """Wall clock in ns since the epoch; used only for ``ts_ingest`` fields, never for event logic."""
    return time.time_ns()


class Record(BaseModel):
    """A frozen, versioned record; JSON on the wire with the keys of the field names."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=False)

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = Field(default=1, ge=1)
    id: str = Field(min_length=1, description="Deterministic id; ClickHouse deduplicates on it.")
    ts_event: int = Field(ge=0, description="Event time, ns since epoch UTC.")
    ts_ingest: int = Field(ge=0, description="Wall-clock ns when tapeflow first saw/created it.")

    def to_json(self) -> bytes:
        # model_dump(mode="json") walks every field in Python (~10 us a record, on every Kafka
        # message). A record's fields are JSON-native (ints, floats, strs, str enums, dicts,
        # tuples, nested records), in declaration order in __dict__, so orjson writes the same
        # bytes from __dict__ directly; tests/unit/schemas asserts the equality for every record.
        return orjson.dumps(self.__dict__, default=_nested_record)

    @classmethod
    def from_json(cls, data: bytes | str):
        return cls.model_validate_json(data)

    def content(self) -> dict[str, Any]:
        """The record without wall-clock fields: what must be identical across reproducible runs."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in WALL_CLOCK_FIELDS}


def _nested_record(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.__dict__
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def content_hash(records: Iterable[Record]) -> str:
    """SHA-256 over the records' content (wall-clock fields excluded), in the given order."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(orjson.dumps(record.content(), option=orjson.OPT_SORT_KEYS))
        digest.update(b"\n")
    return digest.hexdigest()
