"""Which offsets of a topic partition went into which insert: the consumer-group sink's batch log.

A consumer-group sink commits a partition's offsets only after ClickHouse has the batch, so a member
that dies in between leaves rows in the warehouse whose offsets another member reads again. Insert
tokens make a second insert of the *same* rows a no-op, but the next member would cut the partition
into batches of its own (its checkpoints fall elsewhere), and a batch of other offsets is other rows
under another token. So, before inserting, the sink logs each new batch here (``sink_batches``:
consumer group, topic, partition, first and last offset, token); whoever reads those offsets next
:func:`cut`\\ s them into the logged batches first and inserts each logged batch *whole* under its
token (reading from Kafka whatever of it lies outside its checkpoint). A batch that had landed is
dropped by the server, one that had not is inserted: nothing lost, nothing doubled, in every table
(the plain MergeTree market data and the 1m OHLCV sums included), within ClickHouse's deduplication
window of 1,000 inserts per table. Whole, because part of a batch under its token would be other
rows under the same name: if the batch had not landed, the part lands under it, and whoever inserts
the whole batch under that token later is dropped: the rest lost.

Engine-free: the Quix Streams sink (:mod:`sinks.group_sink`) uses it, and any other runtime could.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow as pa

from topics.catalog import BY_NAME

Slot = tuple[str, int]  # (topic without prefix, partition)


@dataclass(frozen=True)
class LoggedBatch:
    first_offset: int
    last_offset: int
    token: str


@dataclass(frozen=True)
class Span:
    """A batch ``[first_offset, last_offset]`` of one partition, inserted under ``token``, of which
    this checkpoint holds items ``[start, stop)``. A new span (``logged`` False) is exactly its items
    and must be logged before the insert. A logged span is a batch an earlier member cut: it may
    reach before or past the items, and goes in whole or not at all (see :func:`cut`)."""

    start: int
    stop: int
    first_offset: int
    last_offset: int
    token: str
    logged: bool


def batch_token(group: str, slot: Slot, first_offset: int, last_offset: int) -> str:
    return f"{group}/{slot[0]}/{slot[1]}/{first_offset}-{last_offset}"


def cut(group: str, slot: Slot, offsets: Sequence[int], logged: Sequence[LoggedBatch]) -> list[Span]:
    """The items of one partition (``offsets``, ascending, non-empty) as spans, in offset order: a
    logged span for each logged batch they reach (its whole extent, under its token, even where
    the items start after its first offset or stop before its last), and a new span for each run
    of items no logged batch covers. Pure: the caller reads whatever a span holds beyond its items."""
    spans: list[Span] = []
    n = len(offsets)
    i = 0

    def new_span(stop: int) -> None:
        first, last = offsets[i], offsets[stop - 1]
        spans.append(Span(i, stop, first, last, batch_token(group, slot, first, last), False))

    for batch in sorted(logged, key=lambda b: b.first_offset):
        if i == n:
            break
        if batch.last_offset < offsets[i]:
            continue  # read and committed before these items
        before = i
        while before < n and offsets[before] < batch.first_offset:
            before += 1
        if before > i:
            new_span(before)
            i = before
            if i == n:
                break
        stop = i
        while stop < n and offsets[stop] <= batch.last_offset:
            stop += 1
        if stop > i:  # else the batch falls in a gap of the items (offsets compacted away)
            spans.append(Span(i, stop, batch.first_offset, batch.last_offset, batch.token, True))
            i = stop
    if i < n:
        new_span(n)
    return spans


class BatchLog:
    """The ``sink_batches`` rows of one consumer group, read and written through a warehouse."""

    def __init__(self, warehouse: Any, group: str):
        self._warehouse = warehouse
        self.group = group

    def open_batches(self, starts: dict[Slot, int]) -> dict[Slot, list[LoggedBatch]]:
        """Per partition, the logged batches that end at or after its first offset read now
        (batches of this group that may not have been committed), in offset order. One query."""
        if not starts:
            return {}
        conditions = []
        for (topic, partition), start in starts.items():
            BY_NAME[topic]  # only catalog names reach the SQL text; ints are formatted as ints
            conditions.append(f"(topic = '{topic}' AND partition = {int(partition)} AND last_offset >= {int(start)})")
        sql = ("SELECT topic, partition, first_offset, last_offset, token FROM sink_batches FINAL "
               f"WHERE consumer_group = {{group:String}} AND ({' OR '.join(conditions)}) "
               "ORDER BY topic, partition, first_offset")
        found: dict[Slot, list[LoggedBatch]] = {}
        for topic, partition, first, last, token in self._warehouse.query(sql, {"group": self.group}).rows:
            found.setdefault((topic, partition), []).append(LoggedBatch(first, last, token))
        return found

    def log(self, entries: list[tuple[Slot, Span]]) -> None:
        """Record new batches (one insert), before their rows are inserted."""
        if not entries:
            return
        now = int(time.time() * 1000)
        table = pa.table({
            "consumer_group": pa.array([self.group] * len(entries), pa.string()),
            "topic": pa.array([slot[0] for slot, _ in entries], pa.string()),
            "partition": pa.array([slot[1] for slot, _ in entries], pa.int32()),
            "first_offset": pa.array([s.first_offset for _, s in entries], pa.int64()),
            "last_offset": pa.array([s.last_offset for _, s in entries], pa.int64()),
            "token": pa.array([s.token for _, s in entries], pa.string()),
            "ts_logged": pa.array([now] * len(entries), pa.int64()).view(pa.timestamp("ms", tz="UTC")),
        })
        # ReplacingMergeTree on (group, topic, partition, first_offset): a batch logged twice reads once
        self._warehouse.insert_arrow("sink_batches", table)
