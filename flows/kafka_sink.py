"""The Kafka producer of a split-topology stage: ``(topic, record)`` pairs out, keyed as the catalog
says, flushed at each epoch's end before its input offsets are committed (at-least-once; consumers
deduplicate, see README "Effectively-once")."""

from __future__ import annotations

import threading
from itertools import repeat
from typing import Callable

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.operators import KeyedStream, StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaException, Producer

from schemas import TapeWatermark
from schemas.columns import RawTickBatch, TickBatch
from topics.catalog import TOPICS, table_name
from topics.column_encode import encode_batch
from topics.kafka_records import CLIENT_CONFIG, KafkaEndpoint
from topics.serde import encode
from topics.tape_watermark import watermark_message


def _delivery_failed(err, msg) -> None:
    """A delivery report: raise on a failure so the producer's poll or flush fails the stage (which
    resumes from its snapshot) instead of Bytewax's sink dropping the message without a word."""
    if err is not None:
        raise KafkaException(err)


PRODUCER_CONFIG = {
    "enable.idempotence": "true",
    "compression.type": "lz4",
    "linger.ms": "0",  # most stage outputs are sparse (a burst per bar): each waits for nothing
    "batch.num.messages": "10000",
    # how long a message may wait for an absent broker (librdkafka's default, stated): past it the
    # delivery fails and the stage stops rather than lose it
    "message.timeout.ms": "300000",
    "on_delivery": _delivery_failed,
    **CLIENT_CONFIG,
}

TOPIC_OF_TABLE = {table_name(t.name): t.name for t in TOPICS}


PRODUCER_KEY = "kafka"  # the producing step's one key


# A stage that republishes the tape (normalize) waits up to this long to batch its messages: a
# produce request per few ticks made the broker the busiest process at 5,000 ticks/s.
DENSE_LINGER_MS = 2


def produce(step_id: str, up: Stream, endpoint: KafkaEndpoint, dense: bool = False,
            at_end: Callable[[Producer], None] | None = None) -> None:
    """Write ``(topic, record)`` pairs (catalog names, or warehouse table names) to Kafka, keyed
    as the catalog says, with the schema headers. A TickBatch or RawTickBatch in place of a record
    is written as one message per row (each trade to md.trades, each quote to md.quotes, each raw
    tick to md.raw, whatever its pair's topic), encoded in bulk from its columns. ``dense``: a
    stage that writes the tape itself (every tick), whose messages are batched for up to
    :data:`DENSE_LINGER_MS`. ``at_end``: called with the producer at the end of the stage's input,
    once everything before it is delivered (the stage's end-of-tape markers go out there)."""
    full_name = {name: endpoint.topic(topic) for table, topic in TOPIC_OF_TABLE.items() for name in (table, topic)}
    _kafka_output(step_id, op.flat_map_batch(f"{step_id}_encode", up, lambda batch: to_messages(batch, full_name)),
                  list(endpoint.brokers), DENSE_LINGER_MS if dense else None, at_end)


def to_messages(pairs: list, full_name: dict[str, str]) -> list[tuple]:
    """``(topic or table, record or batch)`` pairs -> the producing step's ``(PRODUCER_KEY,
    (full topic, key, value, headers))`` items, in order."""
    out = []
    for topic, record in pairs:
        if type(record) is TickBatch or type(record) is RawTickBatch:
            # Kafka carries one JSON record per message, whatever form the stage worked in
            messages = encode_batch(record)
            out.extend(zip(repeat(PRODUCER_KEY), zip(map(full_name.__getitem__, messages.topic), messages.key,
                                                     messages.value, messages.headers)))
            continue
        if type(record) is TapeWatermark:
            key, value, headers = watermark_message(record)
            out.append((PRODUCER_KEY, (full_name[topic], key, value, headers)))
            continue
        message = encode(TOPIC_OF_TABLE.get(topic, topic), record)
        out.append((PRODUCER_KEY, (full_name[topic], message.key, message.value, list(message.headers))))
    return out


class _Producing(StatefulBatchLogic):
    """The stage's producer as a stateful step: ``(topic, key, value, headers)`` tuples straight
    into librdkafka, with no message object and mapping step per message.

    Delivery is at-least-once (consumers deduplicate): Bytewax snapshots a stateful step at the end
    of every epoch, after the step has seen all of the epoch's items and before the epoch's input
    offsets are committed, and the snapshot flushes the producer, so nothing read before a committed
    snapshot is still in flight. Between snapshots the producer sends on its own after ``linger.ms``.

    Why a stateful step and not a sink: a sink that may not flush after every batch needs an end of
    epoch to flush at, and Bytewax's stateless sinks have none. Bytewax's own Kafka sink flushed
    after every batch, so the stage waited a broker round trip per batch with every message behind
    it: 45% of the normalize stage's time at 5,000 ticks/s, and a produce request (and fetches
    downstream) per batch."""

    def __init__(self, producer: Producer, at_end: Callable[[Producer], None] | None = None):
        self._producer = producer
        self._at_end = at_end

    def on_batch(self, items: list[tuple]) -> tuple[list, bool]:
        produce, poll = self._producer.produce, self._producer.poll
        for topic, key, value, headers in items:
            while True:
                try:
                    produce(topic, value, key, headers=headers)
                    break
                except BufferError:  # the local queue is full: let librdkafka send some first
                    poll(0.05)
        poll(0)  # delivery reports: a failed delivery raises here, not only at the snapshot
        return [], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list, bool]:
        self._producer.flush()
        if self._at_end is not None:
            self._at_end(self._producer)
        return [], StatefulBatchLogic.RETAIN

    def snapshot(self) -> None:
        self._producer.flush()
        return None


class _SharedProducer:
    """A stage process's one producer, made when the dataflow starts (not at its first message: an
    idempotent producer takes about half a second to connect and get its producer id)."""

    def __init__(self, brokers: list[str], overrides: dict[str, str]):
        self._config = {"bootstrap.servers": ",".join(brokers), **PRODUCER_CONFIG, **overrides}
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def get(self) -> Producer:
        with self._lock:  # every worker thread starts it
            if self._producer is None:
                self._producer = Producer(self._config)
            return self._producer


class _StartProducer(DynamicSink):
    """Where the producing step's (empty) stream ends, and what starts the producer: Bytewax builds
    every worker's sink partition when the dataflow starts."""

    def __init__(self, producer: _SharedProducer):
        self._producer = producer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        return _Nothing(self._producer.get())


class _Nothing(StatelessSinkPartition):
    def __init__(self, producer: Producer):
        self._producer = producer

    def write_batch(self, items: list) -> None:
        return None

    def close(self) -> None:
        self._producer.flush()  # the dataflow's end: what the last epoch produced goes out


@operator
def _kafka_output(step_id: str, up: KeyedStream, brokers: list[str], linger_ms: float | None,
                  at_end: Callable[[Producer], None] | None) -> None:
    # the same step id as ``kop.output``'s (``<step>.kafka_output``); the worker that owns the
    # step's single key produces
    producer = _SharedProducer(brokers, {} if linger_ms is None else {"linger.ms": str(linger_ms)})
    producing = op.stateful_batch("kafka_output", up, lambda resume_state: _Producing(producer.get(), at_end))
    op.output("start_producer", producing, _StartProducer(producer))
