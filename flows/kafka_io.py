"""Kafka at the edges of a split-topology stage: records in, records out, bad bytes to the dlq.

Every stage reads topics of the catalog and writes topics of the catalog; a ``prefix`` in front of
every topic name lets several pipelines (or tests) share one broker. Messages that do not decode
into their topic's record (not JSON, the wrong schema, oversized) become DeadLetters with the
reason from :mod:`topics.serde` and the raw bytes, never an exception that stops the stage.

Delivery: a stage's source resumes from the offsets in its recovery snapshot; its sink flushes
every batch, so it is at-least-once (messages of the resumed epoch are produced again). Consumers
therefore deduplicate: see README "Effectively-once". Source and sink are lean versions of Bytewax's
Kafka connectors (below): records are decoded in the source partitions and produced from tuples,
with no per-message object or step in between, which took a third of a stage's time.

A broker that goes away and comes back (a restart, a network blip) is ridden out, not reported:
librdkafka reconnects by itself, the consumer fetches on from the offset it had, and the idempotent
producer re-sends what was in flight without duplicates (the restarted broker keeps its producer
state). So a consumer error that only says the broker is unreachable is logged and dropped, never
dead-lettered as a record, and never ends a partition (only ``_PARTITION_EOF`` does, with
``tail=False``). Reconnect back-off is capped at a second, so a stage resumes within about a second
of the broker's return; a consumer that still fetches nothing while the broker holds messages past
its offset is replaced (see :class:`_KafkaPartition`). A message the producer could not deliver
within ``message.timeout.ms`` (5 minutes) raises from the sink's flush and stops the stage, which
then resumes from its last snapshot: an outage longer than that costs a restart, never a silently
missing message.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import KafkaError as ClientError
from confluent_kafka.admin import AdminClient, OffsetSpec

from schemas import DeadLetter, now_ns
from topics.catalog import TOPICS, table_name
from topics.serde import DecodeError, decode, encode, schema_header

PAYLOAD_PREVIEW = 4_096  # bytes of an undecodable message kept in its dead letter

log = logging.getLogger(__name__)

# librdkafka's default back-off grows to 10 s between reconnects: after a broker restart of tens of
# seconds a stage would sit idle up to 10 s more. One second is cheap for a handful of connections.
RECONNECT_CONFIG = {"reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "1000"}


def _delivery_failed(err, msg) -> None:
    """A delivery report: raise on a failure so the sink's flush fails the stage (which resumes from
    its snapshot) instead of Bytewax's sink dropping the message without a word."""
    if err is not None:
        raise KafkaException(err)


PRODUCER_CONFIG = {
    "enable.idempotence": "true",
    "compression.type": "lz4",
    "linger.ms": "5",
    "batch.num.messages": "10000",
    # how long a message may wait for an absent broker (librdkafka's default, stated): past it the
    # delivery fails and the stage stops rather than lose it
    "message.timeout.ms": "300000",
    "on_delivery": _delivery_failed,
    **RECONNECT_CONFIG,
}

# Errors that say only that the broker is (for now) out of reach; librdkafka retries them itself.
TRANSIENT_ERRORS = frozenset({
    ClientError._TRANSPORT, ClientError._ALL_BROKERS_DOWN, ClientError._TIMED_OUT, ClientError._RESOLVE,
    ClientError.NOT_LEADER_FOR_PARTITION, ClientError.LEADER_NOT_AVAILABLE, ClientError.REQUEST_TIMED_OUT,
    ClientError.NETWORK_EXCEPTION, ClientError.COORDINATOR_LOAD_IN_PROGRESS,
})


def transient(err: ClientError) -> bool:
    return err.code() in TRANSIENT_ERRORS or err.retriable()


@dataclass(frozen=True)
class KafkaEndpoint:
    brokers: tuple[str, ...]
    prefix: str = ""
    tail: bool = True  # False: stop at the end of each partition (replays, tests)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def bare(self, topic: str) -> str:
        return topic[len(self.prefix):] if self.prefix and topic.startswith(self.prefix) else topic


