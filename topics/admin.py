"""Kafka topics from the catalog: create them idempotently, and describe what a broker holds.

Creating is safe to repeat: a topic that exists is left alone and compared with its catalog entry;
differences (partitions, cleanup policy, retention) are reported, never "fixed" behind the
operator's back — adding partitions re-maps keys to partitions, which breaks per-symbol order.

A ``prefix`` namespaces a whole set of catalog topics (``topic_name("md.raw", "t1.")`` ->
``"t1.md.raw"``): tests get topics of their own on one shared broker, and the split dataflows take
the same prefix to find them.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Iterable, Mapping

from topics.catalog import DAY_MS, TOPICS, TopicSpec

_LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
COMPARED_CONFIGS = ("cleanup.policy", "retention.ms")


class TopicAdminError(RuntimeError):
    """The broker refused or did not answer a topic request; the message names the topic."""


def topic_name(topic: str, prefix: str = "") -> str:
    """The Kafka name of catalog topic ``topic`` under ``prefix``."""
    name = f"{prefix}{topic}"
    if not _LEGAL_TOPIC.match(name):
        raise ValueError(f"{name!r} is not a legal Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
    return name


@dataclass(frozen=True)
class TopicResult:
    name: str
    action: str  # "created" | "exists" | "differs"
    detail: str = ""

    def line(self) -> str:
        return f"{self.name}: {self.action}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class TopicRow:
    """One line of ``tapeflow topics describe``."""

    name: str
    partitions: int | None  # None: in the catalog but not on the broker
    cleanup_policy: str
    retention: str
    status: str  # "ok" | "missing" | "differs: ..." | "not in catalog"


def admin_client(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 10_000})


_LEADERLESS = {6, 5, 3}  # NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PART


def topic_messages(bootstrap: str, topic: str, timeout_s: float = 10.0) -> tuple[int, int]:
    """(messages in ``topic`` now: the sum over its partitions of high minus low watermark, its
    partitions): what a run produced, for checks that nothing was lost or produced twice."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "tapeflow-count"})  # never subscribes
    try:
        marks = partition_watermarks(consumer, topic, timeout_s)
        return sum(high - low for low, high in marks.values()), len(marks)
    finally:
        consumer.close()


