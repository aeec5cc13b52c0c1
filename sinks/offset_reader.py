"""Reading given offset ranges of Kafka partitions outside any consumer group: how the
consumer-group sink (:mod:`sinks.group_sink`) completes a logged batch its checkpoint holds only part
of, whatever Quix Streams fetched this time."""

from __future__ import annotations

import time
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, TopicPartition

from topics.kafka_records import CLIENT_CONFIG

Part = tuple[str, int]  # (Kafka topic, partition)

READ_TIMEOUT_S = 30.0
OUT_OF_REACH = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET)


class OffsetReader(Protocol):
    def read(self, ranges: dict[Part, tuple[int, int]]) -> dict[Part, list[Any]]: ...


class OffsetsOutOfReach(RuntimeError):
    """The broker did not hand over a range within the time allowed."""


class KafkaOffsetReader:
    """``read({(topic, partition): (first, last)})``: every message with an offset in
    ``[first, last]`` of each partition (fewer only where compaction removed some), by partition in
    offset order. A consumer of its own per call, assigned (no group joined, nothing committed).
    Raises :class:`OffsetsOutOfReach` after ``timeout_s`` naming what was still missing."""

    def __init__(self, brokers: tuple[str, ...], timeout_s: float = READ_TIMEOUT_S, config: dict[str, Any] | None = None):
        self._config = {
            "bootstrap.servers": ",".join(brokers),
            "group.id": "tapeflow-sink-offset-reader",  # required by the client; never joined nor committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "auto.offset.reset": "error",  # an offset gone (retention) is said, not skipped
            "fetch.wait.max.ms": 100,
            **CLIENT_CONFIG,
            **(config or {}),
        }
        self.timeout_s = timeout_s

    def read(self, ranges: dict[Part, tuple[int, int]]) -> dict[Part, list[Any]]:
        got: dict[Part, list[Any]] = {part: [] for part in ranges}
        if not ranges:
            return got
        consumer = Consumer(self._config)
        try:
            consumer.assign([TopicPartition(t, p, first) for (t, p), (first, _) in ranges.items()])
            missing = dict(ranges)
            deadline = time.monotonic() + self.timeout_s
            while missing:
                if time.monotonic() > deadline:
                    raise OffsetsOutOfReach("no message within %.0f s for %s" % (self.timeout_s, ", ".join(
                        f"{t}[{p}] offsets {got[(t, p)][-1].offset() + 1 if got[(t, p)] else first}-{last}"
                        for (t, p), (first, last) in missing.items())))
                for message in consumer.consume(10_000, 0.2):
                    error = message.error()
                    if error is not None:
                        if error.fatal() or error.code() in OUT_OF_REACH:
                            raise OffsetsOutOfReach(f"{message.topic()}[{message.partition()}]: {error}")
                        continue  # transient: librdkafka retries
                    part = (message.topic(), message.partition())
                    if part not in missing:
                        continue
                    last = missing[part][1]
                    if message.offset() <= last:
                        got[part].append(message)
                    if message.offset() >= last:
                        del missing[part]
                        consumer.pause([TopicPartition(*part)])
        finally:
            consumer.close()
        return got
