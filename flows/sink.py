"""The warehouse as a Bytewax sink: every topic lands in its ClickHouse table.

Items are ``(table, record)`` pairs. Rows are batched by :class:`sinks.writer.BatchingWriter`
(size and age bounds); the partition flushes everything pending in ``snapshot()``, which Bytewax
calls at the end of each epoch before it commits recovery state, so a crash can never leave a
committed epoch whose rows were not written. Rows written after the last commit may be written
again on resume; the money tables are ReplacingMergeTree on record ids, so they never double-count.
"""

from __future__ import annotations

from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from schemas import Record


class _WarehousePartition(StatefulSinkPartition[tuple[str, Record], None]):
    def __init__(self, writer: Any, counter: Any | None):
        self._writer = writer
        self._counter = counter

    def write_batch(self, values: list[tuple[str, Record]]) -> None:
        add = self._writer.add
        for table, record in values:
            add(table, record)
        if self._counter is not None:
            count = self._counter.count_records
            for table, _ in values:
                count(table, 1)
        if self._writer.due():
            self._writer.flush()

    def snapshot(self) -> None:
        self._writer.flush()
        return None

    def close(self) -> None:
        self._writer.flush()


class WarehouseSink(FixedPartitionedSink[tuple[str, Record], None]):
    """One partition: one writer per process keeps inserts few and large."""

    PARTITION = "warehouse"

    def __init__(self, writer: Any, counter: Any | None = None):
        self._writer = writer
        self._counter = counter

    def list_parts(self) -> list[str]:
        return [self.PARTITION]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WarehousePartition:
        return _WarehousePartition(self._writer, self._counter)
