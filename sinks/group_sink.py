"""The warehouse sink as a Quix Streams application in a Kafka consumer group (the split topology's
``sink`` stage, ``tapeflow flow sink``).

Every catalog topic is read by one consumer group; Kafka splits the partitions among its members,
so the sink scales by starting more members: processes (on one host or many) against a ClickHouse
server, or threads of one process (``members``) against embedded chDB, which opens a warehouse
folder in one process only.

Per checkpoint (``commit_interval`` seconds), Quix Streams hands :class:`GroupWarehouseSink` one
batch per topic partition, then commits the partitions' offsets only if the sink's ``flush``
returned: rows reach ClickHouse first, offsets second. Each batch is decoded as the Bytewax stages
decode (:func:`topics.kafka_records.decoder`: column batches for the tick topics, dead letters for
bytes that do not decode) and written through :class:`sinks.writer.BatchingWriter` under an insert
token named by the batch's offsets, logged in :mod:`sinks.batch_log` before the insert.

Kill -9 between the insert and the commit: whoever reads those offsets next finds the batch logged
and inserts it again *whole* under its token, which ClickHouse drops if the batch had landed (in
every table, the plain MergeTree ticks and the 1m OHLCV view included) and writes if it had not:
nothing lost, nothing doubled. Part of a logged batch under its token would be other rows under the
same token, hence "whole". The re-reader's checkpoint need not hold the whole batch: what the
batch holds beyond the checkpoint's offsets is read straight from Kafka
(:class:`sinks.offset_reader.KafkaOffsetReader`: assigned, no group, bounded by a timeout), so every
checkpoint lands in one go however little Quix Streams fetched on a loaded machine. (Before, a
checkpoint that stopped inside a logged batch was refused with backpressure; Quix Streams rewound to
the committed offsets, fetched about as little again, and on a loaded machine never got the whole
batch: a livelock.) Why not the cheaper alternatives: ClickHouse reports a deduplicated insert as
written (``written_rows`` is the block's rows either way, measured on chDB), so a re-reader cannot
learn whether a batch had landed by inserting part of it; a "landed" mark after the inserts would
still leave a batch logged but unmarked (a kill inside the insert window) needing its whole extent.

The checkpoint after one that completed a batch from Kafka starts inside that batch (Quix Streams
committed only the offsets it handed over): its offsets there are decoded for their end-of-tape
markers only, the rows being in the warehouse. Generally a member commits an offset inside a logged
batch only after landing the whole batch, so a checkpoint starting inside one holds rows that
landed; the member re-reads its head from Kafka and inserts it whole anyway (dropped by the
server), which costs a read only after a rebalance in the middle of a recovery. Markers read
beyond the checkpoint's end are not told to the tape (the run would end before Quix Streams
commits their offsets); they are told when their checkpoint comes. A read that fails (the broker
out of reach, an offset gone) is logged and retried after :data:`READ_RETRY_S` (backpressure: Quix
Streams reads the checkpoint again), :data:`READ_ATTEMPTS` times in a row at most: then the member
stops with :class:`SinkStalled` and the reason, rather than spin.

End of a finite tape: given a :class:`topics.end_of_tape.RunTapeEnds` (shared by the members of
one process), each member hands it the end-of-tape markers it read once the rows before them are in
the warehouse, and :meth:`SinkMembers.run` returns once the run's tape is complete, as the Bytewax
sink does (``flows/split.py``).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from typing import Any

from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

from schemas import Record, StageWatermark, TapeWatermark
from schemas.columns import RawTickBatch, TickBatch
from sinks.batch_log import BatchLog, Slot, Span, cut
from sinks.columns import raw_table, tick_tables
from sinks.offset_reader import KafkaOffsetReader, OffsetReader
from sinks.writer import BatchingWriter
from topics.catalog import TOPICS, table_name
from topics.end_of_tape import EndOfTape, RunTapeEnds
from topics.kafka_records import CLIENT_CONFIG, KafkaEndpoint, MarkedBatch, decoder
from topics.lag import SINK_GROUP_PREFIX
from topics.serde import WATERMARK_SCHEMA, schema_header

log = logging.getLogger(__name__)

COLUMNS_FROM = 10  # a partition batch of this many tick messages decodes into columns
READ_RETRY_S = 1.0  # pause before trying again to read the rest of a logged batch from Kafka
READ_ATTEMPTS = 5  # failed reads in a row before the member gives up (SinkStalled)
TAPE_POLL_S = 0.2  # how often the members' runner looks whether the run's tape is complete

class SinkStalled(RuntimeError):
    """The sink cannot land a checkpoint and will not spin on it: it stops with the reason."""


def sink_group(prefix: str, run_id: str) -> str:
    """The consumer group of a run's sink: one per topic prefix and run id, so two runs (or two
    pipelines on one broker) each land every message."""
    return f"{SINK_GROUP_PREFIX}{prefix}{run_id}"

def not_data(headers: Any) -> bool:
    """Messages that ride in a topic but are no record to store: the stages' watermarks. (End-of-tape
    markers are taken out by the shared decoder, which hands them over as ``MarkedBatch.markers``.)"""
    return schema_header(headers) == WATERMARK_SCHEMA

class _Message:
    """A Quix sink item in the shape of a confluent-kafka message, for the shared decoder."""

    __slots__ = ("_topic", "_partition", "_item")

    def __init__(self, topic: str, partition: int, item: Any):
        self._topic, self._partition, self._item = topic, partition, item

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def value(self) -> bytes | None:
        return self._item.value

    def key(self) -> bytes | None:
        return self._item.key

    def headers(self) -> Any:
        return self._item.headers

    def offset(self) -> int:
        return self._item.offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._item.timestamp)

class GroupWarehouseSink(BatchingSink):
    """One Quix Streams sink for every topic of the application; one writer, one warehouse."""

    def __init__(self, warehouse: Any, writer: BatchingWriter, endpoint: KafkaEndpoint, group: str,
                 tape: RunTapeEnds | None = None, reader: OffsetReader | None = None):
        super().__init__()
        self._reader = reader or KafkaOffsetReader(endpoint.brokers)
        self._read_failures = 0
        self._landed_whole: set[str] = set()  # tokens of logged batches this member completed from Kafka
        self._tape = tape
        self._markers: list[EndOfTape] = []  # read in this flush; told to the tape once its rows landed
        self._writer = writer
        self._endpoint = endpoint
        self._log = BatchLog(warehouse, group)
        self.group = group
        self._decode = decoder(endpoint, "sink", with_topic=True, columnar=True, columnar_min=COLUMNS_FROM)
        self.messages_landed = 0
        self.messages_relanded = 0  # of those, re-read from batches another member (or life) had logged

    def write(self, batch: SinkBatch) -> None:  # flush() below writes every partition's batch at once
        raise NotImplementedError("GroupWarehouseSink writes in flush()")

    def flush(self) -> None:
        """Cut every partition's batch along the batch log, read from Kafka whatever logged batches
        reach beyond it, log the new batches, insert each batch whole under its token. Raises (and
        Quix Streams commits nothing) unless every row is in the warehouse."""
        batches = {(self._endpoint.bare(b.topic), b.partition): b for b in self._batches.values() if not b.empty()}
        try:
            if not batches:
                return
            logged = self._log.open_batches({slot: b.start_offset for slot, b in batches.items()})
            plans: dict[Slot, tuple[SinkBatch, list[_Message], list[Span]]] = {}
            for slot, batch in batches.items():
                messages = [_Message(batch.topic, batch.partition, item) for item in batch]
                plans[slot] = (batch, messages, cut(self.group, slot, [m.offset() for m in messages], logged.get(slot, ())))
            beyond = self._read_beyond(plans)
        except BaseException:
            self._batches.clear()
            raise
        try:
            self._log.log([(slot, span) for slot, (_, _, spans) in plans.items() for span in spans if not span.logged])
            for slot, (_, messages, spans) in plans.items():
                for span in spans:
                    self._land(slot, span, messages[span.start:span.stop], beyond.get(slot, ()))
            if self._tape is not None:  # every row before these markers is in the warehouse now
                for marker in self._markers:
                    self._tape.on_marker(marker)
        finally:
            self._markers.clear()
            self._batches.clear()

    def _read_beyond(self, plans: dict[Slot, tuple[SinkBatch, list[_Message], list[Span]]]) -> dict[Slot, list]:
        """The messages of logged batches outside this checkpoint's items, by partition, read from
        Kafka in one go. A failed read is said and retried after a pause (Quix Streams reads the
        checkpoint again), :data:`READ_ATTEMPTS` times in a row at most, then :class:`SinkStalled`."""
        ranges: dict[tuple[str, int], tuple[int, int]] = {}
        slots: dict[tuple[str, int], Slot] = {}
        for slot, (batch, messages, spans) in plans.items():
            for span in spans:
                if not span.logged or span.token in self._landed_whole:
                    continue
                lo, hi = messages[span.start].offset(), messages[span.stop - 1].offset()
                want = [r for r in ((span.first_offset, lo - 1), (hi + 1, span.last_offset)) if r[0] <= r[1]]
                if not want:
                    continue
                part = (batch.topic, batch.partition)
                first, last = ranges.get(part, (want[0][0], want[-1][1]))
                ranges[part] = (min(first, want[0][0]), max(last, want[-1][1]))
                slots[part] = slot
        if not ranges:
            return {}
        try:
            read = self._reader.read(ranges)
        except Exception as exc:  # the broker out of reach, an offset gone: nothing lands, nothing commits
            self._read_failures += 1
            what = ", ".join(f"{t}[{p}] offsets {first}-{last}" for (t, p), (first, last) in ranges.items())
            if self._read_failures >= READ_ATTEMPTS:
                raise SinkStalled(f"cannot read {what} (the rest of batches logged by a member that stopped before "
                                  f"committing them) after {self._read_failures} attempts: {exc}") from exc
            log.warning("sink: cannot read %s to land the logged batches there whole (attempt %d of %d): %s; "
                        "trying again in %.1f s", what, self._read_failures, READ_ATTEMPTS, exc, READ_RETRY_S)
            raise SinkBackpressureError(retry_after=READ_RETRY_S) from exc
        self._read_failures = 0
        return {slots[part]: messages for part, messages in read.items()}

    def _land(self, slot: Slot, span: Span, messages: list, beyond: Any) -> None:
        """Insert one span: a new one as it is; a logged one whole, with the messages read beyond
        this checkpoint (end-of-tape markers only from those before its end: the tape may end the
        run once they are told, and Quix Streams commits no further than the checkpoint)."""
        count = len(messages)
        self.messages_landed += count
        if not span.logged:
            self._stage(messages)
            self._writer.flush(token=span.token)
            return
        self.messages_relanded += count
        if span.token in self._landed_whole:  # this member landed it whole from an earlier checkpoint
            self._stage(messages, rows=False)
            return
        lo, hi = messages[0].offset(), messages[-1].offset()
        head = [m for m in beyond if span.first_offset <= m.offset() < lo]
        tail = [m for m in beyond if hi < m.offset() <= span.last_offset]
        self._stage(head)
        self._stage(messages)
        self._stage(tail, tell=False)
        self._writer.flush(token=span.token)
        if tail:  # the next checkpoint starts inside it
            self._landed_whole.add(span.token)
        log.warning("sink: %s[%d] offsets %d-%d landed again under the token logged before "
                    "(a member stopped before committing them): ClickHouse keeps one copy%s",
                    slot[0], slot[1], span.first_offset, span.last_offset,
                    f"; {len(head) + len(tail)} of its messages read from Kafka beyond this checkpoint's"
                    if head or tail else "")

    def _stage(self, messages: list, *, tell: bool = True, rows: bool = True) -> None:
        """Decode messages of one partition and hand their rows to the writer (not with ``rows``
        False), in offset order; keep their end-of-tape markers to tell (not with ``tell`` False)."""
        messages = [m for m in messages if not not_data(m.headers())]
        if not messages:
            return
        writer = self._writer
        run: list[Record] = []
        run_table = ""
        decoded = self._decode(messages, [])
        if type(decoded) is MarkedBatch and tell:
            self._markers.extend(decoded.markers)
        if not rows:
            return
        for bare_topic, value in decoded:
            kind = type(value)
            if kind is StageWatermark or kind is TapeWatermark:  # punctuation, not data
                continue
            if kind is TickBatch or kind is RawTickBatch:
                if run:
                    writer.add_many(run_table, run)
                    run = []
                tables = tick_tables(value, writer.run_id) if kind is TickBatch else {
                    "md_raw": raw_table(value, writer.run_id)}
                for table, arrow in tables.items():
                    writer.add_arrow(table, arrow)
                continue
            table = table_name(bare_topic)
            if run and table != run_table:
                writer.add_many(run_table, run)
                run = []
            run_table = table
            run.append(value)
        if run:
            writer.add_many(run_table, run)

class _Member(Application):
    """An Application that may run in a thread other than the main one (a member of a group that
    shares one chDB warehouse): only the main thread may install signal handlers, and there the
    process's own handlers stop every member."""

    def _setup_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            super()._setup_signal_handlers()

