"""End-of-tape markers: how a finite tape's end travels through the split topology's topics.

A feed that reaches the end of a finite tape (a replay file, ``--max-ticks``, ``--duration``; never
a stop by Ctrl-C, nor a live tape) publishes one marker on every partition of ``md.raw``. A stage
that has read a marker on every partition of every input of the tape (``control`` is not tape: it
is compacted and never ends) flushes what an embedded run flushes at its end (open bars, held
cross-sections, queued desk events) and then publishes one marker on every partition of each topic
it writes. The sink, once it has every stage's markers, has landed the whole tape.

**On the wire.** A marker is a message of its own on the partition it closes:

- header ``tapeflow-end-of-tape``: the tape's id (the run id);
- key ``end-of-tape``;
- value, one small JSON object (so every message of a topic stays one JSON object)::

      {"end_of_tape": "<tape id>", "stage": "market", "topic": "md.bars", "partition": 2,
       "partitions": 4, "topics": ["md.trades", ...], "stages": ["market", "signals", ...]}

  ``stage`` wrote it (``feed`` on md.raw); ``topics``: every topic that stage marks, so a reader
  of several topics knows which markers are still to come; ``stages``: the run's stages, as the
  feed knew them (each stage copies them on).

A consumer of tapeflow's topics that reads records should skip messages with the header: their
value is no record of the topic. tapeflow's own decoder (:mod:`topics.kafka_records`) looks for the
header only on a message that failed to decode as a record (a marker has none of a record's
fields), so the markers cost the hot path nothing, and turns it into an :class:`EndOfTape` item
instead of a dead letter.

Engine-free: the Bytewax source and the warehouse sink (or a Quix Streams one) use the same
:class:`StageTapeEnds` / :class:`RunTapeEnds`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterable

import orjson

END_OF_TAPE_HEADER = "tapeflow-end-of-tape"
END_OF_TAPE_KEY = b"end-of-tape"
FEED = "feed"  # the stage name of md.raw's markers
NOT_TAPE = frozenset({"control"})  # compacted, written by operators any time: it never ends

Slot = tuple[str, int]


@dataclass(frozen=True)
class EndOfTape:
    """One marker as read: ``topic`` is the bare catalog name, ``offset`` where it was read (-1 if
    not read from Kafka)."""

    tape: str
    stage: str
    topic: str
    partition: int
    partitions: int
    topics: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    offset: int = -1

    def value(self) -> bytes:
        return orjson.dumps({"end_of_tape": self.tape, "stage": self.stage, "topic": self.topic,
                             "partition": self.partition, "partitions": self.partitions,
                             "topics": list(self.topics), "stages": list(self.stages)})

    def headers(self) -> list[tuple[str, bytes]]:
        return [(END_OF_TAPE_HEADER, self.tape.encode())]


def end_of_tape_header(headers) -> bytes | None:
    """The tape id a message's headers name, if the message is a marker."""
    for name, value in headers or ():
        if name == END_OF_TAPE_HEADER:
            return value
    return None


def read_marker(topic: str, headers, value: bytes | None, offset: int = -1) -> EndOfTape | None:
    """The marker a message is, or None when it is none (no header, or a value that is not one)."""
    tape = end_of_tape_header(headers)
    if tape is None:
        return None
    try:
        data = orjson.loads(value or b"")
        return EndOfTape(tape=str(data["end_of_tape"]), stage=str(data["stage"]), topic=topic,
                         partition=int(data["partition"]), partitions=int(data["partitions"]),
                         topics=tuple(data.get("topics", ())), stages=tuple(data.get("stages", ())),
                         offset=offset)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # a header without a marker's value: the caller dead-letters the message


def publish_end_of_tape(producer, topics: Iterable[str], tape: str, stage: str, stages: Iterable[str] = (),
                        prefix: str = "", timeout_s: float = 60.0) -> int:
    """One marker on every partition of each of ``topics`` (bare names) through a confluent-kafka
    ``producer``, flushed; returns how many. Raises if the broker did not take them all: a run
    that lost its end would otherwise wait for it forever."""
    topics = tuple(topics)
    failures: list[str] = []
    sent = 0
    for topic in topics:
        name = prefix + topic
        meta = producer.list_topics(name, timeout=timeout_s).topics[name]
        if meta.error is not None:
            raise RuntimeError(f"cannot mark the end of tape on {name}: {meta.error}")
        count = len(meta.partitions)
        for partition in range(count):
            marker = EndOfTape(tape, stage, topic, partition, count, topics, tuple(stages))
            producer.produce(name, marker.value(), END_OF_TAPE_KEY, partition=partition, headers=marker.headers(),
                             on_delivery=lambda err, _msg: failures.append(err.str()) if err else None)
            sent += 1
    left = producer.flush(timeout_s)
    if left or failures:
        raise RuntimeError(f"end-of-tape markers not delivered: {left} pending, failures {failures[:3]}")
    return sent


