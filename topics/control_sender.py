"""Operator commands onto the ``control`` topic: how a split deployment hears them.

A :class:`config.control_channel.ControlSender` (structurally: ``where`` and ``send``) for stages that
run over Kafka, as the spool file is for the embedded pipeline. The command is encoded by the
catalog's serde (keyed ``target:kind:name``, so compaction keeps the latest command per piece of
state) and ``send`` returns only once the broker has acknowledged it: an operator who pressed the
kill switch must learn at once, with the reason, that it did not arrive.
"""

from __future__ import annotations

import logging

from schemas import ControlCommand
from topics.admin import topic_name
from topics.kafka_records import CLIENT_CONFIG
from topics.serde import encode

CONTROL_TOPIC = "control"

# librdkafka's own log (a refused connection every 50 ms while it retries) goes here rather than to
# stderr: the command's error already says why, and a process that configures logging still sees it.
log = logging.getLogger("tapeflow.control.kafka")
log.addHandler(logging.NullHandler())


class ControlNotDelivered(RuntimeError):
    """The broker did not take a command (unreachable, no such topic, refused); the message says why."""


class KafkaControlSender:
    """Produces each command to ``{prefix}control`` and waits for the broker's acknowledgement."""

    def __init__(self, brokers: str, prefix: str = "", timeout_s: float = 10.0):
        from confluent_kafka import Producer

        self.brokers = brokers
        self.topic = topic_name(CONTROL_TOPIC, prefix)
        self.timeout_s = timeout_s
        self._producer = Producer({
            "bootstrap.servers": brokers,
            "enable.idempotence": True,  # a retried produce never lands a command twice
            "message.timeout.ms": int(timeout_s * 1000),
            "client.id": "tapeflow-control",
            # a broker that creates topics on demand would make a plain (uncompacted) one from our
            # metadata question: a missing topic is the operator's to create, from the catalog
            "allow.auto.create.topics": False,
            **CLIENT_CONFIG,
        }, logger=log)
        self._checked = False

    @property
    def where(self) -> str:
        return f"kafka {self.brokers} topic {self.topic}"

    def send(self, command: ControlCommand) -> ControlCommand:
        self._check_topic()
        message = encode(CONTROL_TOPIC, command)
        failures: list = []
        self._producer.produce(self.topic, message.value, message.key, headers=list(message.headers),
                               on_delivery=lambda err, _msg: failures.append(err) if err is not None else None)
        if self._producer.flush(self.timeout_s + 1.0) > 0:
            raise ControlNotDelivered(f"{command.kind.value} not acknowledged by {self.brokers} within "
                                      f"{self.timeout_s:g} s: is the broker up?")
        if failures:
            raise ControlNotDelivered(f"{command.kind.value} refused by {self.brokers} ({self.topic}): "
                                      f"{failures[0].str()}")
        return command

    def _check_topic(self) -> None:
        """A missing topic would only fail after the whole delivery timeout, with a vaguer reason."""
        if self._checked:
            return
        from confluent_kafka import KafkaError, KafkaException

        try:
            metadata = self._producer.list_topics(self.topic, timeout=self.timeout_s)
        except KafkaException as exc:
            raise ControlNotDelivered(f"cannot reach Kafka at {self.brokers} within {self.timeout_s:g} s: "
                                      f"{exc.args[0].str() if exc.args else exc}") from None
        found = metadata.topics.get(self.topic)
        if found is None or (found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            prefix = self.topic[: -len(CONTROL_TOPIC)]
            raise ControlNotDelivered(f"topic {self.topic} does not exist on {self.brokers}: create the catalog's "
                                      f"topics with `tapeflow topics create --brokers {self.brokers}"
                                      f"{f' --prefix {prefix}' if prefix else ''}`, or check --prefix")
        self._checked = True
