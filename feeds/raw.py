"""Building :class:`schemas.RawTick` records at feed speed.

Every feed emits hundreds of thousands of ticks a second, and ``RawTick.model_construct`` alone
manages about 240k records/s on one core (it walks the fields and their defaults on every call),
which would cap the synthetic feed below its 300k ticks/s target. The feeds build their values themselves (all of them,
correct and already typed), so :func:`raw_tick` sets the instance state directly, exactly as
``model_construct`` would leave it (``tests/unit/feeds/test_raw.py`` pins that equivalence, so a
pydantic upgrade that changes the internals fails a test instead of producing odd records).
"""

from __future__ import annotations

from typing import Any

from schemas import RawTick

PAYLOAD_FORMAT = "tapeflow.v1"
SCHEMA_VERSION = 1

_FIELD_NAMES = frozenset(RawTick.model_fields)
_new = RawTick.__new__
_set = object.__setattr__


def raw_tick(
    source: str, seq: int, ts_event: int, ts_ingest: int, symbol: str, payload: dict[str, Any]
) -> RawTick:
    """A ``tapeflow.v1`` RawTick with ``id = f"{source}:{seq}"``; no validation (the feed's values are typed)."""
    tick = _new(RawTick)
    _set(
        tick,
        "__dict__",
        {
            "schema_version": SCHEMA_VERSION,
            "id": f"{source}:{seq}",
            "ts_event": ts_event,
            "ts_ingest": ts_ingest,
            "source": source,
            "symbol": symbol,
            "payload_format": PAYLOAD_FORMAT,
            "payload": payload,
            "seq": seq,
        },
    )
    # A fresh set per record: pydantic's model_copy(update=...) mutates it in place.
    _set(tick, "__pydantic_fields_set__", set(_FIELD_NAMES))
    _set(tick, "__pydantic_extra__", None)
    _set(tick, "__pydantic_private__", None)
    return tick
