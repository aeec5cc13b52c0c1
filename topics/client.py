"""The public face of tapeflow's topics: typed producers and consumers for people who feed tapeflow
their own ticks (``md.raw``) or read any of its topics, with plain confluent-kafka or Quix Streams.

Every message is what the stages write and read (:mod:`topics.serde`): the key the catalog names,
one JSON record, the schema headers. So a user's producer is a feed like tapeflow's own, and a
user's reader sees exactly the stages' records.

Plain Python::

    with RecordProducer("localhost:9092") as producer:       # the user's own feed
        producer.send("md.raw", RawTick(...))                # TypeError for a record of another topic
    consumer = RecordConsumer("localhost:9092", ["pnl"], group="my-report")
    for delivery in consumer.poll(1.0):                      # Delivery(topic, partition, offset, record)
        ...                                                  # an undecodable message is a DeadLetter

End-of-tape markers (:mod:`topics.end_of_tape`) are no records: :class:`RecordConsumer` keeps them
out of what it returns and lists them in ``markers``.

Quix Streams::

    app = Application(broker_address="localhost:9092", consumer_group="mine")
    features = quix_topic(app, "features")                  # values are FeatureVector records (or EndOfTape)
    signals = quix_topic(app, "signals")
    app.dataframe(features).apply(...).set_headers(record_headers("signals")).to_topic(signals, key=record_key("signals"))

``QUIX_PRODUCER_CONFIG`` (``Application(producer_extra_config=...)``) puts a key on the partition
tapeflow's own stages put it; it and ``QUIX_CONSUMER_CONFIG`` (``consumer_extra_config``) turn Nagle's
algorithm off, as every tapeflow client does; ``examples/quix_strategy.py`` is a whole app, end-of-tape markers included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from schemas import DeadLetter, Record, TapeWatermark
from topics.admin import topic_name
from topics.catalog import spec
from topics.end_of_tape import EndOfTape, end_of_tape_header, read_marker
from topics.kafka_records import CLIENT_CONFIG, KafkaEndpoint, decoder, transient
from topics.producer import PRODUCER_DEFAULTS
from topics.serde import DecodeError, decode, encode, schema_header


class DeliveryFailed(RuntimeError):
    """Records the broker did not acknowledge (the first few reasons kept)."""


class RecordProducer:
    """Records of any catalog topic to Kafka, keyed and encoded as the stages do; idempotent, so a
    retry after a lost acknowledgement writes nothing twice. ``flush`` (or leaving the ``with``
    block) raises :class:`DeliveryFailed` if any record was not delivered: nothing is lost silently."""

    def __init__(self, bootstrap: str, *, prefix: str = "", config: dict[str, Any] | None = None):
        from confluent_kafka import Producer

        self.prefix = prefix
        self._producer = Producer({**PRODUCER_DEFAULTS, "client.id": "tapeflow-client", **(config or {}),
                                   "bootstrap.servers": bootstrap})
        self.sent = 0
        self.delivered = 0
        self.failures: list[str] = []

    def send(self, topic: str, record: Record) -> None:
        """Queue ``record`` for catalog topic ``topic`` (TypeError if the topic carries another record type)."""
        message = encode(topic, record)
        while True:
            try:
                self._producer.produce(topic_name(topic, self.prefix), message.value, message.key,
                                       headers=list(message.headers), on_delivery=self._on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries make room
                self._producer.poll(0.05)
        self.sent += 1
        self._producer.poll(0)

    def _on_delivery(self, error, message) -> None:
        if error is None:
            self.delivered += 1
        elif len(self.failures) < 5:
            self.failures.append(f"{message.topic()}: {error.str()}")

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every sent record is acknowledged; raise :class:`DeliveryFailed` otherwise."""
        remaining = self._producer.flush(timeout_s)
        if remaining or self.delivered < self.sent:
            raise DeliveryFailed(f"{self.sent - self.delivered} of {self.sent} records not delivered "
                                 f"({remaining} still queued): {'; '.join(self.failures) or 'timed out'}")

    def __enter__(self) -> "RecordProducer":
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is None:
            self.flush()


@dataclass(frozen=True)
class Delivery:
    topic: str  # the catalog name, without prefix
    partition: int
    offset: int
    record: Record  # the topic's record type, a StageWatermark on an account topic, or a DeadLetter


