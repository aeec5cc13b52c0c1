"""Kafka at the edges of a split-topology stage: records in, records out, bad bytes to the dlq.

Every stage reads topics of the catalog and writes topics of the catalog; a ``prefix`` in front of
every topic name lets several pipelines (or tests) share one broker. Messages that do not decode
into their topic's record (not JSON, the wrong schema, oversized) become DeadLetters with the
reason from :mod:`topics.serde` and the raw bytes, never an exception that stops the stage.

Delivery: Bytewax's Kafka source resumes from the offsets in its recovery snapshot; its sink is
at-least-once (messages of the resumed epoch are produced again). Consumers therefore deduplicate:
see README "Effectively-once".
"""

from __future__ import annotations

from dataclasses import dataclass

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from confluent_kafka import OFFSET_BEGINNING

from schemas import DeadLetter, now_ns
from topics.catalog import TOPICS, table_name
from topics.serde import DecodeError, decode, encode, schema_header

PAYLOAD_PREVIEW = 4_096  # bytes of an undecodable message kept in its dead letter

PRODUCER_CONFIG = {
    "enable.idempotence": "true",
    "compression.type": "lz4",
    "linger.ms": "5",
    "batch.num.messages": "10000",
}


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


def consume(
    step_id: str, flow: Dataflow, endpoint: KafkaEndpoint, topics: list[str], stage: str, with_topic: bool = False
) -> Stream:
    """Records of ``topics`` (catalog names), and DeadLetters for messages that did not decode or
    consumer errors, in one stream; with ``with_topic``, ``(topic, record)`` pairs (a dead letter's
    topic is ``dlq``)."""
    kafka = kop.input(
        step_id,
        flow,
        brokers=list(endpoint.brokers),
        topics=[endpoint.topic(t) for t in topics],
        tail=endpoint.tail,
        starting_offset=OFFSET_BEGINNING,
        batch_size=5_000,
    )
    records = op.flat_map_batch(f"{step_id}_decode", kafka.oks, _decoder(endpoint, stage, with_topic))

    def error(e):
        dead = _dead_letter(endpoint.bare(e.msg.topic or "?"), stage, "consumer_error", str(e.err), e.msg)
        return ("dlq", dead) if with_topic else dead

    errors = op.map(f"{step_id}_errors", kafka.errs, error)
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
