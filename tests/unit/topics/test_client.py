"""The topic client's contract without a broker: records are checked against the catalog before
anything is sent, and Quix Streams topics carry the stages' exact bytes, keys and headers."""

from __future__ import annotations

import pytest

from feeds import make_feed
from topics.client import RecordConsumer, RecordProducer, record_headers, record_key, record_serdes
from tests.unit.kafka_message import PolledMessage
from topics.serde import DecodeError, encode

TICK = next(iter(make_feed("synthetic", seed=1, max_ticks=1).ticks()))


def test_producer_when_a_record_of_another_topic_is_sent_then_type_error_before_anything_is_queued():
    producer = RecordProducer("127.0.0.1:1")  # no broker needed: nothing may reach the queue
    with pytest.raises(TypeError, match="topic md.trades carries Trade, not RawTick"):
        producer.send("md.trades", TICK)
    assert producer.sent == 0


def test_consumer_when_a_topic_is_not_in_the_catalog_then_key_error_naming_the_catalog():
    with pytest.raises(KeyError, match="unknown topic 'md.ticks'; the catalog has: md.raw"):
        RecordConsumer("127.0.0.1:1", ["md.ticks"], group="g")


def test_quix_serdes_when_a_record_round_trips_then_the_stages_bytes_key_and_headers():
    from quixstreams.models.serializers import MessageField, SerializationContext

    serializer, deserializer = record_serdes("md.raw")
    message = encode("md.raw", TICK)
    ctx = SerializationContext("p.md.raw", MessageField.VALUE, headers=list(message.headers))
    assert serializer(TICK, ctx) == message.value
    assert deserializer(message.value, ctx) == TICK
    assert record_key("md.raw")(TICK) == message.key.decode()
    assert record_headers("md.raw")(TICK, None, 0, []) == list(message.headers)
    with pytest.raises(DecodeError, match="not_json"):
        deserializer(b"{oops", ctx)
    with pytest.raises(TypeError, match="topic md.raw carries RawTick"):
        record_serdes("md.raw")[0](object(), ctx)


def test_consumer_when_an_end_of_tape_marker_is_polled_then_kept_out_of_the_records_and_listed():
    from topics.end_of_tape import END_OF_TAPE_KEY, EndOfTape

    consumer = RecordConsumer("127.0.0.1:1", ["md.raw"], group="g", prefix="p.")
    message = encode("md.raw", TICK)
    marker = EndOfTape("tape-1", "feed", "md.raw", 0, 1, ("md.raw",), ("market", "sink"))
    polled = [PolledMessage(0, topic="p.md.raw", value=message.value, key=message.key, headers=list(message.headers)),
              PolledMessage(1, topic="p.md.raw", value=marker.value(), key=END_OF_TAPE_KEY, headers=marker.headers()),
              PolledMessage(2, topic="p.md.raw", value=b"{oops", key=message.key, headers=list(message.headers))]
    consumer.close()

    class Fetched:  # what the broker would have handed the consumer
        def consume(self, n, timeout):
            return polled

    consumer._consumer = Fetched()
    deliveries = consumer.poll(0)
    assert [(d.topic, d.offset) for d in deliveries] == [("md.raw", 0), ("md.raw", 2)]
    assert deliveries[0].record == TICK and type(deliveries[1].record).__name__ == "DeadLetter"
    assert [(m.tape, m.stage, m.offset) for m in consumer.markers] == [("tape-1", "feed", 1)]


def test_quix_deserializer_when_an_end_of_tape_marker_arrives_then_it_is_the_marker_not_a_record():
    from quixstreams.models.serializers import MessageField, SerializationContext

    from topics.end_of_tape import EndOfTape

    marker = EndOfTape("tape-1", "market", "features", 3, 4, ("features", "dlq"), ("market", "trading", "sink"))
    ctx = SerializationContext("p.features", MessageField.VALUE, headers=marker.headers())
    assert record_serdes("features")[1](marker.value(), ctx) == marker
    with pytest.raises(DecodeError):  # the header on a value that is no marker: still said, never skipped
        record_serdes("features")[1](b'{"end_of_tape": 1}', ctx)