def partition_watermarks(consumer, topic: str, timeout_s: float = 10.0) -> dict[int, tuple[int, int]]:
    """Each partition of ``topic`` to its (low, high) watermark now, asked through ``consumer``.
    A topic just made, or a broker just back, has partitions without a leader for a moment
    (NOT_LEADER_FOR_PARTITION): those are asked again until ``timeout_s``, then the error is raised."""
    from confluent_kafka import KafkaException, TopicPartition

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            partitions = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
            return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                    for p in partitions}
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in _LEADERLESS) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def ask_end_offsets(admin, partitions: Iterable[tuple[str, int]], timeout_s: float) -> dict[tuple[str, int], Future]:
    """Each ``(topic, partition)``'s end offset, asked in one ListOffsets request; a future per
    partition, whose result's ``offset`` is the end. One request for many partitions, not one each:
    the callers ask every second or two, on a broker that also carries the tape."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    asked = {TopicPartition(topic, partition): OffsetSpec.latest() for topic, partition in partitions}
    futures = admin.list_offsets(asked, request_timeout=timeout_s)
    return {(tp.topic, tp.partition): future for tp, future in futures.items()}


def _partitions_for(spec: TopicSpec, override: int | Mapping[str, int] | None) -> int:
    if override is None:
        return spec.partitions
    if isinstance(override, int):
        # single-partition topics (control, dlq) are single so that they keep one total order
        return override if spec.partitions > 1 else spec.partitions
    return override.get(spec.name, spec.partitions)


def existing_topics(admin, bootstrap: str, timeout_s: float) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception as exc:  # KafkaException: transport failure, no broker
        raise TopicAdminError(f"no answer from Kafka at {bootstrap} within {timeout_s:.0f}s ({exc}); "
                              f"is a broker running? (`tapeflow broker start`)") from None
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def _await_usable(admin, bootstrap: str, names: list[str], timeout_s: float) -> dict[str, int]:
    """Wait until the broker serves metadata with a leader for every partition of ``names``: a
    create request returns when the controller has the topic, a moment before the broker that
    answers produce and describe requests knows it. Returns their partition counts."""
    if not names:
        return {}
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        ready = {n: len(topics[n].partitions) for n in names
                 if n in topics and topics[n].error is None and topics[n].partitions
                 and all(p.leader >= 0 for p in topics[n].partitions.values())}
        if len(ready) == len(names):
            return ready
        if time.monotonic() > deadline:
            raise TopicAdminError(f"topics created on {bootstrap} but not usable within {timeout_s:.0f}s: "
                                  f"{sorted(set(names) - set(ready))}")
        time.sleep(0.05)  # metadata propagation has no event a client can await


def _topic_configs(admin, names: Iterable[str], timeout_s: float) -> dict[str, dict[str, str]]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    if not resources:
        return {}
    futures = admin.describe_configs(resources, request_timeout=timeout_s)
    configs = {}
    for resource, future in futures.items():
        entries = future.result(timeout=timeout_s)
        configs[resource.name] = {key: entry.value for key, entry in entries.items()}
    return configs


def _differences(spec: TopicSpec, partitions: int, actual_partitions: int, actual: Mapping[str, str]) -> list[str]:
    found = []
    if actual_partitions != partitions:
        found.append(f"partitions {actual_partitions} on the broker, {partitions} in the catalog")
    wanted = spec.configs()
    for key in COMPARED_CONFIGS:
        if key in wanted and actual.get(key) != wanted[key]:
            found.append(f"{key} {actual.get(key)!r} on the broker, {wanted[key]!r} in the catalog")
    return found


def create_topics(bootstrap: str, catalog: Iterable[TopicSpec] = TOPICS,
                  partitions_override: int | Mapping[str, int] | None = None, *, prefix: str = "",
                  replication_factor: int = -1, timeout_s: float = 30.0) -> list[TopicResult]:
    """Create every catalog topic that is missing (under ``prefix``); compare the others with the
    catalog. ``replication_factor=-1`` takes the broker's default (1 on the local broker)."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic

    specs = list(catalog)
    admin = admin_client(bootstrap)
    existing = existing_topics(admin, bootstrap, timeout_s)
    wanted = {topic_name(s.name, prefix): (s, _partitions_for(s, partitions_override)) for s in specs}
    missing = [NewTopic(name, num_partitions=n, replication_factor=replication_factor, config=s.configs())
               for name, (s, n) in wanted.items() if name not in existing]
    results: dict[str, TopicResult] = {}
    raced: list[str] = []  # created by someone else between our look and our request
    if missing:
        for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                results[name] = TopicResult(name, "created", _plural(wanted[name][1], "partition"))
            except Exception as exc:
                error = exc.args[0] if exc.args else None
                if getattr(error, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                    raced.append(name)
                    continue
                raise TopicAdminError(f"creating topic {name} on {bootstrap} failed: {exc}") from None
    created = [name for name in results if results[name].action == "created"]
    visible = _await_usable(admin, bootstrap, created + raced, timeout_s)
    existing.update({name: visible[name] for name in raced})
    present = [name for name in wanted if name not in results]
    configs = _topic_configs(admin, present, timeout_s)
    for name in present:
        spec, partitions = wanted[name]
        found = _differences(spec, partitions, existing[name], configs.get(name, {}))
        results[name] = TopicResult(name, "differs", "; ".join(found)) if found else TopicResult(name, "exists")
    return [results[name] for name in wanted]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _retention_text(configs: Mapping[str, str]) -> str:
    if configs.get("cleanup.policy", "") == "compact":
        return "compacted"
    ms = int(configs.get("retention.ms", "-1"))
    if ms < 0:
        return "forever"
    return f"{ms / DAY_MS:g}d" if ms % (DAY_MS // 24) == 0 else f"{ms}ms"


def describe_topics(bootstrap: str, *, prefix: str = "", catalog: Iterable[TopicSpec] = TOPICS,
                    timeout_s: float = 30.0) -> list[TopicRow]:
    """Every catalog topic (under ``prefix``) with what the broker holds, then the broker's other
    non-internal topics under the prefix."""
    admin = admin_client(bootstrap)
    existing = existing_topics(admin, bootstrap, timeout_s)
    specs = {topic_name(s.name, prefix): s for s in catalog}
    others = sorted(n for n in existing if n.startswith(prefix) and n not in specs and not n.startswith("__"))
    configs = _topic_configs(admin, [n for n in [*specs, *others] if n in existing], timeout_s)
    rows = []
    for name, spec in specs.items():
        if name not in existing:
            rows.append(TopicRow(name, None, spec.configs()["cleanup.policy"], _retention_text(spec.configs()),
                                 "missing"))
            continue
        found = _differences(spec, spec.partitions, existing[name], configs[name])
        rows.append(TopicRow(name, existing[name], configs[name].get("cleanup.policy", ""),
                             _retention_text(configs[name]), "differs: " + "; ".join(found) if found else "ok"))
    for name in others:
        rows.append(TopicRow(name, existing[name], configs[name].get("cleanup.policy", ""),
                             _retention_text(configs[name]), "not in catalog"))
    return rows


def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics (tests clean up their prefixed sets); a topic already gone is not an error."""
    from confluent_kafka import KafkaError

    names = list(names)
    if not names:
        return
    admin = admin_client(bootstrap)  # held until every future is done: a collected client cancels them
    for name, future in admin.delete_topics(names, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:
            error = exc.args[0] if exc.args else None
            if getattr(error, "code", lambda: None)() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise TopicAdminError(f"deleting topic {name} on {bootstrap} failed: {exc}") from None
