"""Every record type through a real broker: encode, produce, consume, decode, equal."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from tests.kafka_fixtures import consume_messages
from tests.unit.schemas.test_records import every_record
from tests.unit.topics.test_catalog_and_serde import TOPIC_OF
from topics.serde import HEADER_SCHEMA, HEADER_TS_INGEST, HEADER_VERSION, decode, encode

pytestmark = pytest.mark.integration


def test_every_record_when_produced_and_consumed_then_decodes_equal_with_key_and_headers(kafka_topics):
    records = every_record()
    producer = Producer({"bootstrap.servers": kafka_topics.bootstrap, "enable.idempotence": True})
    errors = []
    for record in records:
        message = encode(TOPIC_OF[type(record).__name__], record)
        producer.produce(kafka_topics.name(message.topic), message.value, message.key, headers=list(message.headers),
                         on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(15) == 0 and errors == []

    received_by_topic = {}
    for record in records:
        topic = TOPIC_OF[type(record).__name__]
        if topic not in received_by_topic:
            expected = sum(TOPIC_OF[type(r).__name__] == topic for r in records)
            received_by_topic[topic] = consume_messages(kafka_topics.bootstrap, kafka_topics.name(topic), expected)
        received = received_by_topic[topic]
        decoded = [decode(topic, m.value()) for m in received]
        assert record in decoded, f"{type(record).__name__} did not come back equal from {topic}"
        message = received[decoded.index(record)]
        assert message.key() == encode(topic, record).key
        headers = dict(message.headers())
        assert headers[HEADER_SCHEMA] == type(record).__name__.encode()
        assert headers[HEADER_VERSION] == b"1"
        assert int(headers[HEADER_TS_INGEST]) == record.ts_ingest
