"""The Kafka source of a split-topology stage: catalog topics in, records (and dead letters) out.

Every stage reads topics of the catalog and writes topics of the catalog; a ``prefix`` in front of
every topic name lets several pipelines (or tests) share one broker. Messages that do not decode
into their topic's record (not JSON, the wrong schema, oversized) become DeadLetters with the
reason from :mod:`topics.serde` and the raw bytes, never an exception that stops the stage.

Delivery: a stage's source resumes from the offsets in its recovery snapshot; its producer is
flushed at the end of every epoch, before the epoch's offsets are committed, so output is
at-least-once (messages of the resumed epoch are produced again). Consumers therefore deduplicate:
see README "Effectively-once". Source and producer are lean versions of Bytewax's Kafka connectors
(below): records are decoded in the source partitions and produced from tuples, with no
per-message object or step in between, which took a third of a stage's time.

A broker that goes away and comes back (a restart, a network blip) is ridden out, not reported:
librdkafka reconnects by itself, the consumer fetches on from the offset it had, and the idempotent
producer re-sends what was in flight without duplicates (the restarted broker keeps its producer
state). So a consumer error that only says the broker is unreachable is logged and dropped, never
dead-lettered as a record, and never ends a partition (only ``_PARTITION_EOF`` does, with
``tail=False``). Reconnect back-off is capped at a second, so a stage resumes within about a second
of the broker's return; a consumer that still fetches nothing while the broker holds messages past
its offset gets a new consumer (see :class:`_KafkaPartition`). A message the producer could not
deliver within ``message.timeout.ms`` (5 minutes) raises from the producer's poll or flush and stops
the stage, which then resumes from its last snapshot: an outage longer than that costs a restart,
never a silently missing message.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from typing import Callable

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ClientError
from confluent_kafka.admin import AdminClient

from topics.admin import ask_end_offsets
from topics.end_of_tape import RunTapeEnds, StageTapeEnds
from topics.kafka_records import CLIENT_CONFIG, KafkaEndpoint, MarkedBatch, decoder, undecoded

log = logging.getLogger(__name__)


# A partition that delivers nothing while the broker holds messages past its offset is checked
# every STALL_CHECK_S; after STALL_AFTER_S of that its worker's consumer is replaced. A healthy
# consumer fetches within fetch.wait.max.ms (0.5 s) and reconnects within a second of the broker's return.
STALL_CHECK_S = 2.0
STALL_AFTER_S = 6.0
# Messages a worker's consumer may hold for its partitions before it stops fetching more: Bytewax
# takes each partition's share every round, so this only bounds a partition it has paused.
BUFFERED_MAX = 20_000
# A batch this small means the partition has caught up: a paused partition waits before the next.
CAUGHT_UP_BELOW = 1_000
# The pause of a partition that has caught up, in a stage that reads the tape itself (normalize,
# bars, trading): at 5,000 ticks/s it turns ~5-tick batches into ~10-tick ones and costs each such
# hop at most this much latency. Sparse stages (features, signals) keep Bytewax's 1 ms; the
# warehouse sink, off the tick-to-order path, pauses SINK_PAUSE_S.
PAUSE_DENSE_S = 0.002
SINK_PAUSE_S = 0.05

Slot = tuple[str, int]  # (topic, partition)


class _WorkerConsumer:
    """One consumer for every partition of a source that a Bytewax worker reads (``assign``, no
    group: the offsets live in the stage's recovery snapshot).

    One consumer per partition (Bytewax's way) cost the `trading` stage thirteen consumers, each
    with its own fetch requests and threads, which on two cores took the CPU the tick-to-order path
    needed; one consumer fetches every partition of the broker in one request. Each poll hands its
    messages to the partitions' queues; a partition delivers its own queue, in offset order."""

    def __init__(self, connect: Callable[[list[TopicPartition]], Consumer], batch_size: int):
        self._connect = connect
        self._batch_size = batch_size
        self._consumer: Consumer | None = None
        self._parts: dict[Slot, _KafkaPartition] = {}
        self._queues: dict[Slot, list] = {}
        self._buffered = 0

    def add(self, part: "_KafkaPartition") -> None:
        slot = (part.topic, part.partition)
        self._parts[slot] = part
        self._queues[slot] = []
        at = TopicPartition(part.topic, part.partition, part.offset)
        if self._consumer is None:
            self._consumer = self._connect([at])
        else:
            self._consumer.incremental_assign([at])

    def take(self, slot: Slot) -> list:
        """The messages (and errors) fetched for ``slot`` so far, polling once (without waiting:
        Bytewax pauses an empty partition itself) when it has none."""
        queue = self._queues[slot]
        if not queue and self._buffered < BUFFERED_MAX:
            self._poll()
        if not queue:
            return queue
        self._queues[slot] = []
        self._buffered -= len(queue)
        return queue

    def _poll(self) -> None:
        queues = self._queues
        got = self._consumer.consume(self._batch_size, 0)
        for msg in got:
            queue = queues.get((msg.topic(), msg.partition()))
            if queue is None:
                if msg.error() is None:
                    continue  # a partition that has ended: nothing of it is delivered any more
                queue = next(iter(queues.values()))  # an error about no partition of ours: anyone's
            queue.append(msg)
            self._buffered += 1

    def slots(self) -> list[Slot]:
        return list(self._parts)

    def high_seen(self, slot: Slot) -> int:
        """The end of ``slot`` as this consumer's own fetches last saw it."""
        return self._consumer.get_watermark_offsets(TopicPartition(*slot), cached=True)[1]

    def reconnect(self) -> None:
        """A new consumer at every partition's delivered offset; what was fetched but not
        delivered is dropped, and fetched again."""
        self._consumer.close()
        for queue in self._queues.values():
            queue.clear()
        self._buffered = 0
        self._consumer = self._connect([TopicPartition(t, p, part.offset) for (t, p), part in self._parts.items()])

    def remove(self, slot: Slot) -> None:
        """Stop fetching ``slot`` (idempotent: a partition ended at its marker is removed then, and
        again when the dataflow closes it)."""
        self._buffered -= len(self._queues.pop(slot, []))
        if self._parts.pop(slot, None) is None:
            return
        if not self._parts and self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        elif self._consumer is not None:
            self._consumer.incremental_unassign([TopicPartition(*slot)])


class _EndOffsetQuestions:
    """The broker's end offsets for a worker's partitions, asked for all of them in one ListOffsets
    request at most every ``STALL_CHECK_S / 2``: a partition that asks within that time gets the
    answer (or the pending question) already out. Each quiet partition asking on its own (the sink
    reads every partition of every topic) was ~150 requests/s at 5,000 ticks/s."""

    def __init__(self, admin: Callable[[], AdminClient], slots: Callable[[], list[Slot]],
                 clock: Callable[[], float] = time.monotonic):
        self._admin = admin
        self._slots = slots
        self._clock = clock
        self._asked_at = float("-inf")
        self._answers: dict[Slot, Future] = {}

    def ask(self, slot: Slot) -> Future:
        now = self._clock()
        answer = self._answers.get(slot)
        if answer is None or now - self._asked_at >= STALL_CHECK_S / 2:
            self._answers = ask_end_offsets(self._admin(), self._slots(), timeout_s=10.0)
            self._asked_at = now
            answer = self._answers[slot]
        return answer


class _KafkaPartition(StatefulSourcePartition):
    """One topic partition, read through its worker's :class:`_WorkerConsumer`, resuming at the
    offset after the last message it delivered.

    Bytewax 0.21's own partition is replaced for four reasons:

    - Its resume offset moved past every item of a batch, consumer errors included: an error
      reported at the fetch offset X (or with no offset, -1001) made the snapshot X+1 (or -1000,
      librdkafka's "stored offset", which resets to the end), so a stage resumed from a snapshot
      taken just then skipped input. Here the offset moves past messages only.
    - An ``assign``-ed librdkafka consumer can stop fetching for good after a broker restart
      (reported upstream, confluentinc/librdkafka#5153; seen here once in some sixty restarts: the
      trading stage's md.quotes consumer never fetched again, so the desk waited forever; an
      ``--until-end`` stage would never see its end). A partition that delivers nothing for
      ``STALL_AFTER_S`` while the broker reports messages past its offset, and its consumer has
      not even seen them (its cached high watermark is behind), gets its worker a new consumer,
      every partition at its own offset.
    - It wrapped every message in a ``KafkaSourceMessage`` for a decoding step downstream; here
      ``decode`` turns the consumer's messages into records in the same call.
    - It had a consumer per partition; here a worker's partitions share one (see
      :class:`_WorkerConsumer`).

    ``pause_s``: after a batch smaller than ``CAUGHT_UP_BELOW`` (the partition has caught up with
    a live tape), the next one is taken no sooner than this. Bytewax otherwise asks again at once
    after any item and every millisecond after none, so a paced tape went through the stage a few
    ticks at a time, and the per-batch cost of its steps took most of its CPU (see
    :data:`PAUSE_DENSE_S`). A partition with a backlog (a replay) is never paused.

    ``ask_end`` asks the broker for the partition's end offset and returns a future: the question
    must not block the dataflow's thread (asked through the consumer itself, it waits behind the
    consumer's long-poll fetch, up to 500 ms), so it goes through an admin client and is read back
    at the next check.
    """

    def __init__(self, consumer: _WorkerConsumer, ask_end: Callable[[], Future], topic: str, partition: int,
                 offset: int, clock: Callable[[], float] = time.monotonic,
                 decode: Callable[[list, list], list] = undecoded, pause_s: float = 0.0,
                 tape: StageTapeEnds | RunTapeEnds | None = None, markers: tuple = (),
                 ask_end_now: Callable[[], Future] | None = None, on_unanswered: Callable[[], None] = lambda: None):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self._slot = (topic, partition)
        self._consumer = consumer
        self._ask_end = ask_end
        self._clock = clock
        self._decode = decode
        self._eof = False
        self._next_check = clock() + STALL_CHECK_S
        self._asked: Future | None = None
        self._behind_since: float | None = None
        self._pause = timedelta(seconds=pause_s) if pause_s > 0 else None
        self._awake: datetime | None = None
        # End of tape (topics/end_of_tape.py): the markers this partition has read, kept in its
        # snapshot so a resumed stage still knows where its tape ended.
        self._tape = tape
        self._markers = tuple(markers)
        self._tape_part = type(tape) is StageTapeEnds and tape.is_tape(topic)
        self._end_asked: Future | None = None  # this partition's end offset once the tape has ended
        self._ask_end_now = ask_end_now or ask_end  # a fresh question: a cached answer may predate the end
        self._on_unanswered = on_unanswered
        if type(tape) is StageTapeEnds:
            tape.add(self._slot)
            if self._markers and self._tape_part:
                tape.on_marker(self._slot, self._markers[0])
                self._eof = True  # read up to its marker before the restart
        elif type(tape) is RunTapeEnds:
            for marker in self._markers:
                tape.on_marker(marker)
        if not self._eof:  # a partition that ended at its marker before a restart fetches nothing more
            consumer.add(self)

    def next_batch(self) -> list:
        if self._eof:
            raise StopIteration()
        if self._tape is not None and not self._tape_part and self._tape.complete and self._read_to_end():
            # the sink with the whole run's tape, or a stage's control once its tape has ended
            self._eof = True
            raise StopIteration()
        messages: list = []
        errors: list = []
        for msg in self._consumer.take(self._slot):
            err = msg.error()
            if err is None:
                messages.append(msg)
                continue
            if err.code() == ClientError._PARTITION_EOF:
                self._eof = True  # the end of a replay: this batch still goes out, StopIteration next
                break
            errors.append(KafkaError(err, KafkaSourceMessage(
                key=msg.key(), value=msg.value(), topic=msg.topic(), headers=msg.headers() or [],
                latency=msg.latency(), offset=msg.offset(), partition=msg.partition(), timestamp=msg.timestamp())))
        if self._pause is not None:
            self._awake = None if len(messages) >= CAUGHT_UP_BELOW else datetime.now(timezone.utc) + self._pause
        now = self._clock()
        if messages:
            self.offset = messages[-1].offset() + 1
            self._behind_since = None
            self._next_check = now + STALL_CHECK_S
        elif now >= self._next_check:
            self._next_check = now + STALL_CHECK_S
            self._watch(now)
        if not (messages or errors):
            return messages
        out = self._decode(messages, errors)
        return self._end_of_tape(out, messages, errors) if type(out) is MarkedBatch else out

    def _read_to_end(self) -> bool:
        """Whether this partition has read what its topic held when the tape ended: a partition with
        no marker of its own (control; the sink's every partition) ends there, so what the stages
        wrote to it before their markers (a risk alert, an operator's command) is still read."""
        if self._end_asked is None:
            self._end_asked = self._ask_end_now()
        if not self._end_asked.done():
            return False
        try:
            high = self._end_asked.result().offset
        except KafkaException:
            self._end_asked = None  # the broker is away (or was restarted): ask again, through a new client
            self._on_unanswered()
            return False
        position = self.offset if self.offset >= 0 else (0 if self.offset == OFFSET_BEGINNING else high)
        return position >= high

    def _end_of_tape(self, out: MarkedBatch, messages: list, errors: list) -> list:
        """A batch with markers: a stage's tape partition ends at its first marker (what came after
        it is not delivered, and is read again from there after a restart); the sink counts them
        all and reads on. Without a tape to end (``--until-end``, tests) markers are skipped."""
        tape = self._tape
        if type(tape) is RunTapeEnds:
            self._markers += tuple(out.markers)
            for marker in out.markers:
                tape.on_marker(marker)
            return out
        if not self._tape_part:
            return out
        marker = out.markers[0]
        if messages[-1].offset() > marker.offset:
            out = self._decode([m for m in messages if m.offset() < marker.offset], errors)
        self.offset = marker.offset + 1
        self._markers = (marker,)
        self._eof = True
        tape.on_marker(self._slot, marker)
        # Unassigned at once: Bytewax closes a partition only when the whole dataflow ends, and
        # what follows the marker (a restarted upstream stage's records and markers again) would
        # otherwise be fetched into a queue nobody takes, until the worker's buffer is full and its
        # other partitions (control, read to its end before the stage may end) starve.
        self._consumer.remove(self._slot)
        return out

    def _watch(self, now: float) -> None:
        asked, self._asked = self._asked, None
        if asked is not None and not asked.done():
            self._asked = asked  # still out (the broker is away): one question at a time
            return
        self._asked = self._ask_end()
        if asked is None:
            return
        try:
            high = asked.result().offset
        except KafkaException:
            self._on_unanswered()
            return  # the broker is away: nothing to judge yet
        # the end as the consumer's own fetches last saw it: a fetching consumer is up to date even
        # when offsets past its position hold no message (a transaction marker, say)
        seen_high = self._consumer.high_seen(self._slot)
        position = self.offset if self.offset >= 0 else (0 if self.offset == OFFSET_BEGINNING else high)
        if high <= position or seen_high >= high:
            self._behind_since = None  # at the end, or fetching: quiet is right
        elif self._behind_since is None:
            self._behind_since = now
        elif now - self._behind_since >= STALL_AFTER_S:
            log.warning("%s [%d]: no message for %.0f s with %d waiting at offset %d: a new consumer resumes there",
                        self.topic, self.partition, now - self._behind_since, high - position, self.offset)
            self._consumer.reconnect()
            self._behind_since = None

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int | tuple:
        """The next offset to read; ``(offset, markers)`` once end-of-tape markers were read
        (:func:`topics.lag.recovery_offsets` reads both)."""
        return (self.offset, self._markers) if self._markers else self.offset

    def close(self) -> None:
        self._consumer.remove(self._slot)


class _KafkaSource(KafkaSource):
    """Bytewax's Kafka source (its partition listing) with :class:`_KafkaPartition` partitions,
    one :class:`_WorkerConsumer` per worker thread."""

    def __init__(self, brokers: list[str], topics: list[str], tail: bool, starting_offset: int, batch_size: int,
                 decode: Callable[[list, list], list] = undecoded, extra_config: dict | None = None,
                 pause_s: float = 0.0, tape: StageTapeEnds | RunTapeEnds | None = None,
                 start_offset: Callable[[str, int, int], int] | None = None):
        super().__init__(brokers, topics, tail, starting_offset, CLIENT_CONFIG, batch_size, raise_on_errors=False)
        self.decode = decode
        self.pause_s = pause_s
        self.tape = tape
        self.config = {
            "bootstrap.servers": ",".join(brokers),
            "group.id": "tapeflow-offsets-in-recovery",  # required by librdkafka, never joined nor committed
            "enable.auto.commit": "false",
            "enable.partition.eof": "false" if tail else "true",
            **CLIENT_CONFIG,
            **(extra_config or {}),
        }
        self.topic_names = set(topics)
        self._admin: AdminClient | None = None
        self._workers: dict[int, tuple[_WorkerConsumer, _EndOffsetQuestions]] = {}
        self.starting_offset = starting_offset
        self.start_offset = start_offset or (lambda topic, partition, default: default)
        self.batch_size = batch_size

    def connect(self, partitions: list[TopicPartition]) -> Consumer:
        consumer = Consumer(self.config)
        consumer.incremental_assign(partitions)
        return consumer

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        index, topic = for_part.split("-", 1)
        if topic not in self.topic_names:
            raise ValueError(f"the recovery snapshot has {topic!r}, which this stage does not read")
        # Bytewax builds a worker's partitions on the worker's own thread, which alone polls them
        worker = self._workers.get(threading.get_ident())
        if worker is None:
            consumer = _WorkerConsumer(self.connect, self.batch_size)
            worker = self._workers[threading.get_ident()] = (consumer, _EndOffsetQuestions(self.admin, consumer.slots))
        consumer, questions = worker
        slot = (topic, int(index))
        # a fresh stage starts where its run's tape starts (the offsets SplitRun.begin recorded)
        offset, markers = self.start_offset(topic, int(index), self.starting_offset), ()
        if isinstance(resume_state, tuple):
            offset, markers = resume_state
        elif resume_state is not None:
            offset = resume_state
        return _KafkaPartition(consumer, lambda: questions.ask(slot), topic, int(index), offset, decode=self.decode,
                               pause_s=self.pause_s, tape=self.tape, markers=markers,
                               ask_end_now=lambda: ask_end_offsets(self.admin(), [slot], timeout_s=10.0)[slot],
                               on_unanswered=self.reset_admin)

    def reset_admin(self) -> None:
        """An end-offset question failed: the next goes through a new client. A broker restarted on
        its folder answers a client holding its old leader epochs with FENCED_LEADER_EPOCH for good,
        and a stage whose control partition must be read to its end would wait for ever."""
        self._admin = None

    def admin(self) -> AdminClient:
        if self._admin is None:  # one per source, for the partitions' end-offset questions
            self._admin = AdminClient({"bootstrap.servers": self.config["bootstrap.servers"], **CLIENT_CONFIG})
        return self._admin


# A stage off the tick-to-order path (the warehouse sink) fetches in bulk: it reads every topic, and
# fetching each message as it lands made it the broker's busiest client.
BULK_FETCH_CONFIG = {"fetch.wait.max.ms": "200", "fetch.min.bytes": "1000000"}


def consume(
    step_id: str, flow: Dataflow, endpoint: KafkaEndpoint, topics: list[str], stage: str, with_topic: bool = False,
    bulk: bool = False, pause_s: float = 0.0, columnar: bool = False, columnar_min: int = 1,
    tape: StageTapeEnds | RunTapeEnds | None = None,
) -> Stream:
    """Records of ``topics`` (catalog names), and DeadLetters for messages that did not decode or
    consumer errors that are not transient, in one stream; with ``with_topic``, ``(topic, record)``
    pairs (a dead letter's topic is ``dlq``). The partitions decode as they read: no per-message
    object or extra step between the consumer and the records. ``bulk``: fetch up to 200 ms' worth
    at a time (:data:`BULK_FETCH_CONFIG`), for a stage whose latency does not matter. ``pause_s``:
    how long a partition that has caught up waits before its next batch (:class:`_KafkaPartition`).
    ``columnar``: the partitions of ``md.raw``, ``md.trades`` and ``md.quotes`` hand over each
    batch as RawTickBatches or TickBatches (runs of messages in offset order) with, in their
    places, the records and dead letters of the messages that do not fit the columns
    (:func:`topics.kafka_records.decoder`); the other topics still give records. ``columnar_min``:
    a partition's batch of fewer messages gives records (a live tape's few messages at a time cost
    less one by one than as columns). ``tape``: end the partitions at the end of a finite tape
    (:mod:`topics.end_of_tape`): a stage's tracker ends each tape partition at its marker and the
    others once the tape has ended; the sink's ends them all once the run's tape is complete. Then
    Bytewax's end of input flushes the stage's cores, as at the end of an embedded run."""
    if type(tape) is StageTapeEnds:
        tape.prefix = endpoint.prefix
    source = _KafkaSource(list(endpoint.brokers), [endpoint.topic(t) for t in topics], endpoint.tail,
                          OFFSET_BEGINNING, batch_size=5_000,
                          decode=decoder(endpoint, stage, with_topic, columnar, columnar_min),
                          extra_config=BULK_FETCH_CONFIG if bulk else {}, pause_s=pause_s, tape=tape,
                          start_offset=endpoint.start_offset)
    return _kafka_input(step_id, flow, source)


@operator
def _kafka_input(step_id: str, flow: Dataflow, source: KafkaSource) -> Stream:
    # the same step id as ``kop.input`` (``<step>.kafka_input``): existing recovery snapshots resume,
    # and ``tapeflow lag`` finds the offsets where it always did
    return op.input("kafka_input", flow, source)
