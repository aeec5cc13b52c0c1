"""Tape watermarks (market/tape_watermarks.py, topics/tape_watermark.py): made after the records they
vouch for, once per symbol per bar boundary, and read back from Kafka messages in their place."""

from __future__ import annotations

import pytest

from market.tape_watermarks import TapeWatermarks
from schemas import DeadLetter, Quote, TapeWatermark, Trade
from schemas.columns import TickBatch
from tests.unit.kafka_message import PolledMessage as Message
from topics.kafka_records import KafkaEndpoint, decoder
from topics.serde import encode
from topics.tape_watermark import TAPE_WATERMARK_HEADER, read_tape_watermark, watermark_message

S = 1_000_000_000
MS = 1_000_000
LATENESS = 500 * MS


def trade(ms: int, symbol: str = "SYN0") -> Trade:
    return Trade(id=f"t{symbol}{ms}", ts_event=100 * S + ms * MS, ts_ingest=1, ts_tick_ingest=1, source="test",
                 symbol=symbol, price=100.0, size=1.0, aggressor="buy", trade_id=f"{symbol}{ms}")


def quote(ms: int, symbol: str = "SYN0") -> Quote:
    return Quote(id=f"q{symbol}{ms}", ts_event=100 * S + ms * MS, ts_ingest=1, ts_tick_ingest=1, source="test",
                 symbol=symbol, bid_price=99.0, bid_size=1.0, ask_price=101.0, ask_size=1.0)


def watermarks_in(pairs: list) -> list[tuple[str, TapeWatermark]]:
    return [(topic, r) for topic, r in pairs if type(r) is TapeWatermark]


def test_watermarks_when_a_symbol_passes_a_bar_boundary_plus_lateness_then_one_pair_after_its_records():
    made = TapeWatermarks(S, LATENESS)
    first = made.after([("md_trades", trade(0)), ("md_quotes", quote(100))])  # bound 99.6 s: passes 99 s
    assert [r.bound for _, r in watermarks_in(first)] == [99 * S + 600 * MS] * 2
    before = made.after([("md_trades", trade(1_400))])  # bound 100.9 s: passes 100 s
    assert watermarks_in(before) == [("md.trades", TapeWatermark("SYN0", 100 * S + 900 * MS, "trade")),
                                     ("md.quotes", TapeWatermark("SYN0", 100 * S + 900 * MS, "quote"))]
    assert before[0] == ("md_trades", trade(1_400)), "the records first, then what vouches for them"
    assert watermarks_in(made.after([("md_quotes", quote(1_450))])) == [], "100 s is passed already"
    assert watermarks_in(made.after([("md_trades", trade(1_200))])) == [], "an older event moves nothing"
    passed = watermarks_in(made.after([("md_quotes", quote(1_501)), ("md_trades", trade(1_520))]))
    assert passed == [("md.trades", TapeWatermark("SYN0", 101 * S + 20 * MS, "trade")),
                      ("md.quotes", TapeWatermark("SYN0", 101 * S + 20 * MS, "quote"))]


def test_watermarks_when_the_bound_reaches_the_boundary_exactly_then_not_yet_passed():
    """A cross-section at T is final only below a bound above T: an event at T may still come."""
    made = TapeWatermarks(S, LATENESS)
    made.after([("md_trades", trade(0))])
    assert watermarks_in(made.after([("md_trades", trade(1_500))])) == [
        ("md.trades", TapeWatermark("SYN0", 101 * S, "trade")),
        ("md.quotes", TapeWatermark("SYN0", 101 * S, "quote"))]  # passes 100 s, not 101 s
    assert watermarks_in(made.after([("md_trades", trade(1_501))]))[0][1].bound == 101 * S + MS


def test_watermarks_when_a_batch_holds_several_symbols_then_each_symbols_own_newest():
    made = TapeWatermarks(S, LATENESS)
    batch = TickBatch.from_records([trade(1_600, "SYN1"), quote(1_300, "SYN0"), trade(1_700, "SYN0"),
                                    quote(1_650, "SYN1")])
    dead = DeadLetter(id="d", ts_event=1, ts_ingest=1, source_topic="md.raw", stage="normalize", reason="late",
                      payload="{}")
    out = made.after([("md_trades", batch), ("dlq", dead)])
    assert watermarks_in(out) == [
        ("md.trades", TapeWatermark("SYN0", 101 * S + 200 * MS, "trade")),
        ("md.quotes", TapeWatermark("SYN0", 101 * S + 200 * MS, "quote")),
        ("md.trades", TapeWatermark("SYN1", 101 * S + 150 * MS, "trade")),
        ("md.quotes", TapeWatermark("SYN1", 101 * S + 150 * MS, "quote"))]


def test_watermarks_when_interval_is_not_positive_then_refused():
    with pytest.raises(ValueError, match="interval_ns"):
        TapeWatermarks(0, LATENESS)


def test_decoder_when_a_poll_holds_a_tape_watermark_then_it_keeps_its_place_between_the_records_or_batches():
    endpoint = KafkaEndpoint(("127.0.0.1:1",), "p.")
    key, value, headers = watermark_message(TapeWatermark("SYN0", 123, "quote"))
    quotes = [encode("md.quotes", quote(ms)) for ms in range(12)]
    messages = [Message(topic="p.md.quotes", partition=0, offset=i, key=m.key, value=m.value,
                        headers=list(m.headers)) for i, m in enumerate(quotes[:6])]
    messages.append(Message(topic="p.md.quotes", partition=0, offset=6, key=key, value=value, headers=headers))
    messages += [Message(topic="p.md.quotes", partition=0, offset=7 + i, key=m.key, value=m.value,
                         headers=list(m.headers)) for i, m in enumerate(quotes[6:])]
    for columnar in (False, True):
        out = decoder(endpoint, "trading", with_topic=False, columnar=columnar)(messages, [])
        flat = [r for item in out for r in (item.to_records() if type(item) is TickBatch else [item])]
        assert flat == [*(quote(ms) for ms in range(6)), TapeWatermark("SYN0", 123, "quote"),
                        *(quote(ms) for ms in range(6, 12))], f"columnar={columnar}"
    assert decoder(endpoint, "sink", with_topic=True)(messages[6:7], []) == [
        ("md.quotes", TapeWatermark("SYN0", 123, "quote"))]


def test_read_tape_watermark_when_the_stream_comes_from_the_topic_and_a_bad_value_is_none():
    key, value, headers = watermark_message(TapeWatermark("SYN3", 7, "quote"))
    assert key == b"SYN3" and headers == [(TAPE_WATERMARK_HEADER, b"1")]
    assert read_tape_watermark("md.trades", headers, value) == TapeWatermark("SYN3", 7, "trade")
    assert read_tape_watermark("md.bars", headers, value) is None  # no watermarks on other topics
    assert read_tape_watermark("md.trades", [], value) is None
    assert read_tape_watermark("md.trades", headers, b'{"tape_watermark": "7", "symbol": "SYN3"}') is None
    assert read_tape_watermark("md.trades", headers, b"not json") is None


def test_decoder_when_the_header_has_no_watermark_value_then_a_dead_letter():
    endpoint = KafkaEndpoint(("127.0.0.1:1",), "p.")
    bad = Message(topic="p.md.trades", partition=0, offset=3, key=b"SYN0", value=b'{"symbol": "SYN0"}',
                  headers=[(TAPE_WATERMARK_HEADER, b"1")])
    (dead,) = decoder(endpoint, "trading", with_topic=False)([bad], [])
    assert type(dead) is DeadLetter and dead.source_topic == "md.trades"
