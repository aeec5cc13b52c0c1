"""The typed topic client over the real broker: what a user's producer sends, a user's consumer (in a
group of its own) reads back as the same records, markers apart; commit() makes a restart resume."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Producer

from feeds import make_feed
from topics.catalog import spec
from topics.client import RecordConsumer, RecordProducer
from topics.end_of_tape import FEED, publish_end_of_tape

pytestmark = pytest.mark.integration
RAW_PARTITIONS = spec("md.raw").partitions


def poll_until(consumer: RecordConsumer, count: int, timeout_s: float = 60.0, batch: int = 10_000) -> list:
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} records within {timeout_s} s"
        got += consumer.poll(0.5, max_records=batch)
    return got


def test_client_when_a_user_feeds_md_raw_then_a_group_consumer_reads_the_same_ticks_once_across_a_restart(
        kafka_topics):
    ticks = list(make_feed("synthetic", seed=7, max_ticks=500).ticks())
    with RecordProducer(kafka_topics.bootstrap, prefix=kafka_topics.prefix) as producer:
        for tick in ticks:
            producer.send("md.raw", tick)
    assert producer.delivered == len(ticks)
    publish_end_of_tape(Producer({"bootstrap.servers": kafka_topics.bootstrap}), ["md.raw"], "t7", FEED,
                        stages=("sink",), prefix=kafka_topics.prefix)
    group = f"user-{uuid.uuid4().hex[:8]}"

    first = RecordConsumer(kafka_topics.bootstrap, ["md.raw"], group=group, prefix=kafka_topics.prefix)
    try:
        head = poll_until(first, 200, batch=50)
        first.commit()
    finally:
        first.close()
    second = RecordConsumer(kafka_topics.bootstrap, ["md.raw"], group=group, prefix=kafka_topics.prefix)
    try:
        rest = poll_until(second, len(ticks) - len(head))
        deadline = time.monotonic() + 10
        while len(first.markers + second.markers) < RAW_PARTITIONS and time.monotonic() < deadline:
            rest += second.poll(0.5)
    finally:
        second.close()
    assert sorted(d.record.id for d in head + rest) == sorted(t.id for t in ticks), "every tick once, as sent"
    markers = first.markers + second.markers
    assert sorted(m.partition for m in markers) == list(range(RAW_PARTITIONS)), "one marker per partition, no record"
    assert {m.tape for m in markers} == {"t7"} and all(d.topic == "md.raw" for d in head + rest)