def _decoder(endpoint: KafkaEndpoint, stage: str, with_topic: bool) -> Callable[[list, list], list]:
    """``(messages, errors) -> records``: confluent-kafka messages decoded into their topics'
    records (or dead letters), and consumer errors that are not transient as dead letters; with
    ``with_topic``, ``(topic, record)`` pairs (a dead letter's topic is ``dlq``). Transient errors
    (the broker out of reach) are logged only: librdkafka retries them, and a broker restart must
    not leave records behind."""
    bare = endpoint.bare

    def decode_batch(messages: list, errors: list) -> list:
        out = []
        for msg in messages:
            topic = bare(msg.topic())
            value = msg.value()
            try:
                record = decode(topic, value, schema_header(msg.headers()))
            except DecodeError as err:
                record = _dead_letter(topic, stage, err.reason, err.detail, msg.key(), value, msg.partition(),
                                      msg.offset(), msg.timestamp())
                topic = "dlq"
            out.append((topic, record) if with_topic else record)
        for e in errors:
            if transient(e.err):
                log.warning("%s: %s (transient: the client retries)", stage, e.err.str())
                continue
            m = e.msg
            dead = _dead_letter(bare(m.topic or "?"), stage, "consumer_error", str(e.err), m.key, m.value,
                                m.partition, m.offset, m.timestamp)
            out.append(("dlq", dead) if with_topic else dead)
        return out

    return decode_batch


def _dead_letter(topic: str, stage: str, reason: str, detail: str, key: bytes | None, value: bytes | None,
                 partition: int | None, offset: int | None, timestamp: tuple[int, int] | None) -> DeadLetter:
    value = value or b""
    preview = value[:PAYLOAD_PREVIEW]
    try:
        payload = preview.decode()
    except UnicodeDecodeError:
        payload = repr(preview)
    if len(value) > PAYLOAD_PREVIEW:
        payload += f"... ({len(value)} bytes)"
    now = now_ns()
    return DeadLetter(
        id=f"dlq:{stage}:{topic}:{partition}:{offset}",
        ts_event=(timestamp[1] * 1_000_000) if timestamp and timestamp[1] > 0 else now,
        ts_ingest=now,
        source_topic=topic,
        stage=stage,
        reason=reason,
        detail=detail[:2_000],
        symbol=(key or b"").decode(errors="replace")[:64],
        payload=payload,
    )


def _undecoded(messages: list, errors: list) -> list:
    return messages + errors


# A partition that delivers nothing while the broker holds messages past its offset is checked
# every STALL_CHECK_S; after STALL_AFTER_S of that it gets a fresh consumer. A healthy consumer
# fetches within fetch.wait.max.ms (0.5 s) and reconnects within a second of the broker's return.
STALL_CHECK_S = 2.0
STALL_AFTER_S = 6.0


