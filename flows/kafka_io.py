"""Kafka at the edges of a split-topology stage: records in, records out, bad bytes to the dlq.

Every stage reads topics of the catalog and writes topics of the catalog; a ``prefix`` in front of
every topic name lets several pipelines (or tests) share one broker. Messages that do not decode
into their topic's record (not JSON, the wrong schema, oversized) become DeadLetters with the
reason from :mod:`topics.serde` and the raw bytes, never an exception that stops the stage.

Delivery: Bytewax's Kafka source resumes from the offsets in its recovery snapshot; its sink is
at-least-once (messages of the resumed epoch are produced again). Consumers therefore deduplicate:
see README "Effectively-once".

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
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSource, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
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


def _decoder(endpoint: KafkaEndpoint, stage: str, with_topic: bool):
    def decode_batch(batch: list[KafkaSourceMessage]) -> list:
        out = []
        for msg in batch:
            topic = endpoint.bare(msg.topic)
            try:
                record = decode(topic, msg.value, schema_header(msg.headers))
            except DecodeError as err:
                record, topic = _dead_letter(topic, stage, err.reason, err.detail, msg), "dlq"
            out.append((topic, record) if with_topic else record)
        return out

    return decode_batch


def _dead_letter(topic: str, stage: str, reason: str, detail: str, msg) -> DeadLetter:
    value = msg.value or b""
    preview = value[:PAYLOAD_PREVIEW]
    try:
        payload = preview.decode()
    except UnicodeDecodeError:
        payload = repr(preview)
    if len(value) > PAYLOAD_PREVIEW:
        payload += f"... ({len(value)} bytes)"
    now = now_ns()
    return DeadLetter(
        id=f"dlq:{stage}:{topic}:{msg.partition}:{msg.offset}",
        ts_event=(msg.timestamp[1] * 1_000_000) if msg.timestamp and msg.timestamp[1] > 0 else now,
        ts_ingest=now,
        source_topic=topic,
        stage=stage,
        reason=reason,
        detail=detail[:2_000],
        symbol=(msg.key or b"").decode(errors="replace")[:64],
        payload=payload,
    )


# A partition that delivers nothing while the broker holds messages past its offset is checked
# every STALL_CHECK_S; after STALL_AFTER_S of that it gets a fresh consumer. A healthy consumer
# fetches within fetch.wait.max.ms (0.5 s) and reconnects within a second of the broker's return.
STALL_CHECK_S = 2.0
STALL_AFTER_S = 6.0


class _KafkaPartition(StatefulSourcePartition):
    """One topic partition read by a consumer of its own (``assign``, no group: the offsets live in
    the stage's recovery snapshot), resuming at the offset after the last message it delivered.

    Bytewax 0.21's own partition is replaced for two reasons:

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

    ``ask_end`` asks the broker for the partition's end offset and returns a future: the question
    must not block the dataflow's thread (asked through the consumer itself, it waits behind the
    consumer's long-poll fetch, up to 500 ms, and a stage with ten quiet partitions then spends its
    time waiting on them), so it goes through an admin client and is read back at the next check.
    """

    def __init__(self, connect: Callable[[int], Consumer], ask_end: Callable[[], Future], topic: str,
                 partition: int, offset: int, batch_size: int, clock: Callable[[], float] = time.monotonic):
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
        batch: list = []
        delivered = False
        for msg in self._consumer.consume(self._batch_size, 0.001):
            err = msg.error()
            if err is not None and err.code() == ClientError._PARTITION_EOF:
                self._eof = True  # the end of a replay: this batch still goes out, StopIteration next
                break
            item = KafkaSourceMessage(key=msg.key(), value=msg.value(), topic=msg.topic(), headers=msg.headers() or [],
                                      latency=msg.latency(), offset=msg.offset(), partition=msg.partition(),
                                      timestamp=msg.timestamp())
            if err is None:
                batch.append(item)
                self._offset = msg.offset() + 1
                delivered = True
            else:
                batch.append(KafkaError(err, item))
        now = self._clock()
        if delivered:
            self._behind_since = None
            self._next_check = now + STALL_CHECK_S
        elif now >= self._next_check:
            self._next_check = now + STALL_CHECK_S
            self._watch(now)
        return batch

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

    def __init__(self, brokers: list[str], topics: list[str], tail: bool, starting_offset: int, batch_size: int):
        super().__init__(brokers, topics, tail, starting_offset, RECONNECT_CONFIG, batch_size, raise_on_errors=False)
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
        return _KafkaPartition(connect, ask_end, topic, int(index), offset, self.batch_size)

    def admin(self) -> AdminClient:
        if self._admin is None:  # one per source, for the partitions' end-offset questions
            self._admin = AdminClient({"bootstrap.servers": self.config["bootstrap.servers"], **RECONNECT_CONFIG})
        return self._admin


@operator
def _kafka_input(step_id: str, flow: Dataflow, source: KafkaSource) -> kop.KafkaOpOut:
    # the same step ids as ``kop.input`` (``<step>.kafka_input``): existing recovery snapshots resume,
    # and ``tapeflow lag`` finds the offsets where it always did
    both = op.input("kafka_input", flow, source)
    split = op.branch("split_err", both, lambda item: type(item) is KafkaSourceMessage)
    return kop.KafkaOpOut(split.trues, split.falses)


def consume(
    step_id: str, flow: Dataflow, endpoint: KafkaEndpoint, topics: list[str], stage: str, with_topic: bool = False
) -> Stream:
    """Records of ``topics`` (catalog names), and DeadLetters for messages that did not decode or
    consumer errors that are not transient, in one stream; with ``with_topic``, ``(topic, record)``
    pairs (a dead letter's topic is ``dlq``). Transient consumer errors (the broker out of reach) are
    logged only: librdkafka retries them, and a broker restart must not leave records behind."""
    source = _KafkaSource(list(endpoint.brokers), [endpoint.topic(t) for t in topics], endpoint.tail,
                          OFFSET_BEGINNING, batch_size=5_000)
    kafka = _kafka_input(step_id, flow, source)
    records = op.flat_map_batch(f"{step_id}_decode", kafka.oks, _decoder(endpoint, stage, with_topic))

    def error(e: KafkaError) -> list:
        if transient(e.err):
            log.warning("%s: %s (transient: the client retries)", stage, e.err.str())
            return []
        dead = _dead_letter(endpoint.bare(e.msg.topic or "?"), stage, "consumer_error", str(e.err), e.msg)
        return [("dlq", dead) if with_topic else dead]

    errors = op.flat_map(f"{step_id}_errors", kafka.errs, error)
    return op.merge(f"{step_id}_all", records, errors)


TOPIC_OF_TABLE = {table_name(t.name): t.name for t in TOPICS}


def produce(step_id: str, up: Stream, endpoint: KafkaEndpoint) -> None:
    """Write ``(topic, record)`` pairs (catalog names, or warehouse table names) to Kafka, keyed
    as the catalog says, with the schema headers."""

    def to_messages(batch: list) -> list[KafkaSinkMessage]:
        out = []
        for topic, record in batch:
            topic = TOPIC_OF_TABLE.get(topic, topic)
            message = encode(topic, record)
            out.append(KafkaSinkMessage(message.key, message.value, topic=endpoint.topic(topic),
                                        headers=list(message.headers)))
        return out

    messages = op.flat_map_batch(f"{step_id}_encode", up, to_messages)
    kop.output(step_id, messages, brokers=list(endpoint.brokers), topic=endpoint.topic("dlq"),
               add_config=PRODUCER_CONFIG)
