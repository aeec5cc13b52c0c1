"""Where a split stage's recovery state came from: the Kafka cluster and the incarnation of its topics.

A Bytewax recovery snapshot holds Kafka offsets. They mean something only on the cluster, and for
the topics, they were read from: resumed against another broker (a new local broker, a reset
compose volume) or against topics deleted and created again, a stage would skip or re-read the
tape without a word. So a recovery folder records its origin (the cluster id and every catalog
topic's id, both from the admin client) on first use, and a later start compares: a mismatch is a
:class:`StaleRecovery` that names the folder and how to start fresh.

A split run also records, once, where its tape starts: every catalog topic's end offsets before its
feed publishes (``run-start.json`` in the run's folder). A stage of that run that has no snapshot
yet starts there, so a second run on the same topics reads its own tape, not the first run's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from confluent_kafka import KafkaError, KafkaException

from topics.catalog import TOPICS

ORIGIN_FILE = "tapeflow-origin.json"
RUN_START_FILE = "run-start.json"


class StaleRecovery(RuntimeError):
    """A recovery folder written against another cluster or other topics; the message says what to do."""


@dataclass(frozen=True)
class TopicsOrigin:
    cluster_id: str
    topic_ids: dict[str, str]  # Kafka topic name -> topic id

    def to_dict(self) -> dict:
        return {"cluster_id": self.cluster_id, "topic_ids": dict(sorted(self.topic_ids.items()))}

    @classmethod
    def from_dict(cls, data: dict) -> "TopicsOrigin":
        return cls(str(data["cluster_id"]), {str(k): str(v) for k, v in data["topic_ids"].items()})

    def mismatch(self, now: "TopicsOrigin") -> str | None:
        """Why state recorded under ``self`` cannot resume under ``now`` (None: it can)."""
        if self.cluster_id != now.cluster_id:
            return f"it was written against Kafka cluster {self.cluster_id}, and the brokers are cluster {now.cluster_id}"
        changed = sorted(t for t, tid in self.topic_ids.items() if now.topic_ids.get(t) != tid)
        if changed:
            return (f"topic {changed[0]}" + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
                    + " has been deleted and created again since")
        return None


def _admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def current_origin(bootstrap: str, prefix: str = "", timeout_s: float = 10.0) -> TopicsOrigin:
    """The cluster id and the ids of the catalog topics under ``prefix`` that exist now."""
    from confluent_kafka import TopicCollection

    admin = _admin(bootstrap)
    cluster = admin.describe_cluster(request_timeout=timeout_s).result(timeout_s)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    names = [prefix + t.name for t in TOPICS if prefix + t.name in existing]
    ids = {}
    if names:
        for name, future in admin.describe_topics(TopicCollection(names), request_timeout=timeout_s).items():
            ids[name] = str(future.result(timeout_s).topic_id)
    return TopicsOrigin(str(cluster.cluster_id), ids)


ORIGIN_WAIT_S = 60.0


def current_origin_when_reachable(bootstrap: str, prefix: str = "", wait_s: float = ORIGIN_WAIT_S,
                                  log: Callable[[str], None] = print, timeout_s: float = 10.0) -> TopicsOrigin:
    """:func:`current_origin`, asked again while the broker does not answer (one starting, or too loaded
    to answer within ``timeout_s``), for up to ``wait_s``; then :class:`TimeoutError` with the reason."""
    deadline, attempt = time.monotonic() + wait_s, 1
    while True:
        try:
            return current_origin(bootstrap, prefix, timeout_s)
        except (KafkaException, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            if time.monotonic() + timeout_s > deadline:
                raise TimeoutError(
                    f"Kafka at {bootstrap} did not describe its cluster and topics within {wait_s:g} s "
                    f"({attempt} attempts; last: {reason}), so the recovery snapshots cannot be checked "
                    "against its topics: is the broker up and reachable?") from exc
            log(f"Kafka at {bootstrap} did not describe its cluster within {timeout_s:g} s ({reason}); asking again")
            attempt += 1
            time.sleep(1.0)


def end_offsets(bootstrap: str, prefix: str = "", timeout_s: float = 10.0) -> dict[str, int]:
    """``"topic:partition" -> end offset`` of every catalog topic under ``prefix`` that exists."""
    from topics.admin import ask_end_offsets

    admin = _admin(bootstrap)
    metadata = admin.list_topics(timeout=timeout_s).topics
    slots = [(prefix + t.name, p) for t in TOPICS if prefix + t.name in metadata
             for p in metadata[prefix + t.name].partitions]
    if not slots:
        return {}
    deadline = time.monotonic() + LEADERS_SETTLE_S
    while True:
        try:
            futures = ask_end_offsets(admin, slots, timeout_s)
            return {f"{topic}:{part}": future.result().offset for (topic, part), future in futures.items()}
        except KafkaException as exc:
            # topics just created (or a broker just restarted) may not have settled their leaders yet
            error = exc.args[0] if exc.args else None
            settling = error is not None and (error.retriable() or error.code() in UNSETTLED_LEADERS)
            if not settling or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


LEADERS_SETTLE_S = 30.0
UNSETTLED_LEADERS = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                     KafkaError.UNKNOWN_TOPIC_OR_PART}


def fresh_start_hint(directory: Path) -> str:
    return (f"start fresh with a new --run-id (or remove the folder: rm -r {directory}); "
            "the warehouse keeps every run's rows under its own run id")


def claim(directory: Path, now: TopicsOrigin) -> None:
    """Record ``now`` as the origin of a new recovery folder, or check an existing folder's record.
    Raises :class:`StaleRecovery` for state of another cluster or topic incarnation, or a snapshot
    whose origin was never recorded (it cannot be told apart from one)."""
    directory = Path(directory)
    marker = directory / ORIGIN_FILE
    if marker.exists():
        recorded = TopicsOrigin.from_dict(json.loads(marker.read_text()))
        reason = recorded.mismatch(now)
        if reason is not None:
            raise StaleRecovery(f"the recovery state in {directory} cannot resume: {reason}. {fresh_start_hint(directory)}")
        return
    if any(directory.glob("part-*.sqlite3")):
        raise StaleRecovery(f"the recovery state in {directory} records no Kafka cluster or topic ids (written by an "
                            f"older tapeflow), so it cannot be checked against these brokers. {fresh_start_hint(directory)}")
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(now.to_dict(), indent=1))


def start_run(run_dir: Path, bootstrap: str, prefix: str) -> dict[str, int]:
    """A split run's start offsets: recorded with the run's origin on its first start, checked and
    read back on a restart of the same run. Raises :class:`StaleRecovery`."""
    run_dir = Path(run_dir)
    now = current_origin(bootstrap, prefix)
    start = run_dir / RUN_START_FILE
    if start.exists():
        data = json.loads(start.read_text())
        reason = TopicsOrigin.from_dict(data["origin"]).mismatch(now)
        if reason is not None:
            raise StaleRecovery(f"the run in {run_dir} cannot resume: {reason}. {fresh_start_hint(run_dir)}")
        return {str(k): int(v) for k, v in data["start_offsets"].items()}
    offsets = end_offsets(bootstrap, prefix)
    run_dir.mkdir(parents=True, exist_ok=True)
    start.write_text(json.dumps({"origin": now.to_dict(), "start_offsets": offsets}, indent=1))
    return offsets


def read_start_offsets(path: Path) -> dict[tuple[str, int], int]:
    """``(topic, partition) -> offset`` from a run's ``run-start.json``."""
    data = json.loads(Path(path).read_text())
    out = {}
    for slot, offset in data["start_offsets"].items():
        topic, part = slot.rsplit(":", 1)
        out[(topic, int(part))] = int(offset)
    return out