class _KafkaPartition(StatefulSourcePartition):
    """One topic partition read by a consumer of its own (``assign``, no group: the offsets live in
    the stage's recovery snapshot), resuming at the offset after the last message it delivered.

    Bytewax 0.21's own partition is replaced for three reasons:

    - Its resume offset moved past every item of a batch, consumer errors included: an error
      reported at the fetch offset X (or with no offset, -1001) made the snapshot X+1 (or -1000,
      librdkafka's "stored offset", which resets to the end), so a stage resumed from a snapshot
      taken just then skipped input. Here the offset moves past messages only.
    - An ``assign``-ed librdkafka consumer can stop fetching for good after a broker restart
      (reported upstream, confluentinc/librdkafka#5153; seen here once in some sixty restarts: the
      trading stage's md.quotes consumer never fetched again, so the desk waited forever; an
      ``--until-end`` stage would never see its end). A partition that delivers nothing for
      ``STALL_AFTER_S`` while the broker reports messages past its offset, and its consumer has
      not even seen them (its cached high watermark is behind), gets a new consumer at its offset.
    - It wrapped every message in a ``KafkaSourceMessage`` for a decoding step downstream; here
      ``decode`` turns the consumer's messages into records in the same call.

    ``ask_end`` asks the broker for the partition's end offset and returns a future: the question
    must not block the dataflow's thread (asked through the consumer itself, it waits behind the
    consumer's long-poll fetch, up to 500 ms, and a stage with ten quiet partitions then spends its
    time waiting on them), so it goes through an admin client and is read back at the next check.
    """

    def __init__(self, connect: Callable[[int], Consumer], ask_end: Callable[[], Future], topic: str,
                 partition: int, offset: int, batch_size: int, clock: Callable[[], float] = time.monotonic,
                 decode: Callable[[list, list], list] = _undecoded):
        self._decode = decode
        self._connect = connect
        self._ask_end = ask_end
        self._topic = topic
        self._partition = partition
        self._offset = offset
        self._batch_size = batch_size
        self._clock = clock
        self._consumer = connect(offset)
        self._eof = False
        self._next_check = clock() + STALL_CHECK_S
        self._asked: Future | None = None
        self._behind_since: float | None = None

    def next_batch(self) -> list:
        if self._eof:
            raise StopIteration()
        messages: list = []
        errors: list = []
        # No wait: Bytewax polls every partition of the stage in turn, so a wait here would be paid
        # once per idle partition per round, some milliseconds per hop (when the poll waited 1 ms,
        # a hop took 4 ms at the median instead of 1.4); Bytewax itself pauses an empty partition.
        for msg in self._consumer.consume(self._batch_size, 0):
            err = msg.error()
            if err is None:
                messages.append(msg)
                continue
            if err.code() == ClientError._PARTITION_EOF:
                self._eof = True  # the end of a replay: this batch still goes out, StopIteration next
                break
            errors.append(KafkaError(err, KafkaSourceMessage(
                key=msg.key(), value=msg.value(), topic=msg.topic(), headers=msg.headers() or [],
                latency=msg.latency(), offset=msg.offset(), partition=msg.partition(), timestamp=msg.timestamp())))
        now = self._clock()
        if messages:
            self._offset = messages[-1].offset() + 1
            self._behind_since = None
            self._next_check = now + STALL_CHECK_S
        elif now >= self._next_check:
            self._next_check = now + STALL_CHECK_S
            self._watch(now)
        return self._decode(messages, errors) if messages or errors else messages

    def _watch(self, now: float) -> None:
        asked, self._asked = self._asked, None
        if asked is not None and not asked.done():
            self._asked = asked  # still out (the broker is away): one question at a time
            return
        self._asked = self._ask_end()
        if asked is None:
            return
        try:
            high = asked.result().offset
        except KafkaException:
            return  # the broker is away: nothing to judge yet
        # the end as the consumer's own fetches last saw it: a fetching consumer is up to date even
        # when offsets past its position hold no message (a transaction marker, say)
        _, seen_high = self._consumer.get_watermark_offsets(TopicPartition(self._topic, self._partition), cached=True)
        position = self._offset if self._offset >= 0 else (0 if self._offset == OFFSET_BEGINNING else high)
        if high <= position or seen_high >= high:
            self._behind_since = None  # at the end, or fetching: quiet is right
        elif self._behind_since is None:
            self._behind_since = now
        elif now - self._behind_since >= STALL_AFTER_S:
            log.warning("%s [%d]: no message for %.0f s with %d waiting at offset %d: a new consumer resumes there",
                        self._topic, self._partition, now - self._behind_since, high - position, self._offset)
            self._consumer.close()
            self._consumer = self._connect(self._offset)
            self._behind_since = None

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


