"""A poll decoded in bulk gives what decoding each message gives: the same records, in the same
order, and the same dead letters (reason and detail) for messages that do not decode."""

from __future__ import annotations

import math
import re

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import Aggressor, Quote, RawTick, Trade
from schemas.columns import RawTickBatch, TickBatch
from topics.column_codec import decode_ticks
from topics.serde import MAX_VALUE_BYTES, DecodeError, decode, encode

T0 = 1_704_205_800_000_000_000
text = st.text(alphabet=st.sampled_from(list('aZ9:"\\\x00\x1f\x7f\u2028é😀 ')), max_size=6)
price = st.one_of(st.floats(min_value=1e-9, max_value=1e9), st.sampled_from([100.0, 1e-7, 1e16, 3e300, 0.1]))
stamp = st.integers(0, 2**63 - 1)


@st.composite
def raw_tick(draw, seq: int):
    source = draw(st.sampled_from(["synthetic:7", "replay", 'odd"src']))
    ts = draw(stamp)
    if draw(st.booleans()):
        payload = {"type": "trade", "ts": ts, "price": draw(st.floats(allow_nan=False)), "size": draw(price),
                   "side": draw(st.sampled_from([None, "buy", "sell", "unknown"])), "trade_id": draw(text)}
    else:
        payload = {"type": "quote", "ts": ts, "bid": draw(price), "ask": draw(price), "bid_size": draw(price),
                   "ask_size": draw(st.floats(allow_nan=False))}
    return RawTick(id=f"{source}:{seq}", ts_event=ts, ts_ingest=draw(stamp), source=source,
                   symbol=draw(text.filter(bool)), payload=payload, seq=seq)


@st.composite
def trade(draw, seq: int):
    return Trade(id=draw(text.filter(bool)), ts_event=draw(stamp), ts_ingest=draw(stamp), symbol=draw(text.filter(bool)),
                 price=draw(price), size=draw(price), aggressor=draw(st.sampled_from(list(Aggressor))),
                 trade_id=draw(text.filter(bool)), source=draw(st.sampled_from(["s1", "s2"])), ts_tick_ingest=draw(stamp))


@st.composite
def quote(draw, seq: int):
    bid = draw(price)
    # a crossed or locked book too (the model refuses it, so it is built without validation)
    return Quote.model_construct(
        id=draw(text.filter(bool)), ts_event=draw(stamp), ts_ingest=draw(stamp), symbol=draw(text.filter(bool)),
        bid_price=bid, bid_size=draw(st.floats(min_value=0, max_value=1e12)), ask_price=bid * draw(st.floats(0.5, 2.0)),
        ask_size=draw(price), source="s1", ts_tick_ingest=draw(stamp))


RECORD = {"md.raw": raw_tick, "md.trades": trade, "md.quotes": quote}


def mutate(draw, record) -> bytes:
    """A message that may or may not decode, or fit the columns, made from a valid record."""
    data = orjson.loads(record.to_json())
    target = data["payload"] if "payload" in data and draw(st.booleans()) else data
    key = draw(st.sampled_from(sorted(target)))
    change = draw(st.sampled_from([
        "drop", "extra", "as_text", "huge_int", "int_for_float", "null", "nan_text", "reorder", "spaced",
        "not_json", "not_object", "escaped", "duplicate", "negative", "empty_text", "bool", "overflow", "float_int",
        "long_digits",
    ]))
    if change == "drop":
        del target[key]
    elif change == "extra":
        target["extra"] = 1
    elif change == "as_text":  # a price as a string, say
        target[key] = str(target[key])
    elif change == "huge_int":  # beyond any int64 or exact double; orjson cannot write it
        target[key] = "<huge>"
    elif change == "null":
        target[key] = None
    elif change == "negative":
        target[key] = -1 if isinstance(target[key], int) else -1.5
    elif change == "empty_text":
        target[key] = ""
    elif change == "bool":
        target[key] = True
    elif change == "float_int":  # an int field as a float
        target[key] = float(target[key]) if isinstance(target[key], int) and target[key] < 2**53 else target[key]
    elif change == "reorder":
        items = list(target.items())
        target.clear()
        target.update(reversed(items))
    value = orjson.dumps(data, option=orjson.OPT_INDENT_2 if change == "spaced" else 0)
    value = value.replace(b'"<huge>"', b"1" + b"0" * 30)
    if change == "int_for_float":  # 100.0 -> 100
        value = re.sub(rb"(\d)\.0([,}])", rb"\1\2", value, count=1)
    elif change == "nan_text":
        value = re.sub(rb":(-?\d[\d.e+-]*)", b":NaN", value, count=1)
    elif change == "overflow":
        value = re.sub(rb":(\d[\d.]*)([,}])", rb":1e400\2", value, count=1)
    elif change == "long_digits":  # a number no shortest-repr writer makes: rounding must still agree
        digits = draw(st.from_regex(r"[1-9][0-9]{0,24}\.[0-9]{1,25}(e-?[1-9][0-9]?)?", fullmatch=True))
        value = re.sub(rb":(\d+\.\d+)([,}])", b":" + digits.encode() + rb"\2", value, count=1)
    elif change == "not_json":
        value = value[: draw(st.integers(0, len(value) - 1))]
    elif change == "not_object":
        value = b"[" + value + b"]"
    elif change == "escaped":  # the same text, written with a JSON escape
        value = value.replace(b'"id":"', b'"id":"\\u0041', 1)
    elif change == "duplicate":
        value = value[:-1] + b"," + orjson.dumps({key: target.get(key, 1)})[1:]
    return value


