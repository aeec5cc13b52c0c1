"""The consumer-group sink when offsets come back after a member died before committing them:
the batch log makes the next member insert the same batches under the same tokens (no Kafka needed:
the sink's batches are fed as Quix Streams feeds them)."""

from __future__ import annotations

import pytest
from quixstreams.sinks import SinkBackpressureError

from feeds import make_feed
from sinks.group_sink import GroupWarehouseSink
from sinks.writer import BatchingWriter, WarehouseWriteError
from topics.kafka_records import KafkaEndpoint
from topics.serde import encode

pytestmark = pytest.mark.integration

MESSAGES = [encode("md.raw", tick) for tick in make_feed("synthetic", seed=3, max_ticks=300).ticks()]


def member(warehouse, inserter=None) -> GroupWarehouseSink:
    inserter = inserter or warehouse
    return GroupWarehouseSink(warehouse, BatchingWriter(inserter, "r", retries=0), KafkaEndpoint(("unused",)), "g")


def feed(sink: GroupWarehouseSink, start: int, stop: int) -> None:
    for offset in range(start, stop):
        m = MESSAGES[offset]
        sink.add(m.value, m.key, 1_000, list(m.headers), "md.raw", 0, offset)


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


def test_redelivered_batch_when_read_short_of_a_logged_batch_then_backpressure_and_nothing_inserted(warehouse):
    first = member(warehouse, RefusingRawInserts(warehouse))
    feed(first, 0, 200)
    with pytest.raises(WarehouseWriteError):
        first.flush()

    second = member(warehouse)
    feed(second, 0, 120)  # the logged batch ends at 199: inserting 0-119 under its token would lose 120-199
    with pytest.raises(SinkBackpressureError):
        second.flush()
    assert landed(warehouse) == (0, 0)

    feed(second, 0, 300)  # Quix Streams reads the partition again from the committed offset
    second.flush()
    assert landed(warehouse) == (300, 300)