class _KafkaSource(KafkaSource):
    """Bytewax's Kafka source (its partition listing) with :class:`_KafkaPartition` partitions."""

    def __init__(self, brokers: list[str], topics: list[str], tail: bool, starting_offset: int, batch_size: int,
                 decode: Callable[[list, list], list] = _undecoded):
        super().__init__(brokers, topics, tail, starting_offset, RECONNECT_CONFIG, batch_size, raise_on_errors=False)
        self.decode = decode
        self.config = {
            "bootstrap.servers": ",".join(brokers),
            "group.id": "tapeflow-offsets-in-recovery",  # required by librdkafka, never joined nor committed
            "enable.auto.commit": "false",
            "enable.partition.eof": "false" if tail else "true",
            **RECONNECT_CONFIG,
        }
        self.topic_names = set(topics)
        self._admin: AdminClient | None = None
        self.starting_offset = starting_offset
        self.batch_size = batch_size

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        index, topic = for_part.split("-", 1)
        if topic not in self.topic_names:
            raise ValueError(f"the recovery snapshot has {topic!r}, which this stage does not read")

        def connect(offset: int) -> Consumer:
            consumer = Consumer(self.config)
            consumer.assign([TopicPartition(topic, int(index), offset)])
            return consumer

        partition = TopicPartition(topic, int(index))

        def ask_end() -> Future:
            return self.admin().list_offsets({partition: OffsetSpec.latest()}, request_timeout=10)[partition]

        offset = self.starting_offset if resume_state is None else resume_state
        return _KafkaPartition(connect, ask_end, topic, int(index), offset, self.batch_size, decode=self.decode)

    def admin(self) -> AdminClient:
        if self._admin is None:  # one per source, for the partitions' end-offset questions
            self._admin = AdminClient({"bootstrap.servers": self.config["bootstrap.servers"], **RECONNECT_CONFIG})
        return self._admin


def consume(
    step_id: str, flow: Dataflow, endpoint: KafkaEndpoint, topics: list[str], stage: str, with_topic: bool = False
) -> Stream:
    """Records of ``topics`` (catalog names), and DeadLetters for messages that did not decode or
    consumer errors that are not transient, in one stream; with ``with_topic``, ``(topic, record)``
    pairs (a dead letter's topic is ``dlq``). The partitions decode as they read: no per-message
    object or extra step between the consumer and the records."""
    source = _KafkaSource(list(endpoint.brokers), [endpoint.topic(t) for t in topics], endpoint.tail,
                          OFFSET_BEGINNING, batch_size=5_000, decode=_decoder(endpoint, stage, with_topic))
    return _kafka_input(step_id, flow, source)


@operator
def _kafka_input(step_id: str, flow: Dataflow, source: KafkaSource) -> Stream:
    # the same step id as ``kop.input`` (``<step>.kafka_input``): existing recovery snapshots resume,
    # and ``tapeflow lag`` finds the offsets where it always did
    return op.input("kafka_input", flow, source)


TOPIC_OF_TABLE = {table_name(t.name): t.name for t in TOPICS}


def produce(step_id: str, up: Stream, endpoint: KafkaEndpoint) -> None:
    """Write ``(topic, record)`` pairs (catalog names, or warehouse table names) to Kafka, keyed
    as the catalog says, with the schema headers."""
    full_name = {name: endpoint.topic(topic) for table, topic in TOPIC_OF_TABLE.items() for name in (table, topic)}

    def to_messages(batch: list) -> list[tuple]:
        out = []
        for topic, record in batch:
            message = encode(TOPIC_OF_TABLE.get(topic, topic), record)
            out.append((full_name[topic], message.key, message.value, list(message.headers)))
        return out

    _kafka_output(step_id, op.flat_map_batch(f"{step_id}_encode", up, to_messages), list(endpoint.brokers))


class _ProducerPartition(StatelessSinkPartition):
    """Bytewax's Kafka sink partition, without a message object and a mapping step per message:
    ``(topic, key, value, headers)`` tuples straight into the producer. Like Bytewax's, it flushes
    at the end of every batch, so nothing the stage read before its next snapshot is still in
    flight when the snapshot is taken (at-least-once; consumers deduplicate)."""

    def __init__(self, producer: Producer):
        self._producer = producer

    def write_batch(self, items: list[tuple]) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        for topic, key, value, headers in items:
            while True:
                try:
                    produce(topic, value, key, headers=headers)
                    break
                except BufferError:  # the local queue is full: let librdkafka send some first
                    poll(0.05)
        self._producer.flush()

    def close(self) -> None:
        self._producer.flush()


class _ProducerSink(DynamicSink):
    def __init__(self, brokers: list[str]):
        self._config = {"bootstrap.servers": ",".join(brokers), **PRODUCER_CONFIG}

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _ProducerPartition:
        return _ProducerPartition(Producer(self._config))


@operator
def _kafka_output(step_id: str, up: Stream, brokers: list[str]) -> None:
    # the same output step id as ``kop.output`` (``<step>.kafka_output``)
    return op.output("kafka_output", up, _ProducerSink(brokers))