@st.composite
def polls(draw, topic: str):
    values = []
    for seq in range(draw(st.integers(0, 30))):
        record = draw(RECORD[topic](seq))
        choice = draw(st.integers(0, 9))
        if choice < 6:
            values.append(encode(topic, record).value)  # what tapeflow's producers write
        elif choice < 9:
            values.append(mutate(draw, record))
        else:
            values.append(draw(st.sampled_from([None, b"", b"\xff\xfe", b"x" * (MAX_VALUE_BYTES + 1), b"null", b"{}"])))
    return values


def per_message(topic: str, values: list):
    """Today's path: each message decoded on its own, a DecodeError standing for its dead letter."""
    def one(i: int):
        try:
            return decode(topic, values[i])
        except DecodeError as err:
            return ("dead letter", i, err.reason, err.detail)
    return one


def flat(items: list) -> list:
    out = []
    for item in items:
        out.extend(item.to_records() if type(item) in (RawTickBatch, TickBatch) else [item])
    return out


def same(bulk: list, reference: list) -> bool:
    # NaN in a raw payload: compare what the wire and the warehouse see, the JSON
    def seen(item):
        return (type(item).__name__, item.model_dump_json()) if hasattr(item, "model_dump_json") else item
    return [seen(b) for b in bulk] == [seen(r) for r in reference] and all(
        b == r for b, r in zip(bulk, reference) if not _has_nan(r))


def _has_nan(item) -> bool:
    payload = getattr(item, "payload", None)
    return isinstance(payload, dict) and any(isinstance(v, float) and math.isnan(v) for v in payload.values())


@pytest.mark.parametrize("topic", ["md.raw", "md.trades", "md.quotes"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decode_ticks_when_any_poll_then_flattened_output_equals_the_per_message_path(topic, data):
    values = data.draw(polls(topic))
    one = per_message(topic, values)
    bulk = decode_ticks(topic, values, one)
    reference = [one(i) for i in range(len(values))]
    assert same(flat(bulk), reference)
    # batches hold runs of messages: two batches are never next to each other unless their sources differ
    for a, b in zip(bulk, bulk[1:]):
        if type(a) is RawTickBatch and type(b) is RawTickBatch:
            assert a.source != b.source
        assert not (type(a) is TickBatch and type(b) is TickBatch)


@pytest.mark.parametrize("topic", ["md.raw", "md.trades", "md.quotes"])
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_decode_ticks_when_every_message_is_the_serde_encoding_then_one_batch(topic, data):
    records = [data.draw(RECORD[topic](seq)) for seq in range(data.draw(st.integers(1, 20)))]
    if topic == "md.raw":  # one source, floats that msgspec writes as orjson does
        records = [r.model_copy(update={"source": "feed", "id": f"feed:{r.seq}"}) for r in records]
        records = [r for r in records if all(abs(v) < 1e16 for v in r.payload.values() if isinstance(v, float))]
    records = [r for r in records if type(r) is not Quote or r.bid_price < r.ask_price]  # valid quotes only
    values = [encode(topic, r).value for r in records]
    out = decode_ticks(topic, values, lambda i: pytest.fail(f"message {i} left the columns"))
    assert len(out) == (1 if records else 0)
    assert flat(out) == records


def test_decode_ticks_when_raw_sources_interleave_then_a_batch_per_run():
    ticks = [RawTick(id=f"{src}:{i}", ts_event=T0 + i, ts_ingest=T0, source=src, symbol="SYN0", seq=i,
                     payload={"type": "quote", "ts": T0 + i, "bid": 1.0, "ask": 2.0, "bid_size": 1.0, "ask_size": 1.0})
             for i, src in enumerate(["a", "a", "b", "a"])]
    values = [encode("md.raw", t).value for t in ticks]
    out = decode_ticks("md.raw", values, lambda i: pytest.fail("all fit"))
    assert [(b.source, len(b)) for b in out] == [("a", 2), ("b", 1), ("a", 1)]
    assert flat(out) == ticks


def test_decode_ticks_when_a_message_breaks_a_run_then_it_keeps_its_place():
    trades = [Trade(id=f"t{i}", ts_event=T0 + i, ts_ingest=T0, symbol="SYN0", price=10.0 + i, size=1.0, trade_id=str(i),
                    source="s", ts_tick_ingest=T0) for i in range(4)]
    values = [encode("md.trades", t).value for t in trades]
    values[2] = b"not json"
    out = decode_ticks("md.trades", values, per_message("md.trades", values))
    assert [type(o).__name__ for o in out] == ["TickBatch", "tuple", "TickBatch"]
    assert out[1][:3] == ("dead letter", 2, "not_json")
    assert flat([out[0], out[2]]) == [trades[0], trades[1], trades[3]]
    assert out[0].ids.tolist() == ["t0", "t1"] and out[2].seq.tolist() == [-1]


def test_decode_ticks_when_not_a_tick_topic_then_refused():
    with pytest.raises(ValueError, match="md.bars"):
        decode_ticks("md.bars", [b"{}"], lambda i: None)
