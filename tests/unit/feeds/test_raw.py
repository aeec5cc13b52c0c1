from __future__ import annotations

import orjson

from feeds.raw import raw_tick
from schemas import RawTick


def _payload() -> dict:
    return {"type": "trade", "ts": 5, "price": 10.5, "size": 3.0, "side": "buy", "trade_id": "1"}


def test_raw_tick_when_built_fast_then_identical_to_model_construct():
    fast = raw_tick("synthetic:7", 42, 5, 99, "SYN0", _payload())
    slow = RawTick.model_construct(
        schema_version=1, id="synthetic:7:42", ts_event=5, ts_ingest=99, source="synthetic:7",
        symbol="SYN0", payload_format="tapeflow.v1", payload=_payload(), seq=42,
    )
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.__pydantic_private__ == slow.__pydantic_private__


def test_raw_tick_when_serialized_then_round_trips_through_validation():
    tick = raw_tick("replay:x", 0, 1_700_000_000_000_000_000, 1_800_000_000_000_000_000, "BTCUSDT", _payload())
    again = RawTick.from_json(tick.to_json())
    assert again == tick
    assert orjson.loads(tick.to_json())["id"] == "replay:x:0"


def test_raw_tick_when_copied_with_update_then_original_untouched():
    tick = raw_tick("s", 1, 2, 3, "SYN0", _payload())
    copy = tick.model_copy(update={"seq": 9})
    assert copy.seq == 9 and tick.seq == 1
    assert "seq" in tick.__pydantic_fields_set__
