"""A column batch's Kafka messages are the serde's messages of its records, byte for byte."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Quote, RawTick, Trade
from schemas.columns import QUOTE, TRADE, RawTickBatch, TickBatch
from tests.unit.schemas.test_columns import raw_ticks
from topics import column_encode
from topics.column_encode import encode_batch
from topics.serde import encode

TOPIC_OF = {RawTick: "md.raw", Trade: "md.trades", Quote: "md.quotes"}

# text a JSON encoder must escape or pass through untouched: quotes, backslashes, control
# characters, DEL, U+2028, non-ASCII, astral planes
tricky_text = st.text(alphabet=st.sampled_from(list('aZ9:/"\\\x00\x1f\x7f\u2028é😀\t\n ')), max_size=8)
# doubles of every magnitude and notation (1e-7, 1e16, subnormals), NaN and infinities
any_float = st.one_of(st.floats(), st.sampled_from([100.0, 1e-7, 1e16, 1e22, -0.0, 5e-324, 0.1, 2.0**63]))


def serde_messages(batch) -> list:
    return [encode(TOPIC_OF[type(r)], r) for r in batch.to_records()]


# Small batches are written by orjson row by row, large ones by Polars: both paths, whatever the size
paths = pytest.mark.parametrize("small_batch", [0, 10**9], ids=["polars", "orjson"])


@paths
@settings(max_examples=100, deadline=None)
@given(ticks=raw_ticks(), source=st.sampled_from(["src", "synthetic:7", 'odd "source" \\ é']))
def test_raw_batch_when_encoded_in_bulk_then_every_message_is_the_serde_message_of_its_record(small_batch, ticks, source):
    ticks = [t.model_copy(update={"source": source, "id": f"{source}:{t.seq}"}) for t in ticks]
    batch = RawTickBatch.from_records(ticks)
    with patch.object(column_encode, "SMALL_BATCH", small_batch):
        assert encode_batch(batch).messages() == serde_messages(batch)


@st.composite
def tick_batches(draw):
    n = draw(st.integers(0, 25))
    symbols = tuple(draw(st.lists(tricky_text.filter(bool), min_size=1, max_size=3, unique=True)))
    sources = tuple(draw(st.lists(tricky_text.filter(bool), min_size=1, max_size=2, unique=True)))
    kind = np.array(draw(st.lists(st.sampled_from([TRADE, QUOTE]), min_size=n, max_size=n)), np.int8)
    trade = kind == TRADE

    def floats():
        return np.array(draw(st.lists(any_float, min_size=n, max_size=n)), np.float64)

    def codes(size: int, dtype) -> np.ndarray:
        return np.array(draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n)), dtype)

    def stamps():
        return np.array(draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n)), np.int64)

    trade_id = np.empty(n, dtype=object)
    trade_id[:] = [draw(tricky_text) if t else None for t in trade]
    ids = None
    if draw(st.booleans()):  # decoded from Kafka: the messages' own ids
        ids = np.empty(n, dtype=object)
        ids[:] = draw(st.lists(tricky_text.filter(bool), min_size=n, max_size=n))
    return TickBatch(
        symbols=symbols, symbol=codes(len(symbols), np.int32), sources=sources, source=codes(len(sources), np.int32),
        kind=kind, seq=np.array(draw(st.lists(st.integers(-1, 10**6), min_size=n, max_size=n)), np.int64),
        ts_event=stamps(), ts_ingest=stamps(), ts_tick_ingest=stamps(),
        price=np.where(trade, floats(), np.nan), size=np.where(trade, floats(), np.nan),
        aggressor=np.where(trade, codes(3, np.int8), 0).astype(np.int8),
        trade_id=trade_id, bid=np.where(trade, np.nan, floats()), ask=np.where(trade, np.nan, floats()),
        bid_size=np.where(trade, np.nan, floats()), ask_size=np.where(trade, np.nan, floats()), ids=ids,
    )


@paths
@settings(max_examples=100, deadline=None)
@given(batch=tick_batches())
def test_tick_batch_when_encoded_in_bulk_then_trades_and_quotes_go_to_their_topics_as_the_serde_writes_them(
        small_batch, batch):
    with patch.object(column_encode, "SMALL_BATCH", small_batch):
        encoded = encode_batch(batch)
    assert encoded.messages() == serde_messages(batch)
    assert encoded.topic == ["md.trades" if k == TRADE else "md.quotes" for k in batch.kind]


def test_encode_batch_when_not_a_batch_then_type_error():
    with pytest.raises(TypeError, match="Trade"):
        encode_batch(Trade(id="t", ts_event=1, ts_ingest=1, symbol="A", price=1.0, size=1.0, trade_id="1", source="s",
                           ts_tick_ingest=1))


def test_encode_batch_when_empty_then_no_message():
    assert len(encode_batch(TickBatch.empty())) == 0
