"""Consumer lag of split-topology stages: the offsets in each stage's Bytewax recovery snapshot
against the end offsets of the topics it reads.

Bytewax stages track their Kafka offsets in their recovery store, not in a consumer group, so the
recovery directory is where such a stage's position is. Reading it is read-only: the stage may be
running. The warehouse sink is a consumer group (Quix Streams): its position is the group's
committed offsets (:func:`group_lag`, or :func:`sink_group_lag` for every group sink on a broker).
"""

from __future__ import annotations

import functools
import pickle
import sqlite3
from dataclasses import dataclass
from pathlib import Path

OFFSET_BEGINNING = -2  # librdkafka's logical offset, what a Kafka source resumes from before its first message
SINK_GROUP_PREFIX = "tapeflow-sink."  # the group sink's consumer groups (sinks.group_sink.sink_group)


@dataclass(frozen=True)
class PartitionLag:
    stage: str
    topic: str
    partition: int
    offset: int  # the next offset the stage will read
    end: int  # the topic partition's end offset

    @property
    def lag(self) -> int:
        return max(self.end - self.offset, 0)


def recovery_offsets(recovery_dir: Path) -> dict[tuple[str, int], int]:
    """``(topic, partition) -> next offset`` from the latest committed snapshot of every Kafka
    source partition in a Bytewax recovery directory."""
    offsets: dict[tuple[str, int], int] = {}
    for db in sorted(Path(recovery_dir).glob("part-*.sqlite3")):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            try:
                committed = conn.execute("SELECT min(commit_epoch) FROM commits").fetchone()[0]
            except sqlite3.OperationalError:  # the stage is creating its recovery store just now
                continue
            if committed is None:
                continue
            rows = conn.execute(
                "SELECT state_key, ser_change FROM snaps s WHERE step_id LIKE '%kafka_input' AND snap_epoch = "
                "(SELECT max(snap_epoch) FROM snaps t WHERE t.step_id = s.step_id AND t.state_key = s.state_key "
                "AND t.snap_epoch <= ?)",
                (committed,),
            ).fetchall()
        for state_key, change in rows:
            partition, topic = state_key.split("-", 1)
            offset = pickle.loads(change) if change is not None else None
            if isinstance(offset, tuple):  # (offset, end-of-tape markers read): flows/kafka_source.py
                offset = offset[0]
            if offset == OFFSET_BEGINNING:  # nothing read yet from a partition read from its start
                offset = 0
            if isinstance(offset, int) and offset >= 0:
                offsets[(topic, int(partition))] = offset
    return offsets


class EndOffsets:
    """End offsets of many partitions in one ListOffsets request, through one long-lived client.

    ``tapeflow run --brokers`` asks every progress interval: a new consumer per stage per question
    and one request per partition came to ~200 requests/s (connections, metadata, coordinator
    lookups) on a broker that also carries the tape. One per broker address and process
    (:func:`stage_lag` keeps them), its admin client made at the first question."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self._admin = None

    def __call__(self, partitions: list[tuple[str, int]], timeout_s: float = 10.0) -> dict[tuple[str, int], int]:
        from topics.admin import ask_end_offsets

        if not partitions:
            return {}
        futures = ask_end_offsets(self.admin(), partitions, timeout_s)
        try:
            return {slot: future.result().offset for slot, future in futures.items()}
        except Exception:
            # a broker restarted on its folder answers a client holding its old leader epochs with
            # FENCED_LEADER_EPOCH for good: the next question goes through a new client
            self._admin = None
            raise

    def admin(self):
        """This broker's admin client (made at the first question)."""
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        return self._admin


@functools.cache
def _end_offsets_of(bootstrap: str) -> EndOffsets:
    return EndOffsets(bootstrap)


def stage_lag(bootstrap: str, recovery_dirs: dict[str, Path], timeout_s: float = 10.0) -> list[PartitionLag]:
    """Every stage's partitions against their end offsets, asked in one request through the
    process's client for ``bootstrap`` (the run's progress line and the dashboard ask every few
    seconds)."""
    offsets = {stage: recovery_offsets(directory) for stage, directory in sorted(recovery_dirs.items())}
    end = _end_offsets_of(bootstrap)(sorted({tp for stage_offsets in offsets.values() for tp in stage_offsets}),
                                     timeout_s)
    return [PartitionLag(stage, topic, part, offset, end[(topic, part)])
            for stage, stage_offsets in offsets.items() for (topic, part), offset in sorted(stage_offsets.items())]


def group_lag(bootstrap: str, group: str, prefix: str = "", timeout_s: float = 10.0) -> list[PartitionLag]:
    """A consumer group's committed offsets on every catalog topic (under ``prefix``) against the
    end offsets; a partition the group has committed nothing on lags by its whole length. The
    ``stage`` of each row is the group."""
    from confluent_kafka import Consumer, TopicPartition

    from topics.catalog import TOPICS

    # Asking for committed offsets joins no group: the running members are not disturbed.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "log_level": 0})
    try:
        slots = [TopicPartition(f"{prefix}{t.name}", p) for t in TOPICS for p in range(t.partitions)]
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(slots, timeout=timeout_s)}
    finally:
        consumer.close()
    end = _end_offsets_of(bootstrap)(sorted(committed), timeout_s)
    return [PartitionLag(group, topic, part, max(offset, 0), end[(topic, part)])
            for (topic, part), offset in sorted(committed.items())]


def sink_group_lag(bootstrap: str, timeout_s: float = 10.0) -> list[PartitionLag]:
    """Every group sink on the broker (a consumer group named ``SINK_GROUP_PREFIX...``): its
    committed offsets against the end offsets, ``stage`` being the group. Only the partitions the
    group has committed on are listed: which topics a group reads is known without joining it only
    from its commits (:func:`group_lag` lists a known prefix's every partition)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    end_offsets = _end_offsets_of(bootstrap)
    admin = end_offsets.admin()
    listed = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout=timeout_s)
    groups = sorted(g.group_id for g in listed.valid if g.group_id.startswith(SINK_GROUP_PREFIX))
    committed: dict[str, dict[tuple[str, int], int]] = {}
    for group in groups:  # the admin API takes one group per request
        (future,) = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                      request_timeout=timeout_s).values()
        committed[group] = {(tp.topic, tp.partition): tp.offset
                            for tp in future.result(timeout=timeout_s).topic_partitions if tp.offset >= 0}
    end = end_offsets(sorted({slot for offsets in committed.values() for slot in offsets}), timeout_s)
    return [PartitionLag(group, topic, part, offset, end[(topic, part)])
            for group, offsets in committed.items() for (topic, part), offset in sorted(offsets.items())]
