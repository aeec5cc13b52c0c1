"""Kafka fixtures: one real broker per test session, a fresh set of catalog topics per test.

Where the broker comes from, in order:
1. ``TAPEFLOW_KAFKA_BOOTSTRAP`` (any Kafka you run yourself);
2. :class:`tapeflow.broker.LocalBroker` in a temp folder, when ``java`` is on PATH and the Kafka
   jars are cached or ``mvn`` is on PATH to fetch them;
3. a testcontainers Kafka, when a Docker engine answers;
4. otherwise the Kafka tests skip, naming what is missing, or fail when ``TAPEFLOW_REQUIRE_KAFKA=1``
   (CI sets it, so a CI without Kafka can never look green).

Tests never share topics: ``kafka_topics`` creates the whole catalog under a prefix of its own
(``t<hex>.md.raw``, ...) and deletes it afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from topics.admin import create_topics, delete_topics, topic_messages, topic_name
from topics.catalog import TOPICS

BOOTSTRAP_ENV = "TAPEFLOW_KAFKA_BOOTSTRAP"
REQUIRE_ENV = "TAPEFLOW_REQUIRE_KAFKA"
NO_KAFKA = ("no Kafka: set TAPEFLOW_KAFKA_BOOTSTRAP, or install java (17+) and maven, "
            "or run a Docker engine")


def _no_kafka(detail: str) -> None:
    message = f"{NO_KAFKA} ({detail})"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
    pytest.skip(message)


def _docker_answers(timeout_s: float = 3.0) -> bool:
    """A Docker engine answers /_ping on its unix socket (the client alone is not enough)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote engine: let testcontainers try it and report its own error
    path = host[len("unix://"):]
    if not Path(path).exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(256)
    except OSError:
        return False


def local_broker_possible() -> tuple[bool, str]:
    from tapeflow.broker import default_cache_dir, kafka_version

    if shutil.which("java") is None:
        return False, "java not on PATH"
    cached = (default_cache_dir() / f"kafka-{kafka_version()}" / "lib" / ".complete").exists()
    if not cached and shutil.which("mvn") is None:
        return False, "mvn not on PATH and no cached Kafka jars"
    return True, ""


@dataclass(frozen=True)
class SessionKafka:
    bootstrap: str
    origin: str  # "environment" | "local broker" | "testcontainers"
    local: object | None = None  # the LocalBroker when this session started one


@pytest.fixture(scope="session")
def session_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionKafka]:
    """The session's Kafka and where it came from."""
    external = os.environ.get(BOOTSTRAP_ENV)
    if external:
        yield SessionKafka(external, "environment")
        return
    possible, why_not = local_broker_possible()
    if possible:
        from tapeflow.broker import LocalBroker

        broker = LocalBroker(tmp_path_factory.mktemp("kafka"), tied_to_parent=True,
                             say=lambda message: print(f"[kafka fixture] {message}", file=sys.stderr, flush=True))
        status = broker.start(timeout_s=90)  # a BrokerError here is a real failure, not a skip
        try:
            yield SessionKafka(status.bootstrap, "local broker", broker)
        finally:
            broker.stop()
        return
    if _docker_answers():
        try:
            from testcontainers.kafka import KafkaContainer
        except ImportError:
            _no_kafka(f"{why_not}; a Docker engine answers but testcontainers is not installed: "
                      f"pip install 'testcontainers[kafka]'")
        with KafkaContainer() as container:
            yield SessionKafka(container.get_bootstrap_server(), "testcontainers")
        return
    _no_kafka(f"{why_not}; no Docker engine answers")


@pytest.fixture(scope="session")
def kafka_bootstrap(session_kafka: SessionKafka) -> str:
    """``HOST:PORT`` of a real Kafka broker for the whole session."""
    return session_kafka.bootstrap


@dataclass(frozen=True)
class KafkaTopicSet:
    """The catalog's topics under one test's prefix."""

    bootstrap: str
    prefix: str

    def name(self, topic: str) -> str:
        return topic_name(topic, self.prefix)


@pytest.fixture
def kafka_topics(kafka_bootstrap: str) -> Iterator[KafkaTopicSet]:
    """Every catalog topic, created fresh under a prefix of this test's own, deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    create_topics(kafka_bootstrap, prefix=prefix)
    try:
        yield KafkaTopicSet(kafka_bootstrap, prefix)
    finally:
        delete_topics(kafka_bootstrap, [topic_name(t.name, prefix) for t in TOPICS])


def consume_messages(bootstrap: str, topic: str, count: int, timeout_s: float = 20.0) -> list:
    """The first ``count`` messages of ``topic`` from the earliest offset (confluent-kafka
    ``Message`` objects); fails naming how many arrived when fewer do within ``timeout_s``."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    # fetch.wait.max.ms: an empty partition would otherwise hold each fetch for 500 ms
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, "fetch.wait.max.ms": 20})
    # assign every partition rather than subscribe: no group join, which costs ~0.5 s per consumer
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=min(10_000, count - len(messages)), timeout=0.1):
                if message.error() is not None:
                    raise AssertionError(f"consuming {topic}: {message.error()}")
                messages.append(message)
    finally:
        consumer.close()
    assert len(messages) >= count, f"{topic}: {len(messages)} of {count} messages within {timeout_s:.0f}s"
    return messages


def topic_message_count(bootstrap: str, topic: str) -> int:
    """Messages in ``topic`` now (sum of high minus low watermarks): checks that nothing extra landed."""
    return topic_messages(bootstrap, topic)[0]