def sink_application(endpoint: KafkaEndpoint, sink: GroupWarehouseSink, state_dir: str, *,
                     commit_interval_s: float = 1.0, max_poll_messages: int = 10_000,
                     store_raw: bool = True) -> Application:
    """A Quix Streams application reading every catalog topic (under the endpoint's prefix; md.raw
    only with ``store_raw``) from the earliest offset its group has not committed, into ``sink``.
    ``state_dir``: a folder of the member's own (Quix Streams makes one per application, though the
    sink keeps no state in it)."""
    app = _Member(
        state_dir=state_dir,
        broker_address=",".join(endpoint.brokers),
        consumer_group=sink.group,
        auto_offset_reset="earliest",
        commit_interval=commit_interval_s,
        auto_create_topics=False,  # topics come from the catalog (`tapeflow topics create`)
        use_changelog_topics=False,  # the sink keeps no state
        loglevel="WARNING",
        max_partition_buffer_size=max_poll_messages,
        consumer_extra_config={**CLIENT_CONFIG, "fetch.wait.max.ms": 100},
    )
    for spec in TOPICS:
        if spec.name == "md.raw" and not store_raw:
            continue
        topic = app.topic(endpoint.topic(spec.name), value_deserializer="bytes", key_deserializer="bytes")
        app.dataframe(topic).sink(sink)
    return app

