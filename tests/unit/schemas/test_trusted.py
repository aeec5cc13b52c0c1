"""Specs for schemas.trusted: the fast constructor builds exactly what model_construct builds."""

from __future__ import annotations

import pickle

from pydantic import BaseModel, Field

from schemas.trusted import trusted_constructor
from schemas import Aggressor, Bar, DeadLetter, Quote, Trade

TRADE_VALUES = {
    "schema_version": 1, "id": "synth:AAPL:t:1", "ts_event": 10, "ts_ingest": 20, "symbol": "AAPL",
    "price": 100.5, "size": 2.0, "aggressor": Aggressor.BUY, "trade_id": "1", "source": "synth",
    "ts_tick_ingest": 20,
}


def test_trusted_constructor_when_all_fields_given_then_identical_to_model_construct():
    fast = trusted_constructor(Trade)(dict(TRADE_VALUES))
    slow = Trade.model_construct(**TRADE_VALUES)
    assert type(fast) is Trade
    assert fast == slow and hash(fast) == hash(slow)
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.to_json() == slow.to_json() == Trade(**TRADE_VALUES).to_json()
    assert fast.model_extra is None
    assert pickle.loads(pickle.dumps(fast)) == fast


def test_trusted_records_of_frozen_model_when_copied_with_update_then_original_untouched():
    first = trusted_constructor(Trade)(dict(TRADE_VALUES))
    second = trusted_constructor(Trade)(dict(TRADE_VALUES))
    copy = first.model_copy(update={"price": 1.0})
    assert copy.price == 1.0 and first.price == 100.5
    assert first.model_fields_set == second.model_fields_set == set(Trade.model_fields)
    assert copy.model_fields_set is not first.model_fields_set


def test_trusted_records_of_mutable_model_when_built_then_each_owns_its_fields_set():
    class Mutable(BaseModel):
        a: int
        b: int = 0

    construct = trusted_constructor(Mutable)
    first, second = construct({"a": 1, "b": 2}), construct({"a": 3, "b": 4})
    first.a = 5
    assert first.model_fields_set is not second.model_fields_set
    assert first == Mutable(a=5, b=2)


def test_trusted_constructor_when_model_has_aliases_then_falls_back_to_model_construct():
    class Aliased(BaseModel):
        value: int = Field(alias="v")

    record = trusted_constructor(Aliased)({"v": 3})
    assert record.value == 3


def test_trusted_constructor_when_used_for_hot_path_models_then_fast_path_selected():
    for model in (Trade, Quote, Bar, DeadLetter):
        assert trusted_constructor(model).__name__ == "construct"
