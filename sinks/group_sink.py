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
token named by the batch's offsets, logged in :mod:`sinks.batch_log` before the insert. A member
killed between the insert and the commit leaves its batches logged; whoever reads those offsets
next inserts them again under the same tokens, which ClickHouse drops: kill -9 of a member loses and
doubles nothing.

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

from schemas import Record, StageWatermark
from schemas.columns import RawTickBatch, TickBatch
from sinks.batch_log import BatchLog, ShortOfLoggedBatch, Slot, Span, cut
from sinks.columns import raw_table, tick_tables
from sinks.writer import BatchingWriter
from topics.catalog import TOPICS, table_name
from topics.end_of_tape import EndOfTape, RunTapeEnds
from topics.kafka_records import KafkaEndpoint, MarkedBatch, decoder
from topics.serde import WATERMARK_SCHEMA, schema_header

log = logging.getLogger(__name__)

COLUMNS_FROM = 10  # a partition batch of this many tick messages decodes into columns
SHORT_RETRY_S = 0.5  # pause before reading on to the end of a logged batch
TAPE_POLL_S = 0.2  # how often the members' runner looks whether the run's tape is complete

def sink_group(prefix: str, run_id: str) -> str:
    """The consumer group of a run's sink: one per topic prefix and run id, so two runs (or two
    pipelines on one broker) each land every message."""
    return f"tapeflow-sink.{prefix}{run_id}"

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
                 tape: RunTapeEnds | None = None):
        super().__init__()
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
        """Cut every partition's batch along the batch log, log the new batches, insert each under
        its token. Raises (and Quix Streams commits nothing) unless every row is in the warehouse."""
        batches = {(self._endpoint.bare(b.topic), b.partition): b for b in self._batches.values() if not b.empty()}
        try:
            if not batches:
                return
            logged = self._log.open_batches({slot: b.start_offset for slot, b in batches.items()})
            plans: dict[Slot, tuple[SinkBatch, list, list[Span]]] = {}
            for slot, batch in batches.items():
                items = list(batch)
                plans[slot] = (batch, items, cut(self.group, slot, [i.offset for i in items], logged.get(slot, ())))
        except ShortOfLoggedBatch as short:
            # Quix Streams drops this checkpoint's batches and reads them again after the pause,
            # by when the partition has been read on to the logged batch's end.
            log.info("sink: %s; reading on", short)
            self._batches.clear()
            raise SinkBackpressureError(retry_after=SHORT_RETRY_S) from None
        except BaseException:
            self._batches.clear()
            raise
        try:
            self._log.log([(slot, span) for slot, (_, _, spans) in plans.items() for span in spans if not span.logged])
            for slot, (batch, items, spans) in plans.items():
                for span in spans:
                    self._stage(batch.topic, batch.partition, items[span.start:span.stop])
                    self._writer.flush(token=span.token)
                    self.messages_landed += span.stop - span.start
                    if span.logged:
                        self.messages_relanded += span.stop - span.start
                        log.warning("sink: %s[%d] offsets %d-%d landed again under the token logged before "
                                    "(a member stopped before committing them): ClickHouse keeps one copy",
                                    slot[0], slot[1], span.first_offset, span.last_offset)
            if self._tape is not None:  # every row before these markers is in the warehouse now
                for marker in self._markers:
                    self._tape.on_marker(marker)
        finally:
            self._markers.clear()
            self._batches.clear()

    def _stage(self, topic: str, partition: int, items: list) -> None:
        """Decode one span's messages and hand their rows to the writer, in offset order."""
        messages = [_Message(topic, partition, item) for item in items if not not_data(item.headers)]
        if not messages:
            return
        writer = self._writer
        run: list[Record] = []
        run_table = ""
        decoded = self._decode(messages, [])
        if type(decoded) is MarkedBatch:
            self._markers.extend(decoded.markers)
        for bare_topic, value in decoded:
            kind = type(value)
            if kind is StageWatermark:
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
        consumer_extra_config={"fetch.wait.max.ms": 100, "reconnect.backoff.max.ms": 1000},
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
