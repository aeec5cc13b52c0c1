"""The consumer-group sink when offsets come back after a member died before committing them:
the batch log makes the next member insert the same batches whole under the same tokens. The
sink's checkpoints are fed as Quix Streams feeds them; what a logged batch holds beyond a
checkpoint is read from the real broker."""

from __future__ import annotations

import pytest
from quixstreams.sinks import SinkBackpressureError

from feeds import make_feed
from sinks.group_sink import GroupWarehouseSink, SinkStalled
from sinks.offset_reader import KafkaOffsetReader
from sinks.writer import BatchingWriter, WarehouseWriteError
from topics.kafka_records import KafkaEndpoint
from topics.serde import encode

pytestmark = pytest.mark.integration

MESSAGES = [encode("md.raw", tick) for tick in make_feed("synthetic", seed=3, max_ticks=300).ticks()]


def member(warehouse, inserter=None, endpoint=KafkaEndpoint(("unused",)), reader=None) -> GroupWarehouseSink:
    inserter = inserter or warehouse
    return GroupWarehouseSink(warehouse, BatchingWriter(inserter, "r", retries=0), endpoint, "g", reader=reader)


def feed(sink: GroupWarehouseSink, start: int, stop: int, prefix: str = "") -> None:
    for offset in range(start, stop):
        m = MESSAGES[offset]
        sink.add(m.value, m.key, 1_000, list(m.headers), prefix + "md.raw", 0, offset)


