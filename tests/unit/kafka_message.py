"""A consumed Kafka message as confluent-kafka's ``consume()`` returns it, for tests without a
broker. (confluent-kafka's own Message is constructible from 2.13 only, and Quix Streams 3.28 caps
confluent-kafka below that.)"""

from __future__ import annotations

from confluent_kafka import KafkaError


class PolledMessage:
    """``code``: a KafkaError code this message carries instead of a record (``error()``)."""

    def __init__(self, offset: int, code: int | None = None, *, topic: str = "md.raw", partition: int = 0,
                 key: bytes | None = b"SYN0", value: bytes | None = b"{}", headers=None,
                 timestamp: tuple[int, int] = (0, -1)):
        self._offset, self._code, self._topic, self._partition = offset, code, topic, partition
        self._key, self._value, self._headers, self._timestamp = key, value, headers, timestamp

    def error(self):
        return None if self._code is None else KafkaError(self._code)

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def key(self):
        return self._key

    def value(self):
        return self._value

    def headers(self):
        return self._headers

    def timestamp(self):
        return self._timestamp

    def latency(self):
        return None