class RecordConsumer:
    """Records of catalog topics from Kafka, in a consumer group of the user's own (several
    processes in one group split the partitions). Offsets are committed by :meth:`commit` only:
    call it once what :meth:`poll` returned is handled, so a crash re-delivers rather than loses."""

    def __init__(self, bootstrap: str, topics: Sequence[str], *, group: str, prefix: str = "",
                 from_beginning: bool = True, config: dict[str, Any] | None = None):
        from confluent_kafka import Consumer

        for topic in topics:
            spec(topic)  # an unknown name fails here, naming the catalog
        self._endpoint = KafkaEndpoint(("unused",), prefix)
        self._decode = decoder(self._endpoint, f"client:{group}", with_topic=True)
        self._consumer = Consumer({
            **CLIENT_CONFIG, **(config or {}), "bootstrap.servers": bootstrap, "group.id": group,
            "enable.auto.commit": False, "auto.offset.reset": "earliest" if from_beginning else "latest",
        })
        self._consumer.subscribe([topic_name(t, prefix) for t in topics])
        self.markers: list[EndOfTape] = []  # the end-of-tape markers polled so far, in arrival order

    def poll(self, timeout_s: float = 1.0, max_records: int = 10_000) -> list[Delivery]:
        """The records that arrived within ``timeout_s`` (possibly none), in offset order per
        partition; end-of-tape markers go to ``markers`` instead."""
        messages = self._consumer.consume(max_records, timeout_s)
        good = [m for m in messages if m.error() is None]
        for error in (m.error() for m in messages if m.error() is not None):
            if not transient(error):  # the broker briefly out of reach is ridden out; anything else is said
                raise RuntimeError(f"consumer failed: {error.str()}")
        records = []
        for message in good:
            marker = None
            if end_of_tape_header(message.headers()) is not None:
                marker = read_marker(self._endpoint.bare(message.topic()), message.headers(), message.value(),
                                     message.offset())
            if marker is None:
                records.append(message)  # a header without a marker's value decodes as a dead letter
            else:
                self.markers.append(marker)
        out = []
        for message, (_, record) in zip(records, self._decode(records, [])):
            if type(record) is TapeWatermark:
                continue  # punctuation for tapeflow's desk, no record (topics/tape_watermark.py)
            out.append(Delivery(self._endpoint.bare(message.topic()), message.partition(), message.offset(), record))
        return out

    def __iter__(self) -> Iterator[Delivery]:
        while True:
            yield from self.poll()

    def commit(self) -> None:
        """Commit the offsets of everything polled so far (synchronously)."""
        from confluent_kafka import KafkaError, KafkaException

        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:  # nothing polled yet: nothing to commit
                raise

    def close(self) -> None:
        self._consumer.close()


# -- Quix Streams ----------------------------------------------------------------------------------

# Quix Streams' producer hashes keys with murmur2; tapeflow's stages (plain confluent-kafka) with
# librdkafka's default, consistent_random (CRC32): with this, a symbol's signals share the partition
# of the ones tapeflow's own signals stage would write. Idempotent, as the stages' producers are.
# Both configs carry the stages' connection settings (Nagle off, a 1 s reconnect back-off: CLIENT_CONFIG).
QUIX_PRODUCER_CONFIG: dict[str, Any] = {**CLIENT_CONFIG, "partitioner": "consistent_random", "enable.idempotence": True}
QUIX_CONSUMER_CONFIG: dict[str, Any] = dict(CLIENT_CONFIG)  # Application(consumer_extra_config=...)


def quix_topic(app: Any, topic: str, prefix: str = "") -> Any:
    """A Quix Streams topic of ``app`` whose values are catalog records of ``topic`` (see
    :func:`record_serdes`) and whose keys are strings."""
    serializer, deserializer = record_serdes(topic)
    return app.topic(topic_name(topic, prefix), key_serializer="str", key_deserializer="str",
                     value_serializer=serializer, value_deserializer=deserializer)


def record_serdes(topic: str) -> tuple[Any, Any]:
    """Quix Streams (serializer, deserializer) of ``topic``'s records: the bytes :mod:`topics.serde`
    writes and reads; a message that does not decode raises :class:`topics.serde.DecodeError` with
    its reason, a record of another type raises TypeError. An end-of-tape marker
    (:mod:`topics.end_of_tape`) deserializes to its :class:`EndOfTape`, no record: an app reading a
    finite tape filters those out of its records and ends (and marks its own outputs) on them."""
    from quixstreams.models.serializers import Deserializer, Serializer

    spec(topic)

    class RecordDeserializer(Deserializer):
        def __call__(self, value: bytes, ctx: Any) -> Record | EndOfTape:
            if end_of_tape_header(ctx.headers) is not None:
                marker = read_marker(topic, ctx.headers, value)
                if marker is not None:
                    return marker
            return decode(topic, value, schema_header(ctx.headers))

    class RecordSerializer(Serializer):
        def __call__(self, value: Record, ctx: Any) -> bytes:
            return encode(topic, value).value

    return RecordSerializer(), RecordDeserializer()


def record_key(topic: str) -> Callable[[Record], str]:
    """``to_topic(..., key=record_key(topic))``: the message key the catalog gives the record."""
    topic_spec = spec(topic)
    return lambda record: topic_spec.message_key(record).decode()


def record_headers(topic: str) -> Callable[[Record, Any, int, Any], list[tuple[str, bytes]]]:
    """``sdf.set_headers(record_headers(topic))``: the schema headers the stages put on a record
    (instead of the headers of the message it came from)."""
    return lambda value, key, timestamp, headers: list(encode(topic, value).headers)


__all__ = ["QUIX_CONSUMER_CONFIG", "QUIX_PRODUCER_CONFIG", "DeadLetter", "DecodeError", "Delivery", "DeliveryFailed", "EndOfTape",
           "RecordConsumer", "RecordProducer", "quix_topic", "record_headers", "record_key", "record_serdes"]