@pytest.fixture
def raw_topic(kafka_topics) -> KafkaEndpoint:
    """MESSAGES in partition 0 of the real md.raw topic under a prefix of this test's own, at offsets 0..299."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_topics.bootstrap, "enable.idempotence": True})
    for m in MESSAGES:
        producer.produce(kafka_topics.name("md.raw"), m.value, m.key, partition=0, headers=list(m.headers))
    assert producer.flush(30) == 0
    return KafkaEndpoint((kafka_topics.bootstrap,), kafka_topics.prefix)


def landed(warehouse) -> tuple[int, int]:
    return warehouse.query("SELECT count(), uniqExact(id) FROM md_raw WHERE run_id = 'r'").rows[0]


class RefusingRawInserts:
    """The writer's side of a member that dies mid-write: every row insert fails (the batch log,
    written through the warehouse itself, is already in)."""

    def __init__(self, warehouse):
        self._warehouse = warehouse

    def insert_arrow(self, table, arrow_table, *, dedup_token=None):
        raise ConnectionError("the member died")


def test_redelivered_batch_when_it_had_landed_then_dropped_and_the_rest_inserted(warehouse):
    first = member(warehouse)
    feed(first, 0, 100)
    first.flush()  # landed; the member dies before its offsets are committed

    second = member(warehouse)
    feed(second, 0, 250)  # the next member's checkpoint falls elsewhere
    second.flush()

    assert landed(warehouse) == (250, 250)
    assert (second.messages_landed, second.messages_relanded) == (250, 100)


def test_redelivered_batch_when_it_had_not_landed_then_inserted_once(warehouse):
    first = member(warehouse, RefusingRawInserts(warehouse))
    feed(first, 0, 100)
    with pytest.raises(WarehouseWriteError, match="the member died"):
        first.flush()
    assert landed(warehouse) == (0, 0)

    second = member(warehouse)
    feed(second, 0, 150)
    second.flush()
    assert landed(warehouse) == (150, 150)


def test_redelivered_batch_when_the_checkpoint_stops_inside_a_logged_batch_that_had_not_landed_then_its_rest_is_read_from_kafka(
        warehouse, raw_topic, caplog):
    prefix = raw_topic.prefix
    first = member(warehouse, RefusingRawInserts(warehouse), raw_topic)
    feed(first, 0, 200, prefix)
    with pytest.raises(WarehouseWriteError):
        first.flush()  # logged 0-199, nothing landed

    second = member(warehouse, endpoint=raw_topic)
    feed(second, 0, 120, prefix)  # a loaded machine's checkpoint: far short of the logged batch
    second.flush()  # lands 0-199 whole, reading 120-199 from the broker; Quix Streams commits 0-119
    assert landed(warehouse) == (200, 200)
    assert "80 of its messages read from Kafka beyond this checkpoint's" in caplog.text

    feed(second, 120, 300, prefix)  # the next checkpoint starts inside the batch it landed whole
    second.flush()
    assert landed(warehouse) == (300, 300)
    assert (second.messages_landed, second.messages_relanded) == (300, 200)


def test_redelivered_batch_when_the_checkpoint_stops_inside_a_logged_batch_that_had_landed_then_dropped_whole(
        warehouse, raw_topic):
    prefix = raw_topic.prefix
    first = member(warehouse, endpoint=raw_topic)
    feed(first, 0, 200, prefix)
    first.flush()  # landed; the member dies before its offsets are committed

    second = member(warehouse, endpoint=raw_topic)
    feed(second, 0, 50, prefix)
    second.flush()
    third = member(warehouse, endpoint=raw_topic)  # a rebalance: another member starts inside the batch
    feed(third, 50, 300, prefix)
    third.flush()  # reads 0-49 from Kafka and inserts 0-199 whole under its token: dropped
    assert landed(warehouse) == (300, 300)


def test_redelivered_batch_when_kafka_cannot_be_read_then_backpressure_a_few_times_then_stalled_with_the_reason(
        warehouse, caplog):
    first = member(warehouse, RefusingRawInserts(warehouse))
    feed(first, 0, 200)
    with pytest.raises(WarehouseWriteError):
        first.flush()

    second = member(warehouse, reader=KafkaOffsetReader(("127.0.0.1:1",), timeout_s=0.3))  # no broker there
    for attempt in range(4):
        feed(second, 0, 120)
        with pytest.raises(SinkBackpressureError):
            second.flush()
    feed(second, 0, 120)
    with pytest.raises(SinkStalled, match=r"cannot read md.raw\[0\] offsets 120-199 .* after 5 attempts"):
        second.flush()
    assert "attempt 4 of 5" in caplog.text
    assert landed(warehouse) == (0, 0)


def test_redelivered_batch_when_its_rest_read_from_kafka_holds_an_end_of_tape_marker_then_told_only_once_its_checkpoint_comes(
        warehouse, kafka_topics):
    """The tape may end the run once a marker is told; Quix Streams commits no further than the
    checkpoint, so a marker read beyond it waits for the checkpoint that holds it."""
    from confluent_kafka import Producer

    from sinks.offset_reader import KafkaOffsetReader
    from topics.end_of_tape import FEED, RunTapeEnds, publish_end_of_tape

    producer = Producer({"bootstrap.servers": kafka_topics.bootstrap, "enable.idempotence": True})
    for m in MESSAGES[:200]:
        producer.produce(kafka_topics.name("md.raw"), m.value, m.key, partition=0, headers=list(m.headers))
    publish_end_of_tape(producer, ["md.raw"], "tape-r", FEED, stages=("sink",), prefix=kafka_topics.prefix)  # offset 200
    topic = kafka_topics.name("md.raw")
    on_kafka = KafkaOffsetReader((kafka_topics.bootstrap,)).read({(topic, 0): (0, 200)})[(topic, 0)]
    assert len(on_kafka) == 201

    def feed_from_kafka(sink, start, stop):
        for m in on_kafka[start:stop]:
            sink.add(m.value(), m.key(), 1_000, m.headers() or [], topic, 0, m.offset())

    endpoint = KafkaEndpoint((kafka_topics.bootstrap,), kafka_topics.prefix)
    first = GroupWarehouseSink(warehouse, BatchingWriter(RefusingRawInserts(warehouse), "r", retries=0), endpoint, "g")
    feed_from_kafka(first, 0, 201)
    with pytest.raises(WarehouseWriteError):
        first.flush()  # logged 0-200, the marker included

    tape = RunTapeEnds()
    second = GroupWarehouseSink(warehouse, BatchingWriter(warehouse, "r", retries=0), endpoint, "g", tape)
    feed_from_kafka(second, 0, 120)
    second.flush()  # 0-200 landed whole; the marker at 200 was read from Kafka, not handed over
    assert landed(warehouse) == (200, 200)
    assert not any(partition == 0 for *_, partition in tape.seen)

    feed_from_kafka(second, 120, 201)
    second.flush()
    assert {s for s in tape.seen if s[3] == 0} == {("tape-r", FEED, "md.raw", 0)}, tape.seen
    assert landed(warehouse) == (200, 200)