@dataclass
class StageTapeEnds:
    """A stage's view of the end of its tape, shared by its source partitions (in one process).

    Each partition of a tape topic ends at its own marker; a partition of a topic that is not tape
    (``control``; the risk stage's ``exec.reports``, written downstream of it) ends once every
    tape partition of this process has. ``complete`` then: the stage flushes and marks its outputs.

    Counted over the partitions built in this process, so a stage spread over several processes
    (a Bytewax cluster) ends each process's control with that process's tape partitions. A stage
    takes any tape's marker as its own (it is not told its run id): a run's topics must not hold an
    earlier finite tape it would read (a topic prefix per run, or stages that start past it).
    """

    not_tape: frozenset[str] = NOT_TAPE  # bare names
    prefix: str = ""  # of the topic names in the slots
    tape_parts: set[Slot] = field(default_factory=set)
    ended: dict[Slot, EndOfTape] = field(default_factory=dict)
    # how many markers this process put on the stage's outputs, once it has: the stage's producer
    # marks them at its end of input, so the exit after it does not mark them again
    marked: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def is_tape(self, topic: str) -> bool:
        """``topic``: as in the slots (prefixed)."""
        bare = topic[len(self.prefix):] if self.prefix and topic.startswith(self.prefix) else topic
        return bare not in self.not_tape

    def add(self, slot: Slot) -> None:
        if self.is_tape(slot[0]):
            with self._lock:
                self.tape_parts.add(slot)

    def on_marker(self, slot: Slot, marker: EndOfTape) -> None:
        with self._lock:
            self.ended[slot] = marker

    @property
    def complete(self) -> bool:
        """Every tape partition of this process has its marker."""
        with self._lock:
            return bool(self.tape_parts) and self.tape_parts <= self.ended.keys()

    def tape_id(self) -> str:
        return next(iter(self.ended.values())).tape

    def stages(self) -> tuple[str, ...]:
        """The run's stages, as the markers read name them."""
        return next((m.stages for m in self.ended.values() if m.stages), ())


@dataclass
class RunTapeEnds:
    """The warehouse sink's view: the run's tape is complete when md.raw has the feed's marker on
    every partition and every stage the feed named has put its marker on every partition of every
    topic it marks. Several stages mark ``dlq``, so markers count per (stage, topic, partition);
    only the markers of the tape the feed's markers name count (topics that hold an earlier tape's
    markers too end at this tape's).

    ``reads_feed`` False: a sink that does not read md.raw (``--no-raw``) never sees the feed's
    markers; it learns the run's stages from the stages' own markers (each copies the feed's list
    on) and ends at the first tape every one of those stages has marked completely."""

    seen: set[tuple[str, str, str, int]] = field(default_factory=set)  # (tape, stage, topic, partition)
    stages: tuple[str, ...] = ()
    topics_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    partitions_of: dict[str, int] = field(default_factory=dict)
    tape: str | None = None
    reads_feed: bool = True
    stages_of: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tape -> the stages its markers name
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_marker(self, marker: EndOfTape) -> None:
        with self._lock:
            self.seen.add((marker.tape, marker.stage, marker.topic, marker.partition))
            self.topics_of.setdefault(marker.stage, marker.topics or (marker.topic,))
            self.partitions_of[marker.topic] = marker.partitions
            if marker.stages:
                self.stages_of.setdefault(marker.tape, marker.stages)
            if marker.stage == FEED and marker.stages:
                self.stages = marker.stages
                self.tape = marker.tape

    def _marked(self, tape: str, stages: Iterable[str]) -> bool:
        for stage in stages:
            topics = self.topics_of.get(stage)
            if topics is None:
                return False
            for topic in topics:
                count = self.partitions_of.get(topic)
                if count is None or not all((tape, stage, topic, p) in self.seen for p in range(count)):
                    return False
        return True

    @property
    def complete(self) -> bool:
        with self._lock:
            if self.reads_feed:
                if not self.stages:
                    return False  # no feed marker yet, or a feed that did not name the run's stages
                return self._marked(self.tape, (FEED, *(s for s in self.stages if s != "sink")))
            for tape, stages in self.stages_of.items():
                if self._marked(tape, (s for s in stages if s != "sink")):
                    self.tape, self.stages = tape, stages
                    return True
            return False