class SinkMembers:
    """``count`` members of one consumer group in this process, each a Quix Streams application in
    its own thread with its own writer, all inserting through one warehouse (whose inserts and
    queries one lock serializes: a chDB client is one engine per process)."""

    def __init__(self, warehouse: Any, endpoint: KafkaEndpoint, run_id: str, count: int = 1, *,
                 group: str | None = None, commit_interval_s: float = 1.0, max_rows: int = 50_000,
                 max_age_s: float = 1.0, idle_stop_s: float = 0.0, store_raw: bool = True,
                 tape: RunTapeEnds | None = None):
        if count < 1:
            raise ValueError("a sink group needs at least one member")
        self.group = group or sink_group(endpoint.prefix, run_id)
        shared = _Serialized(warehouse)
        self.sinks = [GroupWarehouseSink(shared, BatchingWriter(shared, run_id, max_rows=max_rows, max_age_s=max_age_s),
                                         endpoint, self.group, tape) for _ in range(count)]
        self.tape = tape
        self._state = tempfile.TemporaryDirectory(prefix="tapeflow-sink-")
        self.apps = [sink_application(endpoint, sink, f"{self._state.name}/member-{i}", commit_interval_s=commit_interval_s,
                                     store_raw=store_raw)
                     for i, sink in enumerate(self.sinks)]
        self._idle_stop_s = idle_stop_s
        self.errors: list[BaseException] = []

    @property
    def messages_landed(self) -> int:
        return sum(s.messages_landed for s in self.sinks)

    @property
    def messages_relanded(self) -> int:
        return sum(s.messages_relanded for s in self.sinks)

    def run(self) -> None:
        """Run every member until :meth:`stop`, until the run's tape is complete (with ``tape``: every
        stage's end-of-tape markers landed) or, with ``idle_stop_s``, until each member has had no
        message for that long (the end of complete topics). Re-raises a member's failure."""
        threads = [threading.Thread(target=self._run_one, args=(app,), name=f"sink-member-{i}", daemon=True)
                   for i, app in enumerate(self.apps)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(TAPE_POLL_S)
                    if self.tape is not None and self.tape.complete:
                        self.stop()  # each member commits what it landed and leaves the group
        finally:
            self.stop()
            self._state.cleanup()
        if self.errors:
            raise self.errors[0]

    def _run_one(self, app: Application) -> None:
        try:
            app.run(timeout=self._idle_stop_s)
        except BaseException as exc:  # surfaced by run(); the other members stop
            self.errors.append(exc)
            self.stop()

    def stop(self) -> None:
        for app in self.apps:
            app.stop()

class _Serialized:
    """A warehouse whose inserts and queries take turns (threads of one process, one chDB engine)."""

    def __init__(self, warehouse: Any):
        self._warehouse = warehouse
        self._lock = threading.Lock()

    def insert_arrow(self, table: str, arrow_table: Any, *, dedup_token: str | None = None) -> int:
        with self._lock:
            return self._warehouse.insert_arrow(table, arrow_table, dedup_token=dedup_token)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self._warehouse.query(sql, parameters)
