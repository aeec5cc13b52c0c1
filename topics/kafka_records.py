"""Kafka messages into catalog records: the broker endpoint, which client errors are transient, and
dead letters for bytes that do not decode (the reason from :mod:`topics.serde`, the raw bytes kept).

Engine-free, so any stage runtime (the Bytewax flows, the Quix Streams sink) decodes the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from operator import methodcaller
from typing import Callable

from confluent_kafka import KafkaError as ClientError

from schemas import DeadLetter, now_ns
from schemas.columns import RawTickBatch, TickBatch
from topics.column_codec import TICK_TOPICS, decode_ticks
from topics.end_of_tape import EndOfTape, read_marker
from topics.tape_watermark import read_tape_watermark
from topics.serde import DecodeError, decode, schema_header

PAYLOAD_PREVIEW = 4_096  # bytes of an undecodable message kept in its dead letter

log = logging.getLogger(__name__)

# The connection settings of every tapeflow Kafka client that carries records.
# - librdkafka's default back-off grows to 10 s between reconnects: after a broker restart of tens of
#   seconds a stage would sit idle up to 10 s more. One second is cheap for a handful of connections.
# - Nagle's algorithm off (TCP_NODELAY), as the Java client always has it: librdkafka leaves it on, so a
#   small request written while an earlier one's ACK is outstanding waits for that ACK, which the
#   kernel may delay by 40 ms. Every hop of the split pipeline sends small requests (a bar, a signal,
#   an order, a fetch) while others are in flight.
CLIENT_CONFIG = {"reconnect.backoff.ms": "100", "reconnect.backoff.max.ms": "1000", "socket.nagle.disable": "true"}


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
    # Where a partition without a recovery snapshot starts, by (Kafka topic, partition): a split
    # run's start offsets (topics/origin.py); any other partition starts at its beginning.
    start_offsets: tuple[tuple[str, int, int], ...] = ()

    def start_offset(self, topic: str, partition: int, default: int) -> int:
        for t, p, offset in self.start_offsets:
            if t == topic and p == partition:
                return offset
        return default

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def bare(self, topic: str) -> str:
        return topic[len(self.prefix):] if self.prefix and topic.startswith(self.prefix) else topic


def decoder(endpoint: KafkaEndpoint, stage: str, with_topic: bool, columnar: bool = False,
            columnar_min: int = 1) -> Callable[[list, list], list]:
    """``(messages, errors) -> records``: confluent-kafka messages decoded into their topics'
    records (or dead letters), and consumer errors that are not transient as dead letters; with
    ``with_topic``, ``(topic, record)`` pairs (a dead letter's topic is ``dlq``). Transient errors
    (the broker out of reach) are logged only: librdkafka retries them, and a broker restart must
    not leave records behind.

    ``columnar``: a batch of ``md.raw``, ``md.trades`` or ``md.quotes`` messages (a source
    partition's batch is of one topic) decodes in bulk (:func:`topics.column_codec.decode_ticks`)
    into RawTickBatches or TickBatches (paired with their topic under ``with_topic``), in offset
    order with the records and dead letters of the messages that do not fit the columns, which
    are decoded here one by one exactly as without ``columnar``. Other topics give records.
    ``columnar_min``: a batch of fewer messages is decoded one by one (records): building columns
    costs tens of microseconds whatever the size, more than a few messages cost one by one (see
    :mod:`topics.column_codec`); the stages take either form.

    End-of-tape markers (:mod:`topics.end_of_tape`) are taken out of the records: a batch that had
    any comes back as a :class:`MarkedBatch`, its ``markers`` in offset order. Only a message that
    does not decode as a record is looked at for the marker header, so ordinary batches pay
    nothing for it. The same goes for tape watermarks (:mod:`topics.tape_watermark`), which come
    back as :class:`schemas.TapeWatermark` items in their place."""
    bare = endpoint.bare

    def one(msg, found: list) -> object:
        topic = bare(msg.topic())
        value = msg.value()
        try:
            record = decode(topic, value, schema_header(msg.headers()))
        except DecodeError as err:
            marker = read_marker(topic, msg.headers(), value, msg.offset())
            if marker is not None:
                found.append(marker)
                return marker  # never paired with its topic: decode_batch takes it out
            watermark = read_tape_watermark(topic, msg.headers(), value)
            if watermark is not None:
                return (topic, watermark) if with_topic else watermark
            record = dead_letter(topic, stage, err.reason, err.detail, msg.key(), value, msg.partition(),
                                  msg.offset(), msg.timestamp())
            topic = "dlq"
        return (topic, record) if with_topic else record

    def decode_batch(messages: list, errors: list) -> list:
        found: list = []  # per call: the worker threads share this decoder
        topic = bare(messages[0].topic()) if columnar and messages and len(messages) >= columnar_min else None
        if topic in TICK_TOPICS:
            items = decode_ticks(topic, list(map(_value, messages)), lambda i: one(messages[i], found))
            out = [(topic, item) if with_topic and type(item) in _BATCHES else item for item in items]
        else:
            out = [one(msg, found) for msg in messages]
        if found:
            out = MarkedBatch(out)
        for e in errors:
            if transient(e.err):
                log.warning("%s: %s (transient: the client retries)", stage, e.err.str())
                continue
            m = e.msg
            dead = dead_letter(bare(m.topic or "?"), stage, "consumer_error", str(e.err), m.key, m.value,
                                m.partition, m.offset, m.timestamp)
            out.append(("dlq", dead) if with_topic else dead)
        return out

    return decode_batch


_BATCHES = (RawTickBatch, TickBatch)
_END = EndOfTape


class MarkedBatch(list):
    """A decoded batch that held end-of-tape markers: the records and dead letters (without the
    markers), and ``markers``, in offset order."""

    def __init__(self, items: list):
        super().__init__(x for x in items if type(x) is not _END)
        self.markers: list[EndOfTape] = [x for x in items if type(x) is _END]


_value = methodcaller("value")


def dead_letter(topic: str, stage: str, reason: str, detail: str, key: bytes | None, value: bytes | None,
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


def undecoded(messages: list, errors: list) -> list:
    return messages + errors
